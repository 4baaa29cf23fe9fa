"""``python -m lumen_alerting.demo`` (``make demo``): see ``scenario.main``."""

import sys

from .scenario import main

sys.exit(main())
