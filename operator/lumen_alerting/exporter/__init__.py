"""``lumen-exporter``: HTTP probes on a schedule and CI's pipeline runs, read by Prometheus from
``/metrics``.

Layers inside the package: ``service`` (runs everything) over ``app`` (the HTTP endpoints),
``probes`` (the scheduler) and ``csv_log`` (the probe results' CSV log, written off the event
loop), over ``metrics`` (the last results as series), ``body_reader`` (bodies too big to parse on
the event loop, read in a short-lived process) and ``values`` (JSON body -> numbers, pure), over
``config`` (flags and ``config.json``). The pipeline endpoints
(``pipeline_http``) sit beside ``app`` over ``pipeline`` (the run bodies, the state, its file and
its series). Like the threader, it never imports the operator, the CLI, kopf or kubernetes.
"""
