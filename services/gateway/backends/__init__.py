"""The speech engines behind the gateway, as interfaces (``interfaces``) with
real gRPC clients (``grpc_clients``), their protobuf conversion (``convert``),
per-session routing with canary (``routing``), health probes (``health``) and
the app's provider of them all (``provider``: routing, release weights, canary
health kept fresh in the background).
Scripted fakes implementing the same interfaces live in services/gateway/fakes/."""
