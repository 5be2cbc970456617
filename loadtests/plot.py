"""The capacity plot: voice-to-voice p50/p95 and the failed-turn ratio
against concurrent users, with the SLO line, as one PNG next to
docs/capacity.md. matplotlib's Agg backend, so it draws without a display."""
from __future__ import annotations

import math
from pathlib import Path

from loadtests.report import StepResult


def plot(steps: list[StepResult], path: Path, slo_ms: float) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(steps, key=lambda s: s.users)
    users = [s.users for s in steps]
    nan = lambda v: math.nan if v is None else v  # noqa: E731
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(users, [nan(s.figures["v2v_p50_ms"]) for s in steps], "o-", label="voice-to-voice p50")
    ax.plot(users, [nan(s.figures["v2v_p95_ms"]) for s in steps], "s-", label="voice-to-voice p95")
    ax.axhline(slo_ms, color="grey", linestyle="--", label=f"SLO p95 {slo_ms:.0f} ms")
    ax.set_xlabel("concurrent conversations (users)")
    ax.set_ylabel("ms")
    ax.set_xticks(users)
    ax2 = ax.twinx()
    ax2.bar(users, [100 * nan(s.figures["failed_turn_ratio"]) for s in steps], width=0.3,
            alpha=0.3, color="red", label="failed turns %")
    ax2.set_ylabel("failed turns (%)")
    ax2.set_ylim(0, max(10.0, *(100 * s.figures["failed_turn_ratio"] for s in steps
                               if not math.isnan(s.figures["failed_turn_ratio"]))))
    lines = ax.get_legend_handles_labels()
    bars = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + bars[0], lines[1] + bars[1], loc="upper left", fontsize=8)
    ax.set_title("Voice-to-voice latency and failed turns vs. concurrent users")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
