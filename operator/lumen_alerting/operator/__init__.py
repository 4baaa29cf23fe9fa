"""The Lumen operator: keeps every LumenAlertPolicy's children in the cluster equal to its render.

Layers, top to bottom; a module imports only modules of lower layers, never one beside it or
above it (``.importlinter`` checks this in ``make lint``):

1. ``runtime``      runs kopf with the registry, the liveness endpoint and peering settings;
2. ``handlers``     the kopf registry: thin handlers that call the engine and write the status;
3. ``reconcile``    the engine: validate -> render -> apply -> prune, for one policy;
   ``metrics``      Prometheus metrics of the operator;
   ``rbac``         the API calls the operator makes, as RBAC rules for the chart;
4. ``kube``         a small asyncio Kubernetes API client on aiohttp (login, list, apply, delete);
   ``convergence``  pure decisions: which rendered objects differ from the live ones;
   ``status``       pure: the next ``status`` of a policy from the outcome of a reconcile;
5. ``kinds``        the resource kinds the operator reads and writes;
   ``config``       flags and ``LUMEN_OPERATOR_*`` environment.

Below all of them: the pure policy model and renderer (``lumen_alerting.policy``,
``lumen_alerting.render``). The console script ``lumen-operator`` lives in
``lumen_alerting.cli.operator``.
"""
