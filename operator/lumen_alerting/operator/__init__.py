"""The Lumen operator: keeps every LumenAlertPolicy's children in the cluster equal to its render.

Layers, each importing only the ones above it:

- ``kube``        a small asyncio Kubernetes API client on httpx (login, list, apply, delete);
- ``kinds``       the resource kinds the operator reads and writes;
- ``convergence`` pure decisions: which rendered objects differ from the live ones;
- ``status``      pure: the next ``status`` of a policy from the outcome of a reconcile;
- ``reconcile``   the engine: validate -> render -> apply -> prune, for one policy;
- ``metrics``     Prometheus metrics of the operator;
- ``handlers``    the kopf registry: thin handlers that call the engine;
- ``config``      flags and ``LUMEN_OPERATOR_*`` environment;
- ``rbac``        the API calls the operator makes, as RBAC rules for the chart.

The console script ``lumen-operator`` lives in ``lumen_alerting.cli.operator``.
"""
