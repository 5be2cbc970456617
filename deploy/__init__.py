"""Deployment: compose variants, Kubernetes manifests and their generator (python -m deploy.generate)."""
