"""The user turn's life as a table (services/gateway/turn_life.py), without a
Conversation: every legal barge-in transition reaches its state, every other
event raises (but a second report of a finished cut, which changes nothing),
a finished cut stays finished, and ending is once and for all, independent of
the barge-in (an ended turn can still be confirmed). ``cut_done`` gates
prefill and preemption, so it is pinned per state, through UserTurn too."""
from __future__ import annotations

import itertools

import pytest

from services.gateway.turn_life import (
    IGNORED, TRANSITIONS, BargeState, IllegalTransition, TurnEvent, TurnLife,
)
from services.gateway.turn_state import UserTurn

B, T = BargeState, TurnEvent

# The table, written out again by hand: a change to the module's table must
# be made here too, on purpose.
EXPECTED = {
    (B.NONE, T.TALK_OVER): B.PENDING,
    (B.PENDING, T.CONFIRM): B.CUTTING,
    (B.CUTTING, T.CUT_FINISHED): B.CUT,
}
EXPECTED_IGNORED = {(B.CUT, T.CUT_FINISHED)}
PATH = {B.NONE: [], B.PENDING: [T.TALK_OVER], B.CUTTING: [T.TALK_OVER, T.CONFIRM],
        B.CUT: [T.TALK_OVER, T.CONFIRM, T.CUT_FINISHED]}


def fire(life: TurnLife, event: TurnEvent) -> BargeState | None:
    return getattr(life, event.value)()


def at(state: BargeState) -> TurnLife:
    life = TurnLife()
    for ev in PATH[state]:
        fire(life, ev)
    assert life.barge is state
    return life


def key(k):
    return (k[0].value, k[1].value)


def test_the_table_is_the_one_documented():
    assert TRANSITIONS == EXPECTED
    assert IGNORED == EXPECTED_IGNORED


def test_a_turn_starts_open_over_no_reply():
    life = TurnLife()
    assert life.barge is B.NONE and not life.ended
    assert not life.barge_in and not life.confirmed and not life.pending and life.cut_done


@pytest.mark.parametrize(("state", "event"), sorted(EXPECTED, key=key))
def test_every_legal_transition_reaches_its_state(state, event):
    life = at(state)
    assert fire(life, event) is state
    assert life.barge is EXPECTED[(state, event)]


def test_a_second_report_of_the_finished_cut_changes_nothing():
    life = at(B.CUT)
    assert life.cut_finished() is None
    assert life.barge is B.CUT


ILLEGAL = sorted(((s, e) for s, e in itertools.product(B, T)
                  if (s, e) not in EXPECTED and (s, e) not in EXPECTED_IGNORED), key=key)


@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_every_other_event_raises_and_leaves_the_state(state, event):
    life = at(state)
    with pytest.raises(IllegalTransition):
        fire(life, event)
    assert life.barge is state


def test_some_illegal_ones_by_name():
    """Confirming a turn that talked over nothing, confirming twice (bargein.py
    checks first), a cut finishing before it was confirmed, a second talk-over."""
    for pair in [(B.NONE, T.CONFIRM), (B.CUTTING, T.CONFIRM), (B.CUT, T.CONFIRM),
                 (B.PENDING, T.CUT_FINISHED), (B.NONE, T.CUT_FINISHED), (B.PENDING, T.TALK_OVER)]:
        assert pair in ILLEGAL


def test_a_finished_cut_stays_finished():
    for event in T:
        life = at(B.CUT)
        try:
            fire(life, event)
        except IllegalTransition:
            pass
        assert life.barge is B.CUT and life.cut_done and life.confirmed


READS = {   # barge_in, pending, confirmed, cut_done
    B.NONE: (False, False, False, True),
    B.PENDING: (True, True, False, False),
    B.CUTTING: (True, False, True, False),
    B.CUT: (True, False, True, True),
}


@pytest.mark.parametrize("state", list(B))
def test_what_each_state_reads_as(state):
    life = at(state)
    assert (life.barge_in, life.pending, life.confirmed, life.cut_done) == READS[state]


@pytest.mark.parametrize("state", list(B))
def test_ending_is_once_and_leaves_the_barge_in_alone(state):
    life = at(state)
    assert life.end() is True and life.ended
    assert life.end() is False and life.ended       # a dropped turn already ended
    assert life.barge is state


def test_an_ended_turn_over_a_reply_can_still_be_confirmed_and_cut():
    """Conversation.end_turn makes the last check after the end, with the final transcript."""
    life = at(B.PENDING)
    life.end()
    assert life.confirm() is B.PENDING and life.cut_finished() is B.CUTTING
    assert life.ended and life.cut_done


@pytest.mark.parametrize("state", list(B))
def test_the_user_turn_reads_its_life(state):
    turn = UserTurn("item_1", 0.0, 0.0, life=at(state))
    _, _, confirmed, cut_done = READS[state]
    assert (turn.barge_in, turn.confirmed, turn.cut_done(), turn.ended) == (
        state is not B.NONE, confirmed, cut_done, False)
    turn.life.end()
    assert turn.ended


# -- the one place that moves it: bargein.py ------------------------------------------------
def barge_in_over(interrupt):
    """A BargeIn over the least of a conversation: a turn of real words that
    talked over a reply, and ``interrupt`` standing for Conversation.interrupt."""
    import asyncio
    from types import SimpleNamespace

    from services.gateway.bargein import BargeIn
    from services.gateway.turn_state import Segment

    conv = SimpleNamespace(spawn=lambda coro, name, **_: asyncio.get_running_loop().create_task(coro, name=name),
                           ring=SimpleNamespace(end_ms=1000.0), response=None, interrupt=interrupt)
    td = SimpleNamespace(min_interrupt_ms=300)
    bargein = BargeIn(SimpleNamespace(conv=conv, td=td))
    turn = UserTurn("item_1", 0.0, 0.0, segments=[Segment(100.0, 100.0, end_ms=900.0, final="wait, stop")])
    turn.life.talk_over()
    return bargein, turn, td


async def test_a_confirmed_barge_in_is_cut_when_the_interrupt_task_ends():
    import asyncio

    gate = asyncio.Event()
    seen: list[BargeState] = []

    async def interrupt(turn):
        seen.append(turn.life.barge)
        await gate.wait()

    bargein, turn, td = barge_in_over(interrupt)
    assert bargein.confirm_at_turn_end(turn, td)
    assert turn.life.barge is B.CUTTING and not turn.cut_done()
    await asyncio.sleep(0)
    assert seen == [B.CUTTING] and not turn.cut_done()
    assert bargein.confirm_at_turn_end(turn, td)          # confirmed already: no second cut
    gate.set()
    await turn.interrupt_task
    assert turn.life.barge is B.CUT and turn.cut_done()


async def test_a_cut_cancelled_before_it_ran_still_ends_the_cut():
    """The session closing cancels the interrupt task before its first step."""
    import asyncio

    async def interrupt(turn):
        raise AssertionError("never runs")

    bargein, turn, td = barge_in_over(interrupt)
    assert bargein.confirm_at_turn_end(turn, td)
    turn.interrupt_task.cancel()
    await asyncio.wait([turn.interrupt_task])
    await asyncio.sleep(0)                                # the done callbacks
    assert turn.life.barge is B.CUT and turn.cut_done()
