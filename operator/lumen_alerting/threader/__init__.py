"""The threader: Alertmanager webhooks in, one Slack thread per alert out (DESIGN.md section 5)."""
