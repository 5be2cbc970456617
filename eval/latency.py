"""End-to-end latency by stage (`make eval`, issue #14): the project's real
clips spoken at real time through the Realtime protocol to the whole stack,
each turn's stages as the gateway reports them (response.done metadata,
services/gateway/timings.py), written as a table and a plot.

The stages overlap: the final transcript, retrieval and even the answer's
first token can run inside the silence window (preemption), so their
medians do not add up to voice-to-voice. The table gives each stage's p50
and p95 and its p50 as a share of voice-to-voice p50 (how much of the wait
it could explain at most). Aggregates only: no audio, no transcripts.

    python -m eval.latency                          # starts the stack itself
    python -m eval.latency --url ws://127.0.0.1:8000/v1/realtime --rounds 3
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Sequence

from bench.bench_e2e import pct as _pct, run, split   # the bench's turns and its interpolated percentiles

ROOT = Path(__file__).resolve().parent.parent
V2V_P50_TARGET_MS, V2V_P95_TARGET_MS = 800.0, 1200.0   # observability/slo.py: 95 % of turns within 1.2 s
# (timings key, label) in the order a turn passes through them
STAGES = (
    ("speech_end_ms", "VAD: speech end heard"),
    ("endpoint_ms", "end of turn decided"),
    ("asr_final_ms", "ASR final pass"),
    ("asr_wait_ms", "waiting for the final"),
    ("retrieval_ms", "retrieval"),
    ("llm_first_token_ms", "LLM first token"),
    ("first_clause_ms", "LLM first clause"),
    ("tts_first_audio_ms", "TTS first audio"),
    ("voice_to_voice_ms", "voice to voice (gateway)"),
)
CLIENT = "client_v2v_ms"       # what the client measured: last voiced sample to first audio received


@dataclasses.dataclass
class StageRow:
    key: str
    label: str
    n: int
    p50: float
    p95: float
    share: float                  # p50 over voice-to-voice p50 (client's); nan without it


def stage_rows(samples: Sequence[dict[str, float]]) -> list[StageRow]:
    """Per stage, over the turns that report it (a turn without retrieval has
    no retrieval_ms). ``samples``: each turn's timings, plus CLIENT when the
    client measured its voice-to-voice."""
    v2v = [s[CLIENT] for s in samples if _num(s.get(CLIENT))]
    ref = _pct(v2v, 50)
    rows = []
    for key, label in (*STAGES, (CLIENT, "voice to voice (client)")):
        xs = [float(s[key]) for s in samples if _num(s.get(key))]
        if xs:
            p50 = _pct(xs, 50)
            rows.append(StageRow(key, label, len(xs), p50, _pct(xs, 95), p50 / ref if ref > 0 else math.nan))
    return rows


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def markdown(rows: Sequence[StageRow], turns: int, command: str, png: str, note: str = "") -> str:
    by = {r.key: r for r in rows}
    lines = ["# End-to-end latency by stage", "",
             f"Written by `{command}` (eval/latency.py): {turns} turns of real speech at real time through "
             f"the Realtime protocol, one session per turn. {note}".rstrip(), "",
             f"![latency by stage]({png})", "",
             "| stage | turns | p50 ms | p95 ms | p50 / voice-to-voice p50 |", "|---|---|---|---|---|"]
    for r in rows:
        share = "" if math.isnan(r.share) or r.key == CLIENT else f"{100 * r.share:.0f} %"
        lines.append(f"| {r.label} | {r.n} | {r.p50:.0f} | {r.p95:.0f} | {share} |")
    c = by.get(CLIENT)
    if c is not None:
        ok50, ok95 = c.p50 <= V2V_P50_TARGET_MS, c.p95 <= V2V_P95_TARGET_MS
        lines += ["", f"Voice to voice (client): p50 {c.p50:.0f} ms against {V2V_P50_TARGET_MS:.0f} "
                      f"({'met' if ok50 else 'MISSED'}), p95 {c.p95:.0f} ms against {V2V_P95_TARGET_MS:.0f} "
                      f"({'met' if ok95 else 'MISSED'})."]
    stages = [r for r in rows if r.key not in ("voice_to_voice_ms", CLIENT)]
    if stages:
        worst = max(stages, key=lambda r: r.p50)
        lines.append(f"Largest stage at p50: {worst.label} ({worst.p50:.0f} ms). Stages overlap (the final "
                     "pass, retrieval and a preemptive answer run inside the silence window): their shares "
                     "do not add up.")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[StageRow], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4), dpi=110)
    ys = list(range(len(rows)))[::-1]                 # the first stage on top
    ax.barh(ys, [r.p50 for r in rows], color="#4c78a8", label="p50")
    ax.scatter([r.p95 for r in rows], ys, marker="|", s=220, color="#e45756", label="p95", zorder=3)
    for y, r in zip(ys, rows):
        ax.text(max(r.p50, r.p95) + 15, y, f"{r.p50:.0f} / {r.p95:.0f}", va="center", fontsize=7)
    ax.axvline(V2V_P50_TARGET_MS, color="grey", ls="--", lw=1, label="voice-to-voice p50 target")
    ax.axvline(V2V_P95_TARGET_MS, color="black", ls=":", lw=1, label="p95 target (SLO)")
    ax.set_yticks(ys)
    ax.set_yticklabels([r.label for r in rows], fontsize=8)
    ax.set_xlabel("ms (stages overlap; see the report)")
    ax.set_title("End-to-end latency by stage (p50 bar, p95 mark)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def samples_of(turns) -> list[dict[str, float]]:
    """bench/bench_e2e.py's turns as timing samples; a turn that was split or
    got no audio is left out (the bench counts those apart)."""
    return [{**t.timings, CLIENT: t.v2v_ms} for t in turns if t.v2v_ms is not None and not split(t)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="", help="gateway WebSocket URL (default: start the whole stack)")
    p.add_argument("--rounds", type=int, default=2, help="passes over the project's 5 clips (default 2)")
    p.add_argument("--out", type=Path, default=ROOT / "var" / "eval" / "latency.md")
    args = p.parse_args(argv)

    stack, url = None, args.url
    if not url:
        from tests.stack import start_stack
        print("starting the stack (5 services + gateway)...", file=sys.stderr, flush=True)
        stack = start_stack()
        url = stack.ws_url
    try:
        turns, _ = asyncio.run(run(url, args.rounds, 0))
    finally:
        if stack is not None:
            stack.stop()
    samples = samples_of(turns)
    if not samples:
        print(f"no turn was answered ({len(turns)} spoken): is the stack healthy?", file=sys.stderr)
        return 1
    rows = stage_rows(samples)
    png = plot(rows, args.out.with_suffix(".png"))
    command = "python -m eval.latency " + " ".join(argv if argv is not None else sys.argv[1:])
    dropped = len(turns) - len(samples)
    note = f"{dropped} turns split or unanswered, left out." if dropped else ""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, len(samples), command.strip(), png.name, note))
    args.out.with_suffix(".json").write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    print(args.out.read_text())
    print(f"report: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
