"""bench_e2e reports barge-ins in a session's first answer (the echo
detector undecided) and in its second apart: one pooled figure hid that the
slow ones were all first answers (docs/benchmarks.md)."""
from __future__ import annotations

from bench.bench_e2e import BargeIn, Turn, report


def _row(text: str, label: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(label))
    return line[len(label):].split()


def test_first_and_second_answer_barge_ins_are_separate_figures():
    turns = [Turn("c", 700.0, 1, {}, "completed")]
    barges = [BargeIn("a", ms, "cancelled", "turn_detected") for ms in (150.0, 1200.0, 900.0)]
    barges += [BargeIn("a", ms, "cancelled", "turn_detected", later=True) for ms in (140.0, 160.0)]
    text = report(turns, barges, 1)
    first = _row(text, "barge-in reaction, 1st answer")
    second = _row(text, "barge-in reaction, 2nd answer")
    assert first[:2] == ["3", "900"] and "MISSES" in text.split("1st answer")[1].splitlines()[0]
    assert second[:2] == ["2", "150"] and second[-1] == "meets"


def test_without_second_answer_barge_ins_only_the_first_row_is_printed():
    text = report([Turn("c", 700.0, 1, {}, "completed")], [BargeIn("a", 150.0, "cancelled", "turn_detected")], 1)
    assert "1st answer" in text and "2nd answer" not in text
