"""Code every service shares: generated-stub access, audio helpers, settings,
the gRPC server bootstrap, telemetry and clocks. Imports no service."""
