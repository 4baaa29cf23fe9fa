"""``lumen-threader``: Alertmanager webhooks in, one Slack thread per alert out."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from ..logs import configure_logging
from ..threader.config import parse_config
from ..threader.service import StartupError, serve

log = logging.getLogger("lumen.threader")


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    configure_logging(config.log_format, config.log_level)
    if not config.slack_token:
        log.warning(
            "No Slack token (--slack-token-file or SLACK_BOT_TOKEN): every message will be "
            "refused by Slack."
        )
    try:
        asyncio.run(serve(config))
    except StartupError as error:
        # One line naming the flag, like a bad flag value: no traceback for an operator to read.
        print(f"lumen-threader: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
