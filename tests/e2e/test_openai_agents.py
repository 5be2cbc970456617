"""The `openai-agents` package's RealtimeAgent, unmodified and with its
default session settings (turn_detection semantic_vad, which the gateway once
refused), talks to the local gateway: no error event at all, session.updated
echoes semantic_vad, and a real clip spoken at real time is transcribed and
answered. openai-agents brings its own openai/websockets pins, so it runs in
its own venv built by scripts/agents_venv.sh; a machine with PyPI access that
can't build it fails this test rather than skipping it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT, clips

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("agents_session.py")


@pytest.fixture(scope="module")
def agents_python() -> str:
    build = subprocess.run([str(ROOT / "scripts" / "agents_venv.sh")], cwd=ROOT, text=True,
                           capture_output=True, timeout=900,
                           env=dict(os.environ, PYTHON=getattr(sys, "_base_executable", "python3")))
    assert build.returncode == 0, f"could not build .venv-agents:\n{build.stderr[-3000:]}"
    return build.stdout.strip().splitlines()[-1]


def test_default_realtime_agent_session_has_no_error_and_is_answered(stack, agents_python):
    clip = clips()[1][0]   # 0880: a short clip
    run = subprocess.run([agents_python, str(SCRIPT), "--url", f"ws://{stack.gateway.address}/v1/realtime",
                          "--clip", str(clip)], cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert run.returncode == 0, f"agents session failed:\n{run.stderr[-4000:]}"
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(summary, indent=1))
    assert not summary["errors"], summary["errors"]
    assert summary["turn_detection"]["type"] == "semantic_vad", summary["turn_detection"]
    assert "ill" in summary["transcript"].lower() and "man" in summary["transcript"].lower(), summary
    assert summary["response_status"] == "completed", summary
    for needed in ("session.created", "session.updated", "input_audio_buffer.speech_started",
                   "input_audio_buffer.committed", "response.created", "response.done"):
        assert needed in summary["server_events"], f"{needed} missing"
