"""``lumen-threader``: Alertmanager webhooks in, one Slack thread per alert out."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from ..logs import configure_logging
from ..threader.config import parse_config
from ..threader.service import serve
from ..threader.store import StoreUnavailable

log = logging.getLogger("lumen.threader")


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    configure_logging(config.log_format, config.log_level)
    if not config.slack_token:
        log.warning("SLACK_BOT_TOKEN is not set: every message will be refused by Slack.")
    if config.database_url:
        log.info("--database-url is for the incident store, which this version does not have yet.")
    try:
        asyncio.run(serve(config))
    except StoreUnavailable as error:  # the store cannot be opened: one line, no traceback
        print(f"lumen-threader: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
