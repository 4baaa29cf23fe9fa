"""tools/standalone_chart_values.py, the standalone charts' generator, loaded as a module (a script
in tools/, as tests/test_docs.py loads tools/policy_reference.py)."""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING

from tests.support.schemas import REPO

SCRIPT = REPO / "tools" / "standalone_chart_values.py"

if TYPE_CHECKING:
    from tools.standalone_chart_values import (
        STANDALONE,
        TEMPLATE_RULES,
        Chart,
        leaves,
        readme_text,
        schema_text,
    )
else:
    _spec = importlib.util.spec_from_file_location("standalone_chart_values", SCRIPT)
    assert _spec and _spec.loader
    _module = importlib.util.module_from_spec(_spec)
    # Registered before it runs: dataclasses look their module up in sys.modules.
    sys.modules[_spec.name] = _module
    _spec.loader.exec_module(_module)
    STANDALONE = _module.STANDALONE
    TEMPLATE_RULES = _module.TEMPLATE_RULES
    Chart = _module.Chart
    leaves = _module.leaves
    readme_text = _module.readme_text
    schema_text = _module.schema_text

__all__ = [
    "SCRIPT",
    "STANDALONE",
    "TEMPLATE_RULES",
    "Chart",
    "leaves",
    "readme_text",
    "schema_text",
]
