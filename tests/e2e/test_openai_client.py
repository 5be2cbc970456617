"""The official ``openai`` package, unmodified, holds a complete spoken
conversation with the local gateway: session.update, real speech streamed at
real time, a server-VAD turn that is transcribed and answered with audio and
completes, then a second turn whose reply the client cancels (response.cancel)
and truncates; then a function tool offered through session.update is called
(typed events: arguments, call_id, the function_call output item), its output
sent back and answered in words. openai pins websockets<16, so it runs in its own venv built by
scripts/openai_venv.sh; a machine with PyPI access that can't build it fails
this test rather than skipping it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.talk import wer
from tests.procs import ROOT, clips

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("openai_conversation.py")


@pytest.fixture(scope="module")
def openai_python() -> str:
    build = subprocess.run([str(ROOT / "scripts" / "openai_venv.sh")], cwd=ROOT, text=True,
                           capture_output=True, timeout=900,
                           # the venv is built from the base interpreter, not from .venv
                           env=dict(os.environ, PYTHON=getattr(sys, "_base_executable", "python3")))
    assert build.returncode == 0, f"could not build .venv-openai:\n{build.stderr[-3000:]}"
    return build.stdout.strip().splitlines()[-1]


def test_openai_package_holds_a_conversation_with_a_cancelled_turn_and_a_tool_call(stack, openai_python):
    (a, ref_a), (b, _) = clips()[1], clips()[4]   # 0880 and 0930: short clips
    run = subprocess.run(
        [openai_python, str(SCRIPT), "--base", f"ws://{stack.gateway.address}/v1",
         "--clip", str(a), "--clip", str(b)],
        cwd=ROOT, text=True, capture_output=True, timeout=400)
    assert run.returncode == 0, f"openai conversation failed:\n{run.stderr[-4000:]}"
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(summary, indent=1))   # shown with -s, and kept in the report on failure

    turn1, turn2 = summary["turns"]
    assert wer(ref_a, turn1["transcript"]) <= 0.25, turn1
    assert turn1["status"] == "completed", turn1
    assert turn1["audio_deltas"] > 0 and turn1["audio_bytes"] >= 24000 * 2 * 0.3, turn1
    assert turn2["status"] == "cancelled" and turn2["reason"] == "client_cancelled", turn2
    # clamped to the audio actually sent, never rejected
    assert 0 <= turn2["truncated_audio_end_ms"] <= 200, turn2
    assert not summary["errors"], summary["errors"]
    tools = summary["tools"]
    call = tools["call"]
    assert call["status"] == "completed" and call["output_types"] == ["function_call"], call
    assert call["name"] == "get_weather" and call["call_id"] and call["item_call_id"] == call["call_id"], call
    args = json.loads(call["arguments"])
    assert set(args) == {"city", "unit"} and args["unit"] in ("celsius", "fahrenheit"), call
    assert tools["answer_status"] == "completed" and tools["answer_types"] == ["message"], tools
    assert tools["answer"].strip(), tools
    types = summary["event_types"]
    for needed in ("session.created", "session.updated", "input_audio_buffer.speech_started",
                   "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                   "response.created", "output_audio_buffer.started", "response.done"):
        assert needed in types, f"{needed} missing from {types}"
