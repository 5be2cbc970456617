"""The gateway process itself (`python -m services.gateway`), as deployed.

Invariants: with a certificate and key it serves wss:// (a client that
trusts the certificate gets a session; plain ws:// gets nothing); bound
beyond loopback without API keys it refuses to start and says which setting
is missing; its log holds neither the API key nor a session id."""
from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets

from tests.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "tls-key-0123456789abcdef"


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def gateway(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}", "GATEWAY_REDIS_URL": "",
                                 **env}, stdout=log.open("w"), stderr=subprocess.STDOUT)


def test_wss_with_a_certificate_and_nothing_secret_in_the_log(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    log = tmp_path / "gateway.log"
    proc = gateway({"GATEWAY_PORT": str(port), "GATEWAY_SSL_CERTFILE": str(cert),
                    "GATEWAY_SSL_KEYFILE": str(key), "GATEWAY_API_KEYS": KEY}, log)
    ctx = ssl.create_default_context(cafile=str(cert))

    async def talk() -> str:
        async with websockets.connect(f"wss://localhost:{port}/v1/realtime?session_id=sess_0123456789abcdef0123",
                                      ssl=ctx, additional_headers={"Authorization": f"Bearer {KEY}"},
                                      open_timeout=5) as ws:
            created = json.loads(await ws.recv())
            return created["session"]["id"]

    async def plain() -> None:
        async with websockets.connect(f"ws://localhost:{port}/v1/realtime", open_timeout=3):
            pass

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sid = asyncio.run(talk())
                break
            except (OSError, asyncio.TimeoutError):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        assert sid.startswith("sess_")
        with pytest.raises(Exception):
            asyncio.run(plain())
    finally:
        proc.terminate()
        proc.wait(15)
    text = log.read_text()
    assert "https://" in text or "Uvicorn running" in text
    assert KEY not in text and sid not in text and "sess_0123456789abcdef0123" not in text


def test_beyond_loopback_without_keys_it_refuses_to_start(tmp_path):
    log = tmp_path / "gateway.log"
    proc = gateway({"GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": str(free_port())}, log)
    assert proc.wait(60) != 0
    assert "GATEWAY_API_KEYS" in log.read_text() and "GATEWAY_ALLOW_INSECURE" in log.read_text()
