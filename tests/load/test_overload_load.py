"""Beyond the limit the platform degrades plainly (issue #11): under Locust,
one person more than the gateway's session limit is refused at connect with
``server_busy`` (a failed ``connect`` named by that code, retried as the
server's retry_after_s says), while the admitted conversations lose no turn.
Their voice-to-voice p95 is judged as in the smoke load (test_smoke_load.py):
reported always, failing only with LOAD_SMOKE_STRICT=1.

    PYTHONPATH=.:gen .venv/bin/python -m pytest tests/load/test_overload_load.py -m load -s"""
from __future__ import annotations

import os
import warnings

import pytest

from loadtests.run import run_locust
from loadtests.slo_gate import judge
from tests.stack import start_stack

pytestmark = [pytest.mark.load, pytest.mark.timeout(900)]

LIMIT = 2


def test_one_over_the_limit_is_refused_and_the_admitted_keep_their_turns(tmp_path):
    stack = start_stack(gateway_env={"GATEWAY_MAX_SESSIONS": str(LIMIT)})
    try:
        samples = run_locust(f"ws://{stack.gateway.address}", tmp_path, users=LIMIT + 1, spawn_rate=1,
                             run_time="60s", env={"LOAD_SHAPE": "steady"}, html=False)
    finally:
        stack.stop()
    connects = [s for s in samples if s.name == "connect"]
    refused = [s for s in connects if not s.ok]
    verdict = judge(samples)
    f = verdict.figures
    report = (f"{len(connects) - len(refused)} admitted, {len(refused)} refused connects "
              f"({sorted({s.code for s in refused})}); voice_to_voice p50 {f['v2v_p50_ms']:.0f} / p95 "
              f"{f['v2v_p95_ms']:.0f} ms, {f['failed_turns']:.0f}/{f['turns']:.0f} failed turns\n"
              + "\n".join(verdict.lines))
    print("\n" + report)
    assert len(connects) - len(refused) == LIMIT, report
    assert refused and {s.code for s in refused} == {"server_busy"}, report
    assert f["turns"] >= 4 and f["failed_turns"] == 0, report
    if os.environ.get("LOAD_SMOKE_STRICT") == "1":
        assert verdict.ok, report
    elif not verdict.ok:
        warnings.warn(f"admitted sessions broke the SLO gate: {verdict.lines}")
