"""`python -m stack.probe`, the command every container healthcheck runs, says
healthy (exit 0) only for a component that answers: gRPC health SERVING on a
speech service's port, HTTP 200 on a URL; anything else, including nothing
listening, is unhealthy (exit 1), and an unknown component name is an error
rather than a pass. Checked against a real VAD service process."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.components import COMPONENTS
from stack.probe import resolve
from tests.deploy.deploy_helpers import ROOT
from tests.procs import free_port, running


def probe(*args: str, env: dict[str, str] | None = None) -> int:
    base = {k: v for k, v in os.environ.items() if k != "VOICE_COMPONENT"}
    base["PYTHONPATH"] = f"{ROOT}:{ROOT / 'gen'}"
    out = subprocess.run([sys.executable, "-m", "stack.probe", *args, "--timeout", "3"], cwd=ROOT,
                         env=base | (env or {}), capture_output=True, text=True, timeout=60)
    return out.returncode


def test_targets_resolve_to_the_components_ports(monkeypatch):
    for c in COMPONENTS:
        monkeypatch.delenv(f"{c.env_prefix}PORT", raising=False)
        kind, where = resolve(c.name)
        assert kind == ("grpc" if c.grpc else "http") and f"127.0.0.1:{c.port}" in where
    monkeypatch.setenv("ASR_PORT", "6000")
    assert resolve("asr") == ("grpc", "127.0.0.1:6000")
    assert resolve("10.0.0.1:50052") == ("grpc", "10.0.0.1:50052")
    assert resolve("http://x:1/healthz") == ("http", "http://x:1/healthz")
    with pytest.raises(KeyError):
        resolve("nosuch")


def test_nothing_listening_is_unhealthy_and_a_typo_is_an_error():
    port = free_port()
    assert probe(f"127.0.0.1:{port}") == 1
    assert probe(f"http://127.0.0.1:{port}/healthz") == 1
    assert probe("asrr") == 2
    assert probe() == 2  # no target and no VOICE_COMPONENT


@pytest.mark.slow
def test_a_serving_vad_is_healthy_by_address_by_name_and_by_env():
    with running("services.vad", "VAD_") as vad:
        assert probe(vad.address) == 0
        assert probe("vad", env={"VAD_PORT": str(vad.port)}) == 0
        assert probe(env={"VOICE_COMPONENT": "vad", "VAD_PORT": str(vad.port)}) == 0
        assert probe(f"http://127.0.0.1:{vad.metrics_port}/metrics") == 0
        address = vad.address
    assert probe(address) == 1, "a stopped service must not stay healthy"
