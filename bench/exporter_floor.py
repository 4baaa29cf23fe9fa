"""The floor of bench/exporter.py: a bare ``prometheus_client`` registry holding the same series
as the exporter (the same families, labels and values, rebuilt from one of its scrapes as plain
``Gauge`` and ``Counter`` objects), served the same way: an aiohttp handler returning
``generate_latest(registry)``, as ``lumen_alerting/exporter/app.py`` does.

Run by bench/exporter.py: ``exporter_floor.py PORT SCRAPE_FILE``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families


def registry_like(scrape: str) -> CollectorRegistry:
    """A registry with the series of ``scrape``: counters as ``Counter`` (which adds their
    ``_created`` samples, as the exporter's have), everything else as ``Gauge``."""
    registry = CollectorRegistry()
    families = list(text_string_to_metric_families(scrape))
    # The text format lists a counter's <name>_created as a gauge of its own; Counter adds it.
    created = {f"{family.name}_created" for family in families if family.type == "counter"}
    for family in families:
        if family.name in created:
            continue
        label_names = sorted({name for sample in family.samples for name in sample.labels})
        if family.type == "counter":
            counter = Counter(family.name, family.documentation, label_names, registry=registry)
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    child = counter.labels(**sample.labels) if label_names else counter
                    child.inc(sample.value)
        else:
            gauge = Gauge(family.name, family.documentation, label_names, registry=registry)
            for sample in family.samples:
                (gauge.labels(**sample.labels) if label_names else gauge).set(sample.value)
    return registry


def main() -> None:
    port, scrape_file = int(sys.argv[1]), Path(sys.argv[2])
    registry = registry_like(scrape_file.read_text())

    async def metrics_text(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics_text)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
