"""The load-test runner measures and judges real sessions: against a scripted
Realtime server, Locust users stream clips, get voice-to-voice figures
recorded as requests, and the runner exits 0 only when turns ran and the SLO
gate passes; a server that never answers makes it fail; a non-loopback target
is refused before anything runs."""
from __future__ import annotations

import pytest

from loadtests import run
from tests.unit.realtime_fake import fake_gateway


def test_runner_records_voice_to_voice_and_passes(monkeypatch):
    monkeypatch.setenv("LOAD_BARGE_IN_SHARE", "0.5")
    with fake_gateway() as base:
        rc = run.main(["--url", base, "--users", "2", "--run-time", "12s"])
    rows = {r["Name"]: r for r in run.read_stats(run.OUT / "locust")}
    assert rc == 0
    assert int(rows["voice_to_voice"]["Request Count"]) >= 2
    assert int(rows["voice_to_voice"]["Failure Count"]) == 0


def test_runner_fails_when_no_reply_comes(monkeypatch):
    monkeypatch.setenv("LOAD_TURN_TIMEOUT_S", "3")
    monkeypatch.setattr("tests.unit.realtime_fake.END_SILENCE_MS", 10**9)  # never ends a turn
    # the fake runs in this process, so the patched constant applies to it
    with fake_gateway() as base:
        rc = run.main(["--url", base, "--users", "1", "--run-time", "8s"])
    assert rc == 1


def test_non_loopback_target_refused():
    with pytest.raises(SystemExit):
        run.parse_args(["--url", "ws://example.com:8000"])


def test_step_shape_runs_through_the_runner():
    with fake_gateway() as base:
        rc = run.main(["--url", base, "--shape", "step", "--step-users", "1", "--step-seconds", "6",
                       "--max-users", "2", "--spawn-rate", "2"])
    samples = run.slo_gate.read_samples(run.OUT / "samples.jsonl")
    assert rc == 0
    assert max(s.users for s in samples) == 2     # the second step added a user
    assert any(s.name == "voice_to_voice" and s.ok for s in samples)


@pytest.mark.parametrize("env, says", [({"LOAD_DOC_SHARE": "0.5"}, "without LOAD_DOC_CLIPS"),
                                       ({"LOAD_DOC_SHARE": "1.5", "LOAD_DOC_CLIPS": "x"}, "within 0..1")])
def test_a_share_of_document_questions_without_clips_or_out_of_range_is_refused(env, says):
    """In a process of its own: importing the locustfile patches the process for gevent."""
    import subprocess
    import sys
    code = f"from loadtests.locustfile import pacing_from_env; pacing_from_env({env!r})"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and says in r.stderr, r.stderr[-2000:]
