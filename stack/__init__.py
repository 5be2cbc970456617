"""The whole assistant as plain processes: the component table (one source of
truth that docker compose and Kubernetes are checked against) and the
supervisor behind `make run`."""
