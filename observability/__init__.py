"""Observability as code: SLOs, generated Prometheus rules, Prometheus config."""
