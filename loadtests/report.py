"""docs/capacity.md from the steps of a capacity run: conversations per host
at SLO, CPU and memory per conversation, the stage that saturates first, and
the capacity math for a GPU host and for N hosts, all from measured step
results (``StepResult``), so the report is a pure function tested on
synthetic steps (tests/unit/test_loadtests_report.py)."""
from __future__ import annotations

import dataclasses
import math

CPU_SIDE = ("gateway", "vad", "rag", "redis")   # stay on the CPU on a GPU host
GPU_SIDE = ("asr", "llm", "tts")                # the model stages a GPU host moves to the card


@dataclasses.dataclass
class StepResult:
    users: int
    seconds: float
    ok: bool                        # the SLO gate's verdict for this step
    figures: dict[str, float]       # slo_gate.figures(): v2v_p50_ms, v2v_p95_ms, turns, ...
    gate_lines: list[str]
    cpu_s: dict[str, float]         # CPU seconds per component during the step
    peak_rss: dict[str, int]        # bytes, peak per component during the step
    stage_ms: dict[str, float] = dataclasses.field(default_factory=dict)  # gateway stage means
    loadgen_cpu_s: float = 0.0      # the Locust process (same host, so it competes)
    # the server's per-turn breakdown (response.done timings): stage -> (p50, p95) ms
    server_ms: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)   # what disturbed the step (capacity.rebuilds)
    # answers' audio underruns during the step (gateway metric deltas): (count, seconds of silence)
    underruns: tuple[float, float] | None = None

    @property
    def answered(self) -> float:
        return self.figures.get("turns", 0.0) - self.figures.get("failed_turns", 0.0)

    def cpu_per_turn(self) -> dict[str, float]:
        n = self.answered
        return {k: v / n for k, v in self.cpu_s.items()} if n else {}

    @property
    def turn_rate(self) -> float:
        """Turns per second per conversation (how often a person asks)."""
        return self.figures.get("turns", 0.0) / (self.users * self.seconds) if self.seconds else 0.0


@dataclasses.dataclass(frozen=True)
class Meta:
    command: str
    machine: str                    # e.g. "2 cores, 7.7 GiB, load average 0.4 before the run"
    cores: int
    idle_rss: dict[str, int]        # bytes per component with no session open
    plot: str = "capacity.png"      # path relative to the report
    gpu_host_cores: int = 16
    target_cpu_util: float = 0.7    # planning headroom: never plan a host past 70 % CPU
    note: str = ""


def capacity(steps: list[StepResult]) -> int:
    """Users of the highest step that passed with every lower step passing too."""
    best = 0
    for s in sorted(steps, key=lambda s: s.users):
        if not s.ok:
            break
        best = s.users
    return best


def _ms(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.0f}"


def _mib(b: float) -> str:
    return f"{b / 2**20:.0f}"


def saturating_stage(steps: list[StepResult]) -> tuple[str, float] | None:
    """The gateway stage whose mean latency grew most (as a ratio) from the
    first step to the last: the queue that forms first is where the host runs out."""
    if len(steps) < 2:
        return None
    a, b = steps[0].stage_ms, steps[-1].stage_ms
    growth = {k: b[k] / a[k] for k in a if k in b and a[k] > 0}
    if not growth:
        return None
    k = max(growth, key=growth.get)
    return k, growth[k]


def render(steps: list[StepResult], meta: Meta) -> str:
    steps = sorted(steps, key=lambda s: s.users)
    cap = capacity(steps)
    ref = next((s for s in steps if s.users == cap), steps[0])   # costs measured at capacity
    comps = sorted({k for s in steps for k in s.cpu_s})
    out = ["# Capacity of one host", "",
           "Written by `make capacity` (loadtests/capacity.py); do not edit by hand.", "",
           f"Command: `{meta.command}`  ", f"Machine: {meta.machine}", ""]
    if meta.note:
        out += [meta.note, ""]
    out += [f"**Conversations per host at SLO: {cap}** (voice-to-voice p95 ≤ SLO, no failed turn, "
            "barge-in reaction p95 ≤ SLO; the gate of loadtests/slo_gate.py per step)." if cap else
            "**No step met the SLO: this host holds no conversation at SLO under this load.**", "",
            f"![voice-to-voice and failed turns against users]({meta.plot})", "",
            "## Steps", "",
            "| users | s | turns | v2v p50 | v2v p95 | transcript p95 | barge-in p95 | failed turns "
            "| refused connects | answer underruns (s) | SLO |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        f = s.figures
        codes = [ln.split(")", 1)[1].strip() for ln in s.gate_lines if "failed turns" in ln and ")" in ln]
        failed = f"{f['failed_turns']:.0f}" + (f" ({codes[0]})" if codes and codes[0] else "")
        out.append(f"| {s.users} | {s.seconds:.0f} | {f['turns']:.0f} | {_ms(f['v2v_p50_ms'])} | "
                   f"{_ms(f['v2v_p95_ms'])} | {_ms(f['transcript_p95_ms'])} | {_ms(f['barge_in_p95_ms'])} | "
                   f"{failed} | {f.get('refused_connects', 0):.0f} | {_underruns(s)} | "
                   f"{'met' if s.ok else 'broken'} |")
    out += ["", "Latencies in ms, from the unrounded samples; v2v = last voiced sample of the "
            "question → first audio delta. Answer underruns: silences inside answers whose next "
            "audio came late (the gateway's `voice_gateway_audio_underrun_seconds`), count (total s).", ""]
    out += [f"- **{s.users} user(s): {n}**" for s in steps for n in s.notes] + ([""] if any(s.notes for s in steps)
                                                                              else [])
    out += _documents(steps)
    out += _costs(steps, ref, comps, meta)
    out += _breakdown(steps)
    out += _saturation(steps, comps)
    out += _math(ref, cap, meta)
    return "\n".join(out) + "\n"


def _underruns(s: StepResult) -> str:
    return "–" if s.underruns is None else f"{s.underruns[0]:.0f} ({s.underruns[1]:.1f})"


def _documents(steps: list[StepResult]) -> list[str]:
    """The questions about the documents in the mix (loadtests/doc_questions.py),
    against issue #12's bar for them (p50 ≤ 800 / p95 ≤ 1200 ms); nothing when
    the run had none."""
    if not any(s.figures.get("doc_turns", 0) for s in steps):
        return []
    out = ["## Questions about the documents in the mix", "",
           "The same steps' turns whose question was one of the answer eval's, spoken by the "
           "stack's TTS (retrieval, then ~250 prompt tokens of passages); they are in the table "
           "above too. Target for them (issue #12): p50 ≤ 800, p95 ≤ 1200 ms.", "",
           "| users | first audio heard | v2v p50 | v2v p95 | completed answers | LLM first token p50 | p95 |",
           "|---|---|---|---|---|---|---|"]
    for s in steps:
        f = s.figures
        out.append(f"| {s.users} | {f.get('doc_turns', 0):.0f} | {_ms(f.get('doc_v2v_p50_ms', math.nan))} | "
                   f"{_ms(f.get('doc_v2v_p95_ms', math.nan))} | {f.get('doc_llm_turns', 0):.0f} | "
                   f"{_ms(f.get('doc_llm_first_token_p50_ms', math.nan))} | "
                   f"{_ms(f.get('doc_llm_first_token_p95_ms', math.nan))} |")
    out += ["", "First audio heard: document questions whose answer's audio began (a turn that failed "
            "later counts here too); the LLM's first token is the server's timing of the answers that "
            "completed uncut (response.done)."]
    return out + [""]


BREAKDOWN = ("speech_end", "endpoint", "asr_final", "transcript", "llm_first_token", "first_clause",
             "tts_first_audio", "audio_ready", "interim_gap", "voice_to_voice")


def _breakdown(steps: list[StepResult]) -> list[str]:
    """Where each step's voice-to-voice time went, from the server's own
    per-turn timings (services/gateway/timings.py), p50 / p95 ms."""
    keys = [k for k in BREAKDOWN if any(k in s.server_ms for s in steps)]
    if not keys:
        return []
    out = ["## Where the time goes", "",
           "The server's own per-turn timings (response.done metadata; definitions in "
           "services/gateway/timings.py), p50 / p95 ms:", "",
           "| users | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for s in steps:
        cells = [f"{_ms(s.server_ms[k][0])} / {_ms(s.server_ms[k][1])}" if k in s.server_ms else "–"
                 for k in keys]
        out.append(f"| {s.users} | " + " | ".join(cells) + " |")
    return out + [""]


def _costs(steps: list[StepResult], ref: StepResult, comps: list[str], meta: Meta) -> list[str]:
    out = ["## CPU and memory", "",
           "CPU cores in use per component during each step (CPU seconds / step seconds):", "",
           "| users | " + " | ".join(comps) + " | all services | load generator |",
           "|---|" + "---|" * (len(comps) + 2)]
    for s in steps:
        cores = [s.cpu_s.get(c, 0.0) / s.seconds for c in comps]
        out.append(f"| {s.users} | " + " | ".join(f"{c:.2f}" for c in cores) +
                   f" | {sum(cores):.2f} | {s.loadgen_cpu_s / s.seconds:.2f} |")
    per_turn = ref.cpu_per_turn()
    all_turn = sum(per_turn.values())
    idle = sum(meta.idle_rss.values())
    grow = sum(ref.peak_rss.values()) - idle
    mem_conv, mem_how = memory_per_conversation(steps, idle)
    out += ["", f"Per turn, measured at {ref.users} user(s) ({ref.answered:.0f} answered turns, "
            f"{ref.turn_rate * 60:.1f} turns per minute per conversation):", "",
            "| component | CPU s per turn | resident MiB idle | peak MiB |", "|---|---|---|---|"]
    for c in comps:
        out.append(f"| {c} | {per_turn.get(c, 0.0):.3f} | {_mib(meta.idle_rss.get(c, 0))} | "
                   f"{_mib(ref.peak_rss.get(c, 0))} |")
    conv_cores = all_turn * ref.turn_rate
    out += [f"| **all** | **{all_turn:.3f}** | **{_mib(idle)}** | **{_mib(idle + grow)}** |", "",
            f"- CPU per conversation: {all_turn:.3f} CPU s per turn × {ref.turn_rate:.3f} turns/s = "
            f"**{conv_cores:.3f} cores**.",
            f"- Memory: the models are loaded once ({_mib(idle)} MiB with no session); a conversation "
            f"adds **{_mib(mem_conv)} MiB** ({mem_how}).", ""]
    return out


def memory_per_conversation(steps: list[StepResult], idle: int) -> tuple[float, str]:
    """Bytes a conversation adds: the slope of peak memory between the first
    and the last step (first-use allocations, such as a model's work
    buffers, are paid once and would inflate growth / users)."""
    a, b = steps[0], steps[-1]
    if b.users > a.users:
        slope = (sum(b.peak_rss.values()) - sum(a.peak_rss.values())) / (b.users - a.users)
        return max(0.0, slope), f"peak memory slope from {a.users} to {b.users} users"
    return (max(0, sum(a.peak_rss.values()) - idle) / a.users,
            "peak growth over idle / users: an upper bound, first-use allocations included")


def _saturation(steps: list[StepResult], comps: list[str]) -> list[str]:
    stages = sorted({k for s in steps for k in s.stage_ms})
    out = ["## Which stage saturates first", ""]
    if stages:
        out += ["Mean latency of each turn stage (the gateway's `voice_gateway_stage_seconds`), ms:", "",
                "| users | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
        for s in steps:
            out.append(f"| {s.users} | " + " | ".join(_ms(s.stage_ms.get(k, math.nan)) for k in stages) + " |")
        out.append("")
    sat = saturating_stage(steps)
    last = steps[-1]
    busiest = max(comps, key=lambda c: last.cpu_s.get(c, 0.0)) if comps else "?"
    if sat:
        out.append(f"**{sat[0]}** grew most, ×{sat[1]:.1f} from {steps[0].users} to {last.users} users; "
                   f"the busiest process at {last.users} users was **{busiest}** "
                   f"({last.cpu_s.get(busiest, 0.0) / last.seconds:.2f} cores).")
    else:
        out.append(f"Not enough steps to compare; busiest process: **{busiest}**.")
    return out + [""]


def _math(ref: StepResult, cap: int, meta: Meta) -> list[str]:
    pt = ref.cpu_per_turn()
    rate = ref.turn_rate
    cpu_side = sum(v for k, v in pt.items() if k in CPU_SIDE)
    gpu_side = sum(v for k, v in pt.items() if k in GPU_SIDE)
    allc = cpu_side + gpu_side
    util = meta.target_cpu_util

    def ceiling(cores: float, s_per_turn: float) -> str:
        # whole conversations, rounded down: a host never plans for a fraction past its ceiling
        return f"{math.floor(cores * util / (s_per_turn * rate) + 1e-9)}" if s_per_turn * rate > 0 else "–"

    out = ["## Capacity math", "",
           f"From the per-turn costs above (measured at {ref.users} user(s)), a turn every "
           f"{1 / rate if rate else math.nan:.1f} s per conversation, planning to {util:.0%} CPU:", "",
           f"- **This host, CPU throughput ceiling**: {meta.cores} cores × {util:.0%} / "
           f"({allc:.3f} CPU s × {rate:.3f} turns/s) = **{ceiling(meta.cores, allc)} conversations** if "
           f"latency did not matter. Against the SLO capacity measured above ({cap}): where it is lower, "
           "latency binds before throughput (concurrent turns' stages queue for the same cores).",
           f"- **GPU host** ({meta.gpu_host_cores} cores, ASR/LLM/TTS on the card): the CPU-side stages "
           f"({', '.join(CPU_SIDE)}) cost {cpu_side:.3f} CPU s per turn, so its cores carry "
           f"{meta.gpu_host_cores} × {util:.0%} / ({cpu_side:.3f} × {rate:.3f}) = "
           f"**{ceiling(meta.gpu_host_cores, cpu_side)} conversations** before the CPU side saturates. "
           f"The model stages cost {gpu_side:.3f} CPU s per turn here; their GPU seconds per turn "
           "(batched) are not measured on this machine: run `make capacity` on the GPU host, and its "
           "capacity is the lower of the two ceilings.",
           "- **N hosts behind a load balancer**: a conversation is one WebSocket, pinned to a host "
           f"for its life, so the balancer spreads *sessions*; with the admission limit per host set to "
           f"the measured capacity C = {cap}, N hosts carry N × C, and N − 1 hosts' worth when one may "
           "fail or drain (rollout, crash):", "",
           "| hosts N | conversations (N × C) | with one host down ((N − 1) × C) |", "|---|---|---|"]
    for n in (1, 2, 4, 8, 16):
        out.append(f"| {n} | {n * cap} | {(n - 1) * cap} |")
    return out + [""]
