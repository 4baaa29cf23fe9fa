"""The JSONPath dialect of probe fields: RFC 9535 (``$.a.b``, ``$.list[0]``,
``$['key with spaces']``), as the policy documents it.

A leaf: both ``policy.probe_metrics`` (checking a path) and ``exporter.values`` (reading one)
compile with this environment, and the exporter's body reader, a process started for each big
body, imports it without loading the ``policy`` package (its model, loader and PromQL parser).
"""

from __future__ import annotations

import jsonpath

JSONPATH = jsonpath.JSONPathEnvironment(strict=True)
