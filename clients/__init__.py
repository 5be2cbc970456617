"""Clients of the assistant's public protocol (the OpenAI Realtime event
protocol over WebSocket). They import nothing from services/: benchmarks,
end-to-end tests and load tests talk to the gateway exactly as a third-party
client would.

- events.py: client event builders (plain dicts in the GA shape)
- eventlog.py: received server events with monotonic arrival times
- speech.py: where speech starts/ends in a clip, from its energy alone
- realtime.py: asyncio client (websockets) with a real-time microphone
- realtime_sync.py: blocking client (websocket-client) for Locust/gevent
"""
