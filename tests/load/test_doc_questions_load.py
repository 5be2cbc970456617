"""Questions about the documents through the load test (issues #11, #12): the
answer eval's questions, spoken by the real TTS into clips, asked at real
time by a Locust user over the Realtime protocol against the real stack. Every
turn is such a question (share 1.0): each is answered, none fails, each is
reported apart (doc/voice_to_voice, doc/llm_first_token) for the capacity
report, and the RAG service returned passages above the gateway's floor
during the run, at least as many as questions were answered (a sum over
every search, the prefills' included: it shows retrieval grounded them,
not that each single one was), which the recorded clips never do
(tests/integration/test_load_clips_not_documents.py).
Latency is printed, not judged: that is `make capacity --doc-share`'s and
`bench doc_questions`' work."""
from __future__ import annotations

import asyncio

import pytest

from loadtests import doc_questions, probes
from loadtests.run import run_locust
from loadtests.slo_gate import figures
from services.gateway.settings import GatewaySettings
from tests.stack import start_stack

pytestmark = [pytest.mark.load, pytest.mark.timeout(600)]

# GATEWAY_RAG_MIN_SCORE's default, as the hit-score histogram's bucket label (buckets every 0.1)
FLOOR = f"{GatewaySettings().rag_min_score:.1f}"


def hits_above_floor(series: probes.Series) -> float:
    return probes.total(series, "voice_rag_hit_score_count") - probes.total(
        series, "voice_rag_hit_score_bucket", le=FLOOR)


def test_document_questions_are_asked_answered_and_reported_apart(tmp_path):
    stack = start_stack()
    try:
        folder = tmp_path / "doc-questions"
        asyncio.run(doc_questions.prepare(stack.services["tts"].address, folder))
        rag = stack.metrics_targets()["rag"]
        before = hits_above_floor(probes.scrape(rag))
        samples = run_locust(f"ws://{stack.gateway.address}", tmp_path, users=1, spawn_rate=1, run_time="50s",
                             env={"LOAD_SHAPE": "steady", "LOAD_DOC_CLIPS": str(folder), "LOAD_DOC_SHARE": "1",
                                  "LOAD_BARGE_IN_SHARE": "0"}, html=False)
        grounded = hits_above_floor(probes.scrape(rag)) - before
    finally:
        stack.stop()
    f = figures(samples)
    failed = [(s.name, s.code) for s in samples if not s.ok]
    report = (f"{f['doc_turns']:.0f} document questions answered: v2v p50 {f['doc_v2v_p50_ms']:.0f} / p95 "
              f"{f['doc_v2v_p95_ms']:.0f} ms, LLM first token p50 {f['doc_llm_first_token_p50_ms']:.0f} ms; "
              f"{grounded:.0f} passages above the floor; failed {failed}")
    print("\n" + report)
    assert f["doc_turns"] >= 2, report
    assert not failed and f["failed_turns"] == 0, report
    assert f["doc_turns"] == len([s for s in samples if s.name == "voice_to_voice"]), report
    assert len([s for s in samples if s.name == "doc/llm_first_token"]) == f["doc_turns"], report
    assert grounded >= f["doc_turns"], report
