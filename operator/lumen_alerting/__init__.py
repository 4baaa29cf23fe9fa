"""Lumen: alerting for kube-prometheus-stack, driven by LumenAlertPolicy resources."""
