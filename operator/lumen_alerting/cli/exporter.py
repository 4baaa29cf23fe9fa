"""``lumen-exporter``: HTTP probes on a schedule, served to Prometheus on ``/metrics``."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from ..exporter.config import parse_settings
from ..exporter.service import StartupError, serve
from ..logs import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    # Flags, config.json and secret files are all read here: a bad one exits 2 before anything
    # starts.
    settings = parse_settings(sys.argv[1:] if argv is None else argv, os.environ)
    configure_logging(settings.log_format, settings.log_level)
    try:
        asyncio.run(serve(settings))
    except StartupError as error:
        print(f"lumen-exporter: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
