"""The evaluation report: Markdown tables (WER/CER by slice with their 95 %
intervals, final-pass latency, and the comparison ranked), one PNG plot of
WER by slice for each release. Aggregates only: no audio, no transcripts."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from eval.asr.run import Run
from eval.asr.slices import Comparison, SliceScore, score


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def slice_table(scores: Sequence[SliceScore]) -> list[str]:
    out = ["| slice | utterances | words | WER (95 % interval) | CER |", "|---|---|---|---|---|"]
    for s in scores:
        out.append(f"| {s.dimension}: {s.bucket} | {s.utterances} | {s.words} | {_pct(s.wer)} "
                   f"({_pct(s.low)}-{_pct(s.high)}) | {_pct(s.cer)} |")
    return out


def comparison_table(c: Comparison, a: str, b: str) -> list[str]:
    out = [f"| slice | utterances | WER {a} | WER {b} | difference (95 % interval) | P(B worse) |",
           "|---|---|---|---|---|---|"]
    ranked = sorted(c.deltas, key=lambda d: -d.diff)
    for d in ranked:
        flag = " **regression**" if d in c.regressions() else ""
        out.append(f"| {d.dimension}: {d.bucket} | {d.utterances} | {_pct(d.wer_a)} | {_pct(d.wer_b)} | "
                   f"{100 * d.diff:+.1f} pts ({100 * d.low:+.1f} to {100 * d.high:+.1f}){flag} | "
                   f"{d.worse_share:.2f} |")
    return out


def plot(runs: Sequence[Run], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = [score(r.results) for r in runs]
    labels = [f"{s.dimension}: {s.bucket}" for s in per[0]]
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    width = 0.8 / len(runs)
    for i, (r, scores) in enumerate(zip(runs, per)):
        by = {f"{s.dimension}: {s.bucket}": s for s in scores}
        xs = [j + i * width for j in range(len(labels))]
        ys = [100 * by[lab].wer if lab in by else 0 for lab in labels]
        err = [[100 * (by[lab].wer - by[lab].low) if lab in by else 0 for lab in labels],
               [100 * (by[lab].high - by[lab].wer) if lab in by else 0 for lab in labels]]
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=r.release.spec)
    ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("WER (%)")
    ax.set_title("ASR word error rate by slice (95 % bootstrap intervals)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write(runs: Sequence[Run], comparison: Comparison | None, out: Path, command: str,
          speech_note: str) -> Path:
    png = plot(runs, out.with_suffix(".png"))
    lines = ["# ASR evaluation by slice", "",
             f"Written by `{command}` (eval/asr/). {speech_note}", "",
             f"![WER by slice]({png.name})", ""]
    for r in runs:
        lat = r.latency_ms()
        lines += [f"## {r.release.spec}", "",
                  f"Final pass (model time, in process, one pass at a time): p50 {lat.get('p50', 0):.0f} ms, "
                  f"p95 {lat.get('p95', 0):.0f} ms over {len(r.model_seconds)} passes.", ""]
        lines += slice_table(score(r.results)) + [""]
    if comparison is not None and len(runs) == 2:
        a, b = runs[0].release.spec, runs[1].release.spec
        lines += [f"## {b} against {a}", "",
                  f"Paired bootstrap over the same utterances and noise; a regression is a slice of at "
                  f"least 5 utterances whose whole 95 % interval is above 0 and whose difference exceeds "
                  f"{100 * comparison.margin:.0f} points. Ranked by difference, worst first.", ""]
        lines += comparison_table(comparison, a, b) + ["", f"**Recommendation:** {comparison.recommendation()}", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
