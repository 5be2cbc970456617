"""`make capacity`: step the number of concurrent conversations up (1, 2, 3,
4, 6, 8 by default), each step a steady Locust run of --step-seconds, until a
step breaks the SLO; meanwhile read every service's CPU time and memory and
its metrics; then write docs/capacity.md and its plot.

    python -m loadtests.capacity [--host ws://127.0.0.1:8000] [--users 1,2,3,4,6,8]
                                 [--step-seconds 120] [--report docs/capacity.md]
                                 [--doc-share 0.25]

Without --host it starts the whole stack itself (tests/stack.py) and reads
/proc of each process; with --host (a `make run` stack) it reads the
services' /metrics ports from common/components.py. With --doc-share a
share of the questions are the answer eval's questions about the documents,
spoken by the stack's TTS first (loadtests/doc_questions.py). Each step is its own
Locust run, so every step's CPU and latency belong to that user count only."""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from loadtests import probes, slo_gate
from loadtests.plot import plot
from loadtests.report import Meta, StepResult, render
from loadtests.run import LOOPBACK, ROOT, run_locust

STAGE = "voice_gateway_stage_seconds"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default=os.environ.get("HOST", ""),
                   help="gateway base ws://127.0.0.1:PORT of a running stack (default: start one)")
    p.add_argument("--users", default="1,2,3,4,6,8", help="user counts to step through (default 1,2,3,4,6,8)")
    p.add_argument("--step-seconds", type=int, default=120, help="seconds per step (default 120)")
    p.add_argument("--spawn-rate", type=float, default=0.5, help="users started per second (default 0.5)")
    p.add_argument("--keep-going", action="store_true", help="run every step even after the SLO broke")
    p.add_argument("--report", type=Path, default=ROOT / "docs" / "capacity.md",
                   help="report path; the plot is written next to it (default docs/capacity.md)")
    p.add_argument("--out", type=Path, default=ROOT / "artifacts" / "capacity",
                   help="Locust reports per step (default artifacts/capacity)")
    p.add_argument("--session-limit", type=int, default=0,
                   help="GATEWAY_MAX_SESSIONS of the stack it starts: 0 = unlimited, so the steps measure "
                        "the host, not the admission limit (default 0)")
    p.add_argument("--doc-share", type=float, default=0.0,
                   help="share of questions about the documents (0..1; default 0: the recorded clips only)")
    p.add_argument("--gpu-host-cores", type=int, default=16, help="cores of the GPU host in the math (default 16)")
    slo_gate.add_flags(p)
    a = p.parse_args(argv)
    a.user_steps = sorted({int(u) for u in a.users.split(",") if u.strip()})
    if not 0.0 <= a.doc_share <= 1.0:
        p.error("--doc-share must be within 0..1")
    if not a.user_steps or a.user_steps[0] < 1 or a.user_steps[-1] > 50:
        p.error("--users must be counts within 1..50")
    if a.host and urlparse(a.host).hostname not in LOOPBACK:
        p.error("only loopback targets are allowed")
    return a


def targets(stack) -> tuple[dict, dict[str, str]]:
    """(CPU/RSS readers, component → metrics address) for the stack under test."""
    if stack is not None:
        procs = dict(stack.services) | {"gateway": stack.gateway}
        readers = {n: (lambda pid=p.proc.pid: probes.read_proc(pid)) for n, p in procs.items()}
        if stack.redis is not None:
            readers["redis"] = lambda pid=stack.redis.pid: probes.read_proc(pid)
        return readers, stack.metrics_targets()
    from common.components import COMPONENTS
    addrs = {c.name: f"127.0.0.1:{c.resolved(dict(os.environ)).metrics_port}" for c in COMPONENTS}
    readers = {n: (lambda a=a: probes.proc_use_from_metrics(probes.scrape(a))) for n, a in addrs.items()}
    return readers, addrs


def stage_means(before: probes.Series, after: probes.Series) -> dict[str, float]:
    """Mean ms of each turn stage observed during the step (histogram deltas)."""
    out = {}
    for stage in probes.label_values(after, f"{STAGE}_count", "stage"):
        n = probes.total(after, f"{STAGE}_count", stage=stage) - probes.total(before, f"{STAGE}_count", stage=stage)
        s = probes.total(after, f"{STAGE}_sum", stage=stage) - probes.total(before, f"{STAGE}_sum", stage=stage)
        if n > 0:
            out[stage] = 1000 * s / n
    return out


def server_breakdown(samples: list[slo_gate.Sample]) -> dict[str, tuple[float, float]]:
    """p50 / p95 ms of each ``server/<stage>`` figure the users reported."""
    by: dict[str, list[float]] = {}
    for smp in samples:
        if smp.name.startswith("server/") and smp.ok:
            by.setdefault(smp.name[len("server/"):], []).append(smp.ms)
    return {k: (slo_gate.percentile(v, 50), slo_gate.percentile(v, 95)) for k, v in by.items()}


UNDERRUN = "voice_gateway_audio_underrun_seconds"


def underruns(before: probes.Series, after: probes.Series) -> tuple[float, float] | None:
    """Answers' audio underruns during the step, (count, seconds of silence),
    from the gateway's histogram; None when it could not be read (or the
    gateway is older than the metric)."""
    if not before or not after or not any(name == f"{UNDERRUN}_count" for name, _ in after):
        return None
    return tuple(probes.total(after, f"{UNDERRUN}_{k}") - probes.total(before, f"{UNDERRUN}_{k}")
                 for k in ("count", "sum"))   # type: ignore[return-value]


def rebuilds(before: probes.Series, after: probes.Series) -> list[str]:
    """What the RAG's index builds during a step say (its metrics, scraped
    before and after): a rebuild (a document changed) embeds on the host's
    CPU, which is then not the conversations' cost. Seen 2026-12-06: two
    edits under docs/ during a 4-user step, RAG 0.40 CPU s per turn against
    0.06, voice-to-voice p95 3328 ms against 1785 in the next clean step."""
    if not before or not after:
        return ["the RAG's metrics could not be read before or after this step: whether it re-embedded "
                "documents meanwhile is not known"]
    def counts(series: probes.Series) -> tuple[float, float, float]:
        """(index loads, of them builds, chunks embedded)."""
        return (probes.total(series, "voice_rag_index_loads_total"),
                probes.total(series, "voice_rag_index_loads_total", how="built"),
                probes.total(series, "voice_rag_chunks_embedded_total"))
    was, now = counts(before), counts(after)
    restarted = any(b > a for b, a in zip(was, now))     # its counters started again from 0
    if restarted:
        was = (0.0, 0.0, 0.0)
    built, embedded = now[1] - was[1], now[2] - was[2]
    out = ["the RAG restarted during this step (its counters went back)"] if restarted else []
    if embedded > 0:      # none, or only files touched: a build that embeds nothing costs little
        out.append(f"the RAG rebuilt its index {built:.0f} time(s) during this step ({embedded:.0f} chunks "
                   "embedded: documents changed under its folder): its CPU and the latency it cost are not "
                   "the conversations'; measure again")
    return out


def doc_clips(a: argparse.Namespace, stack) -> dict[str, str]:
    """Locust's environment for the document questions: spoken first by the
    stack's TTS (or, with --host, the one at common/components.py's port)."""
    if a.doc_share <= 0:
        return {}
    import asyncio
    from loadtests import doc_questions
    if stack is not None:
        tts = stack.services["tts"].address
    else:
        from common.components import COMPONENTS
        tts = next(f"127.0.0.1:{c.resolved(dict(os.environ)).port}" for c in COMPONENTS if c.name == "tts")
    folder = a.out / "doc-questions"
    paths = asyncio.run(doc_questions.prepare(tts, folder))
    print(f"{len(paths)} document questions spoken into {folder}; share of questions {a.doc_share:g}", flush=True)
    return {"LOAD_DOC_CLIPS": str(folder), "LOAD_DOC_SHARE": str(a.doc_share)}


def run_step(base: str, users: int, a: argparse.Namespace, readers, addrs: dict[str, str],
             extra_env: dict[str, str] | None = None) -> StepResult:
    gateway_metrics, rag_metrics = addrs["gateway"], addrs.get("rag")
    before = probes.scrape(gateway_metrics)
    rag_before = probes.scrape(rag_metrics) if rag_metrics else {}
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with probes.Usage(readers) as use:
        samples = run_locust(base, a.out / f"users-{users}", users=users, spawn_rate=a.spawn_rate,
                             run_time=f"{a.step_seconds}s", env={"LOAD_SHAPE": "steady"} | (extra_env or {}))
    wall = time.monotonic() - t0     # the window CPU was measured over (Locust start to stop)
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = probes.scrape(gateway_metrics)
    rag_after = probes.scrape(rag_metrics) if rag_metrics else {}
    verdict = slo_gate.judge(samples, slo_gate.thresholds(a))
    return StepResult(users, wall, verdict.ok, verdict.figures, verdict.lines, use.cpu_s(),
                      dict(use.peak_rss), stage_means(before, after),
                      (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime),
                      server_breakdown(samples), rebuilds(rag_before, rag_after), underruns(before, after))


def machine(cores: int) -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cores} cores, {mem:.1f} GiB memory, load average {os.getloadavg()[0]:.1f} before the run"


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    cores = os.cpu_count() or 1
    desc = machine(cores)
    stack, base = None, a.host
    if not base:
        sys.path[:0] = [str(ROOT), str(ROOT / "gen")]
        from tests.stack import start_stack
        print("starting the stack (5 services + gateway)...", flush=True)
        stack = start_stack(gateway_env={"GATEWAY_MAX_SESSIONS": str(a.session_limit)})
        base = f"ws://{stack.gateway.address}"
    steps: list[StepResult] = []
    try:
        readers, addrs = targets(stack)
        idle = probes.Usage(readers)
        idle.read()
        doc_env = doc_clips(a, stack)
        for users in a.user_steps:
            print(f"\n==> step: {users} user(s) for {a.step_seconds} s", flush=True)
            step = run_step(base, users, a, readers, addrs, doc_env)
            steps.append(step)
            f = step.figures
            print(f"    v2v p50 {f['v2v_p50_ms']:.0f} / p95 {f['v2v_p95_ms']:.0f} ms, "
                  f"{f['failed_turns']:.0f}/{f['turns']:.0f} failed: SLO {'met' if step.ok else 'broken'}")
            print("\n".join("    " + ln for ln in step.gate_lines), flush=True)
            print("".join(f"    WARNING: {n}\n" for n in step.notes), end="", flush=True)
            if step.underruns is not None:
                print(f"    answer audio underruns: {step.underruns[0]:.0f} ({step.underruns[1]:.2f} s of silence)")
            if f.get("doc_turns"):
                print(f"    document questions: {f['doc_turns']:.0f} answered, v2v p50 {f['doc_v2v_p50_ms']:.0f} / "
                      f"p95 {f['doc_v2v_p95_ms']:.0f} ms, LLM first token p50 "
                      f"{f['doc_llm_first_token_p50_ms']:.0f} / p95 {f['doc_llm_first_token_p95_ms']:.0f} ms")
            print("    server p50/p95 ms: " + ", ".join(f"{k} {v[0]:.0f}/{v[1]:.0f}"
                                                       for k, v in sorted(step.server_ms.items())), flush=True)
            if not step.ok and not a.keep_going:
                break
            time.sleep(3)     # sessions close before the next step starts
    finally:
        if stack is not None:
            stack.stop()
    if not steps:
        return 1
    png = a.report.with_suffix(".png")
    plot(steps, png, a.slo_v2v_p95_ms)
    cmd = "python -m loadtests.capacity " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    meta = Meta(command=cmd.strip(), machine=desc, cores=cores, idle_rss=dict(idle.peak_rss),
                plot=png.name, gpu_host_cores=a.gpu_host_cores, note=(
                    f"Gateway session limit: {a.session_limit or 'none'} (GATEWAY_MAX_SESSIONS="
                    f"{a.session_limit}), so the steps measure the host, not the admission limit."
                    if not a.host else "Against a running stack: its own session limit applies "
                    "(refused connects are counted per step).") + (
                    f" {a.doc_share:.0%} of the questions are about the documents (the answer eval's, "
                    "spoken by the stack's TTS; loadtests/doc_questions.py)." if a.doc_share > 0 else ""))
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text(render(steps, meta))
    print(f"\nwrote {a.report} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
