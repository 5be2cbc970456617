"""Load tests (Locust): Realtime voice sessions against a local gateway."""
