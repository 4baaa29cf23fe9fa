"""Every flag of a service, and its LUMEN_<SERVICE>_* variable, must be in the service's docs."""

from __future__ import annotations

import argparse
import re


def undocumented(parser: argparse.ArgumentParser, docs: str, prefix: str) -> list[str]:
    """The flags and environment variables of ``parser`` that ``docs`` does not mention."""
    missing = []
    for action in parser._actions:
        for option in action.option_strings:
            if option in ("-h", "--help"):
                continue
            if option == "--version":
                # --version prints and exits: a flag to document, but it has no variable.
                if f"`{option}`" not in docs:
                    missing.append(option)
                continue
            # The whole flag, as `--flag` or `--flag VALUE`: not a prefix of a longer one.
            if not re.search(rf"`{re.escape(option)}[` ]", docs):
                missing.append(option)
            if option.startswith("--"):
                variable = prefix + option[2:].upper().replace("-", "_")
                if f"`{variable}`" not in docs:
                    missing.append(variable)
    return missing
