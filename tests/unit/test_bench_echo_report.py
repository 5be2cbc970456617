"""The echo benchmark's report: an answer that played to its end before the
voice began had nothing to interrupt, so it is neither a missed barge-in nor
a reaction time; a playing answer never cleared still counts against it."""
from bench.bench_echo import report
from clients.echo import Room
from clients.echo_talk import BargedIn, Listened

ROOM = Room()


def _listened() -> list[Listened]:
    return [Listened(ROOM, "completed", 10.0, 0, 0)]


def test_an_answer_that_ended_before_the_voice_is_left_out():
    barged = [BargedIn(ROOM, 200.0, "cancelled", "turn_detected", False),
              BargedIn(ROOM, None, None, None, False, ended_first=True)]
    text = report("x", _listened(), barged)
    assert "1 that ended before the voice began" in text
    assert "1/1 cleared" in text and "p95 200 ms" in text


def test_a_playing_answer_never_cleared_counts_as_missed():
    barged = [BargedIn(ROOM, 200.0, "cancelled", "turn_detected", False),
              BargedIn(ROOM, None, None, None, False)]
    text = report("x", _listened(), barged)
    assert "0 that ended before the voice began" in text
    assert "1/2 cleared" in text
