"""The speech engines behind the gateway, as interfaces (``interfaces``) with
real gRPC clients (``grpc_clients``), their protobuf conversion (``convert``),
per-session routing with canary (``routing``) and health probes (``health``).
Scripted fakes implementing the same interfaces live in services/gateway/fakes.py."""
