"""The Lumen operator: keeps every LumenAlertPolicy's children in the cluster equal to its render.

Layers, top to bottom; a module may import only the layers below its own (import-linter
``layers`` in ``.importlinter``, checked by ``make lint``)::

    runtime > handlers > runs > (reconcile | rbac | metrics)
            > (kube | convergence | status) > (kinds | config)

- ``runtime``     runs kopf with the registry, the liveness endpoint and peering;
- ``handlers``    the kopf registry: thin handlers that hand each event to ``runs``;
- ``runs``        one run of the engine per event, one at a time per policy; writes ``status``;
- ``reconcile``   the engine: validate -> render -> apply -> prune, for one policy;
- ``rbac``        the API calls the operator makes, as RBAC rules for the chart;
- ``metrics``     Prometheus metrics of the operator;
- ``kube``        a small asyncio Kubernetes API client on aiohttp (login, list, apply, delete);
- ``convergence`` pure decisions: which rendered objects differ from the live ones;
- ``status``      pure: the next ``status`` of a policy from the outcome of a reconcile;
- ``kinds``       the resource kinds the operator reads and writes;
- ``config``      flags and ``LUMEN_OPERATOR_*`` environment.

Below all of them: the pure policy model and renderer (``lumen_alerting.policy``,
``lumen_alerting.render``). The console script ``lumen-operator`` lives in
``lumen_alerting.cli.operator``.
"""
