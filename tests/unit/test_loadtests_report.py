"""The capacity report says what the steps measured and nothing else:
capacity is the highest user count whose step (and every lower one) met the
SLO; per-turn CPU and per-conversation cores and memory are the measured
step's arithmetic; the saturating stage is the one whose latency grew most;
the GPU and N-host math uses those measured costs; the plot is a PNG. The
probes read /proc and Prometheus text correctly."""
from __future__ import annotations

import os

import pytest

from loadtests import probes
from loadtests.capacity import rebuilds, stage_means, underruns
from loadtests.report import Meta, StepResult, capacity, render, saturating_stage

MiB = 2**20


def step(users: int, ok: bool, p95: float, turns: int = 20, failed: int = 0) -> StepResult:
    figures = {"v2v_p50_ms": p95 / 2, "v2v_p95_ms": p95, "transcript_p95_ms": 300.0,
               "barge_in_p95_ms": 150.0, "turns": float(turns), "failed_turns": float(failed),
               "failed_turn_ratio": failed / turns, "barge_ins": 3.0, "refused_connects": 0.0}
    lines = [f"{'ok  ' if ok else 'FAIL'} failed turns: {failed / turns:.1%} of {turns} (limit 0.0%)"
             + (" timeout" if failed else "")]
    # 100 s per step; asr costs 0.25 CPU s and llm 0.5 CPU s per answered turn, gateway 0.05
    answered = turns - failed
    cpu = {"asr": 0.25 * answered, "llm": 0.5 * answered, "gateway": 0.05 * answered}
    rss = {"asr": 600 * MiB, "llm": 900 * MiB + users * 10 * MiB, "gateway": 100 * MiB}
    stages = {"asr_final": 200.0 * users, "llm_first_token": 300.0 + 10 * users}
    return StepResult(users, 100.0, ok, figures, lines, cpu, rss, stages, loadgen_cpu_s=5.0,
                      underruns=(users - 1.0, 0.1 * (users - 1)))


STEPS = [step(1, True, 900, turns=10), step(2, True, 1100), step(3, False, 1500, turns=30, failed=2)]
META = Meta(command="python -m loadtests.capacity --users 1,2,3", machine="2 cores", cores=2,
            idle_rss={"asr": 600 * MiB, "llm": 900 * MiB, "gateway": 100 * MiB}, gpu_host_cores=16)


def test_capacity_is_the_last_step_met_without_a_broken_one_below():
    assert capacity(STEPS) == 2
    assert capacity([step(1, False, 2000), step(2, True, 900)]) == 0
    assert capacity(list(reversed(STEPS))) == 2


def test_report_holds_the_measured_figures():
    md = render(STEPS, META)
    assert "**Conversations per host at SLO: 2**" in md
    assert "| 3 | 100 | 30 | 750 | 1500 | 300 | 150 | 2 (timeout) | 0 | 2 (0.2) | broken |" in md
    # per turn at the capacity step (2 users, 20 answered turns): 0.8 CPU s; 0.1 turns/s/conversation
    assert "| asr | 0.250 |" in md and "| llm | 0.500 |" in md and "**0.800**" in md
    assert "= **0.080 cores**" in md
    # memory: idle 1600 MiB; peak grows 10 MiB per user from 1 to 3 users
    assert "**10 MiB** (peak memory slope from 1 to 3 users)" in md and "1600 MiB with no session" in md
    assert "python -m loadtests.capacity --users 1,2,3" in md


def test_breakdown_from_the_servers_samples():
    from loadtests.capacity import server_breakdown
    from loadtests.slo_gate import Sample
    samples = [Sample("server/asr_final", ms, True) for ms in (100.0, 200.0, 300.0, 400.0)]
    samples += [Sample("voice_to_voice", 999.0, True), Sample("server/endpoint", 500.0, True)]
    bd = server_breakdown(samples)
    assert bd == {"asr_final": (200.0, 400.0), "endpoint": (500.0, 500.0)}
    s = step(2, True, 1100)
    s.server_ms = bd
    md = render([s], META)
    assert "## Where the time goes" in md
    assert "| users | endpoint | asr_final |" in md and "| 2 | 500 / 500 | 200 / 400 |" in md
    assert "## Where the time goes" not in render(STEPS, META)   # no breakdown measured: no table


def test_math_uses_measured_costs():
    md = render(STEPS, META)
    # host: 2 cores × 70 % / (0.8 × 0.1) = 17.5, rounded down; GPU host CPU side: 16 × 0.7 / (0.05 × 0.1) = 2240
    assert "**17 conversations**" in md
    assert "**2240 conversations**" in md
    assert "| 4 | 8 | 6 |" in md       # N = 4 hosts × C = 2, one down: 6


def test_saturating_stage_is_the_fastest_growing_one():
    assert saturating_stage(STEPS)[0] == "asr_final"
    assert "**asr_final** grew most, ×3.0" in render(STEPS, META)
    assert saturating_stage(STEPS[:1]) is None


def test_plot_writes_a_png(tmp_path):
    from loadtests.plot import plot
    path = plot(STEPS, tmp_path / "capacity.png", 1200)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_proc_of_this_process():
    use = probes.read_proc(os.getpid())
    assert use.cpu_s > 0 and use.rss > 10 * MiB


def test_stage_means_and_process_use_from_metrics_text(monkeypatch):
    def series(count: float, total: float) -> probes.Series:
        text = (f'voice_gateway_stage_seconds_count{{service="gateway",stage="asr_final"}} {count}\n'
                f'voice_gateway_stage_seconds_sum{{service="gateway",stage="asr_final"}} {total}\n'
                'process_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1048576\n')
        from prometheus_client.parser import text_string_to_metric_families
        return {(s.name, frozenset(s.labels.items())): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    assert stage_means(series(10, 2.0), series(14, 3.0)) == {"asr_final": pytest.approx(250.0)}
    use = probes.proc_use_from_metrics(series(1, 1))
    assert (use.cpu_s, use.rss) == (12.5, 1048576)
    assert probes.scrape("127.0.0.1:1") == {}            # unreachable: missing, not zero


def test_a_running_stack_is_read_through_its_metrics_ports(monkeypatch):
    from loadtests.capacity import targets
    monkeypatch.delenv("ASR_METRICS_PORT", raising=False)
    readers, addrs = targets(None)
    assert addrs["gateway"] == "127.0.0.1:8000" and addrs["asr"] == "127.0.0.1:9102"
    assert set(readers) == set(addrs)


def test_a_step_during_which_the_rag_rebuilt_its_index_says_so_in_the_report():
    def rag(built: float, embedded: float) -> probes.Series:
        b = {"service": "rag", "model": "m", "variant": "stable"}
        return {("voice_rag_index_loads_total", frozenset({**b, "how": "reloaded"}.items())): 1.0,
                ("voice_rag_index_loads_total", frozenset({**b, "how": "built"}.items())): built,
                ("voice_rag_chunks_embedded_total", frozenset(b.items())): embedded}

    assert rebuilds(rag(0, 0), rag(0, 0)) == []
    unknown = rebuilds({}, rag(0, 0)) + rebuilds(rag(0, 0), {})   # unreadable: unknown, never "none"
    assert len(unknown) == 2 and all("could not be read" in n for n in unknown)
    assert rebuilds(rag(2, 500), rag(1, 40)) == [                  # restarted: counts from its start
        "the RAG restarted during this step (its counters went back)",
        "the RAG rebuilt its index 1 time(s) during this step (40 chunks embedded: documents changed under its "
        "folder): its CPU and the latency it cost are not the conversations'; measure again"]
    assert rebuilds(rag(1, 300), rag(2, 300)) == []    # a file touched, nothing embedded: cheap
    notes = rebuilds(rag(1, 300), rag(3, 420))
    assert len(notes) == 1 and notes[0].startswith("the RAG rebuilt its index 2 time(s) during this step (120 chunks")
    steps = [step(1, True, 900, turns=10), step(2, True, 1100)]
    steps[1].notes = notes
    text = render(steps, META)
    assert f"- **2 user(s): {notes[0]}**" in text
    assert "1 user(s): the RAG" not in text


def test_a_steps_underruns_are_the_gateway_histograms_growth_or_unknown():
    name = "voice_gateway_audio_underrun_seconds"
    labels = frozenset({("service", "gateway")})
    before = {(f"{name}_count", labels): 2.0, (f"{name}_sum", labels): 0.5}
    after = {(f"{name}_count", labels): 5.0, (f"{name}_sum", labels): 1.25}
    assert underruns(before, after) == (3.0, 0.75)
    older = {("voice_gateway_turns_total", labels): 9.0}          # a gateway without the metric
    assert underruns(older, older) is None
    assert underruns({}, after) is None                            # not scraped


def test_document_questions_get_their_own_table_only_when_the_mix_had_them():
    assert "Questions about the documents" not in render(STEPS, META)
    steps = [step(1, True, 900, turns=10), step(2, True, 1100)]
    steps[1].figures.update(doc_turns=4.0, doc_v2v_p50_ms=980.0, doc_v2v_p95_ms=1420.0, doc_llm_turns=3.0,
                            doc_llm_first_token_p50_ms=610.0, doc_llm_first_token_p95_ms=1010.0)
    md = render(steps, META)
    assert "## Questions about the documents in the mix" in md
    assert "| 2 | 4 | 980 | 1420 | 3 | 610 | 1010 |" in md
    assert "| 1 | 0 | – | – | 0 | – | – |" in md


def test_the_gates_figures_hold_the_document_questions_apart():
    from loadtests.slo_gate import Sample, figures
    s = [Sample("voice_to_voice", ms, True) for ms in (500.0, 600.0, 900.0)]
    s += [Sample("doc/voice_to_voice", 900.0, True), Sample("doc/llm_first_token", 400.0, True)]
    f = figures(s)
    assert f["v2v_p95_ms"] == 900.0 and f["doc_turns"] == 1.0 and f["doc_llm_turns"] == 1.0
    assert f["doc_v2v_p50_ms"] == 900.0 and f["doc_llm_first_token_p95_ms"] == 400.0
