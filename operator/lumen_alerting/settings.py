"""Service settings from command-line flags, each with a ``LUMEN_<SERVICE>_*`` environment form.

A flag wins over its variable; the variable's name is the flag's, upper-cased with dashes as
underscores (``--kps-release`` is ``LUMEN_OPERATOR_KPS_RELEASE``). Bad values exit with
argparse's usage message and the flag's name, before anything starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")
Setting = Callable[[str], "str | None"]


def flag_or_environment(
    args: argparse.Namespace, environ: Mapping[str, str], prefix: str
) -> Setting:
    """``setting("kps-release")``: the flag's value, else ``<prefix>KPS_RELEASE``, else None."""

    def setting(flag: str) -> str | None:
        value = getattr(args, flag.replace("-", "_"))
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is not None:
            return str(value)
        return environ.get(prefix + flag.upper().replace("-", "_"))

    return setting


def parse_or_exit(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    build: Callable[[argparse.Namespace], T],
) -> T:
    """Parse ``argv`` and build the settings; a ValueError becomes one line naming the flag on
    stderr and exit 2 (argparse's own errors, like an unknown flag, still show the usage)."""
    args = parser.parse_args(argv)
    try:
        return build(args)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
