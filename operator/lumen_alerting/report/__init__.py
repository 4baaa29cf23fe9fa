"""``lumenctl report``: statistics, anomalies, health and personas of probe runs (seed 001's
``analyze_metrics.py``), as JSON or as one self-contained HTML page with charts.

- ``records.py``: the table model (``MetricsTable`` of ``ProbeSeries`` of ``ProbeRecord``) and
  the reader of the exporter's CSV log (reads the files it is given, nothing else);
- ``prometheus.py``: the same table from a Prometheus range query, over httpx (network I/O);
- ``analysis.py``: every figure and the JSON document, pure (no I/O, no clock);
- ``html.py``: the HTML page with matplotlib's inline SVG charts, pure (a string out).

The CSV log's fixed columns and timestamp format (``probe_log_format``) and the atomic write of
the output (``atomic_files``) are shared leaves, used by the exporter too.

Only ``prometheus.py`` imports httpx (an import contract in ``.importlinter``). The package
imports nothing of the operator, the services or the cluster: it runs wherever ``lumenctl``
does.
"""
