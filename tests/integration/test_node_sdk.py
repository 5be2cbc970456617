"""The official OpenAI JavaScript SDK (openai 6.x, `OpenAIRealtimeWS`) against
the gateway (fake speech backends) over wss with a self-signed certificate
trusted through NODE_EXTRA_CA_CERTS: the SDK only speaks wss, so this is the
compatibility the TLS settings exist for.

Invariants: a text turn answers with the scripted reply, a spoken turn
(manual commit) is transcribed and answered with audio, and a response
cancelled as it starts ends ``cancelled``. Needs node and
`npm install --prefix clients/node` (skipped without them)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from common.clock import MonotonicClock
from services.gateway.app import create_app
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.settings import GatewaySettings
from tests.integration.test_gateway_startup_security import self_signed
from tests.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "clients" / "node"
KEY = "node-key-0123456789abcdef"
LONG = " ".join(["This is a long answer that goes on."] * 20)

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "openai").is_dir(),
    reason="node and the openai package (npm install --prefix clients/node) are needed")


def test_the_openai_node_sdk_talks_to_the_gateway_over_wss(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    clock = MonotonicClock()
    provider = FakeProvider(lambda sid: FakeBackends.create(
        clock, texts=("what time is it",), replies=("Hello from the gateway.", "It is noon.", LONG)))
    app = create_app(GatewaySettings(redis_url="", api_keys=KEY, web_dir="/nonexistent"), backends=provider)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                          ssl_certfile=str(cert), ssl_keyfile=str(key)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        out = subprocess.run(["node", "realtime_check.mjs", f"https://localhost:{port}/v1", KEY],
                             cwd=NODE_DIR, capture_output=True, text=True, timeout=90,
                             env={**os.environ, "NODE_EXTRA_CA_CERTS": str(cert)})
    finally:
        server.should_exit = True
        thread.join(10)
    assert out.returncode == 0, out.stdout + out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["text"] == "Hello from the gateway."
    assert got["transcript"] == "what time is it"
    assert got["spoken_status"] == "completed" and got["audio_deltas"] > 0
    assert got["cancelled_status"] == "cancelled" and got["cancelled_reason"] == "client_cancelled"
