"""``make demo`` (``python -m lumen_alerting.demo``): Lumen's main job on one machine, on loopback.

The real ``lumen-operator`` against the project's API emulator (run as a process from the
checkout's ``tests/support``), the demo policy (``policy.yaml``) and the examples applied and
shown Ready with the real ``kubectl``; a stand-in ION API whose health the demo flips and whose
answers it fails in a burst (``ion_api``), the real ``lumen-exporter`` probing it and taking
pipeline runs, a real ``prometheus`` scraping both and loading the ``spec.groups`` of the
PrometheusRule the operator applied, a real ``prometheus-alertmanager`` loading ``lumenctl
render --format alertmanager`` (plain mode), the real ``lumen-threader``, and a local
Slack-compatible sink with a web page (``slack_sink``) unless ``SLACK_BOT_TOKEN`` and
``SLACK_CHANNEL`` name a real workspace.
``scenario`` drives the steps and prints the transcript; ``processes`` starts and stops the
children; ``loopback`` serves the demo's own two servers.

The demo is a kit on top of the services: it may import the renderer, the CLI and the services'
message layout, and nothing of Lumen imports it (``.importlinter``).
"""
