"""The gateway: a FastAPI WebSocket server speaking the OpenAI Realtime API (GA
event shapes) over the gRPC speech services, with server-side turn-taking,
barge-in, false-interruption recovery and Redis-backed session state."""
