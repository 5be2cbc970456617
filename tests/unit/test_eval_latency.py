"""The latency-by-stage report on synthetic turns (no stack): per-stage
percentiles over the turns that report the stage, shares of voice-to-voice,
the targets' verdicts, and a plot written."""
from __future__ import annotations

import math

import pytest

from eval.latency import CLIENT, markdown, plot, stage_rows


def _turns(n: int = 20) -> list[dict[str, float]]:
    out = []
    for i in range(n):
        t = {"endpoint_ms": 300.0 + i, "asr_final_ms": 200.0, "llm_first_token_ms": 100.0 + 10 * i,
             "tts_first_audio_ms": 150.0, "voice_to_voice_ms": 500.0 + 10 * i, CLIENT: 520.0 + 10 * i}
        if i % 2:
            t["retrieval_ms"] = 40.0          # only the turns that searched documents
        out.append(t)
    return out


def test_each_stage_over_the_turns_that_report_it_in_pipeline_order():
    rows = stage_rows(_turns())
    keys = [r.key for r in rows]
    assert keys == ["endpoint_ms", "asr_final_ms", "retrieval_ms", "llm_first_token_ms", "tts_first_audio_ms",
                    "voice_to_voice_ms", CLIENT]
    by = {r.key: r for r in rows}
    assert by["retrieval_ms"].n == 10 and by["endpoint_ms"].n == 20
    assert by[CLIENT].p50 == pytest.approx(615.0)          # 520..710, median of 20
    assert by["llm_first_token_ms"].p95 == pytest.approx(280.5)
    assert by["asr_final_ms"].share == pytest.approx(200.0 / 615.0)


def test_missing_nan_and_boolean_values_are_not_samples():
    rows = stage_rows([{"endpoint_ms": math.nan, "asr_final_ms": True, "retrieval_ms": None, CLIENT: 400.0},
                       {"endpoint_ms": 250.0, CLIENT: 600.0}])
    by = {r.key: r for r in rows}
    assert set(by) == {"endpoint_ms", CLIENT} and by["endpoint_ms"].n == 1


def test_the_report_says_whether_the_targets_were_met_and_where_the_time_goes(tmp_path):
    rows = stage_rows(_turns())
    text = markdown(rows, 20, "python -m eval.latency", "latency.png")
    assert "p50 615 ms against 800 (met)" in text and "against 1200 (met)" in text
    assert "Largest stage at p50: end of turn decided" in text
    slow = stage_rows([{**t, CLIENT: t[CLIENT] + 700} for t in _turns()])
    assert "MISSED" in markdown(slow, 20, "x", "y.png")
    png = plot(rows, tmp_path / "latency.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
