"""Fault injection between the gateway and its backends, for drills
(drills/, docs/drills.md): latency, errors, connection resets and hangs, per
service, at a rate, each for a bounded time (``table``); applied to the gRPC
calls themselves, below the deadlines, breakers and failover that must cope
with them (``calls``); set at run time through ``/admin/faults`` (``admin``).
With no fault set, a call costs one dictionary test."""
