"""Observability tier: promtool rule tests, OTLP export, Prometheus against the live stack."""
