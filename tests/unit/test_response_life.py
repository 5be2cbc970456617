"""The response's life as a table (services/gateway/response_life.py), without
a Conversation: every legal transition reaches its state, every other event
either leaves the state as it is (the few late events listed as ignored) or
raises, and an ended response stays ended. ``phase``, ``status`` and ``held``
are what the conversation and the wire read, so they are pinned per state."""
from __future__ import annotations

import itertools

import pytest

from services.gateway.response_life import (
    IGNORED, TERMINAL, TRANSITIONS, IllegalTransition, ResponseEvent, ResponseLife, ResponseState,
)

S, E = ResponseState, ResponseEvent

# The table, written out again by hand: a change to the module's table must
# be made here too, on purpose.
EXPECTED = {
    (S.HELD, E.RELEASE): S.GENERATING,
    (S.HELD, E.DISCARD): S.DISCARDED,
    (S.GENERATING, E.COMPLETE): S.PLAYING,
    (S.GENERATING, E.FAIL): S.FAILED,
    (S.GENERATING, E.CANCEL): S.CANCELLED,
    (S.PLAYING, E.PLAYED): S.COMPLETED,
    (S.PLAYING, E.CANCEL): S.COMPLETED,
    (S.COMPLETED, E.CANCEL): S.COMPLETED,
}
EXPECTED_IGNORED = {
    (S.GENERATING, E.RELEASE), (S.PLAYING, E.RELEASE), (S.COMPLETED, E.RELEASE),
    (S.FAILED, E.RELEASE), (S.CANCELLED, E.RELEASE),
    (S.FAILED, E.CANCEL), (S.CANCELLED, E.CANCEL),
}
# The path to each state from a fresh (held or not) response.
PATH = {
    S.HELD: (True, []),
    S.GENERATING: (False, []),
    S.PLAYING: (False, [E.COMPLETE]),
    S.COMPLETED: (False, [E.COMPLETE, E.PLAYED]),
    S.FAILED: (False, [E.FAIL]),
    S.CANCELLED: (False, [E.CANCEL]),
    S.DISCARDED: (True, [E.DISCARD]),
}


def fire(life: ResponseLife, event: ResponseEvent) -> ResponseState | None:
    return getattr(life, event.value)()


def at(state: ResponseState) -> ResponseLife:
    held, events = PATH[state]
    life = ResponseLife(held=held)
    for ev in events:
        fire(life, ev)
    assert life.state is state
    return life


def test_the_table_is_the_one_documented():
    assert TRANSITIONS == EXPECTED
    assert IGNORED == EXPECTED_IGNORED
    assert not set(TRANSITIONS) & IGNORED


def test_a_response_starts_generating_or_held():
    assert ResponseLife().state is S.GENERATING
    assert ResponseLife(held=True).state is S.HELD


@pytest.mark.parametrize(("state", "event"), sorted(EXPECTED, key=lambda k: (k[0].value, k[1].value)))
def test_every_legal_transition_reaches_its_state_and_returns_the_state_left(state, event):
    life = at(state)
    assert life.accepts(event)
    assert fire(life, event) is state
    assert life.state is EXPECTED[(state, event)]


@pytest.mark.parametrize(("state", "event"), sorted(EXPECTED_IGNORED, key=lambda k: (k[0].value, k[1].value)))
def test_a_late_event_is_ignored_and_changes_nothing(state, event):
    life = at(state)
    assert not life.accepts(event)
    assert fire(life, event) is None
    assert life.state is state


ILLEGAL = sorted(((s, e) for s, e in itertools.product(S, E)
                  if (s, e) not in EXPECTED and (s, e) not in EXPECTED_IGNORED),
                 key=lambda k: (k[0].value, k[1].value))


@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_every_other_event_raises_and_leaves_the_state(state, event):
    life = at(state)
    assert not life.accepts(event)
    with pytest.raises(IllegalTransition):
        fire(life, event)
    assert life.state is state


def test_some_illegal_ones_by_name():
    """The ones a bug would most likely try: a held run completing or being
    cut before its release, an ended response starting over, a discarded
    run shown after all."""
    for state, event in [(S.HELD, E.COMPLETE), (S.HELD, E.CANCEL), (S.GENERATING, E.PLAYED),
                         (S.CANCELLED, E.COMPLETE), (S.FAILED, E.COMPLETE), (S.COMPLETED, E.FAIL),
                         (S.DISCARDED, E.RELEASE), (S.GENERATING, E.DISCARD)]:
        assert (state, event) in ILLEGAL


@pytest.mark.parametrize("state", sorted(TERMINAL, key=lambda s: s.value))
def test_an_ended_response_stays_ended(state):
    assert TERMINAL == {S.COMPLETED, S.FAILED, S.CANCELLED, S.DISCARDED}
    for event in E:
        life = at(state)
        try:
            fire(life, event)
        except IllegalTransition:
            pass
        assert life.state is state and not life.live


PHASE_STATUS_HELD = {
    S.HELD: ("generating", "in_progress", True),
    S.GENERATING: ("generating", "in_progress", False),
    S.PLAYING: ("playing", "completed", False),
    S.COMPLETED: ("done", "completed", False),
    S.FAILED: ("done", "failed", False),
    S.CANCELLED: ("done", "cancelled", False),
    S.DISCARDED: ("done", "cancelled", True),   # never seen by the client: nothing may reach it
}


@pytest.mark.parametrize("state", list(S))
def test_what_each_state_reads_as(state):
    life = at(state)
    assert (life.phase, life.status, life.held) == PHASE_STATUS_HELD[state]
    assert life.live is (state not in TERMINAL)


def test_a_whole_spoken_answer_cut_while_its_tail_plays():
    life = ResponseLife(held=True)
    assert life.release() is S.HELD
    assert life.release() is None                 # released once
    assert life.complete() is S.GENERATING and (life.phase, life.status) == ("playing", "completed")
    assert life.cancel() is S.PLAYING and (life.phase, life.status) == ("done", "completed")
    with pytest.raises(IllegalTransition):
        life.played()                             # the run was stopped by the cut


# -- through a Conversation ------------------------------------------------------------------
async def test_two_cancels_racing_end_the_response_once():
    """Invariant: a second cancel arriving while the first waits for the run's
    tasks (both saw the response generating) does not end it again: one
    response.done, cancelled (the state the first cancel left decides)."""
    from common.clock import VirtualClock
    from services.gateway.fakes import FakeBackends
    from services.gateway.scripted import ScriptedSession
    from services.gateway.settings import GatewaySettings

    clock = VirtualClock()
    b = FakeBackends.create(clock, replies=("One two three four five six seven eight nine ten. " * 4,))
    b.llm.token_s = 0.1
    async with ScriptedSession(b, clock, GatewaySettings(redis_url="")) as s:
        await s.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "count"}]}})
        await s.send({"type": "response.create"})
        await s.wait(0.5)
        resp = s.conv.response
        assert resp is not None and resp.life.state is S.GENERATING
        await s.conv.handle({"type": "response.cancel"})
        await s.conv.handle({"type": "response.cancel"})     # before the first one's wait is over
        await s.wait(1.0)
        assert resp.life.state is S.CANCELLED
        done = s.of("response.done")
        assert [t.event["response"]["status"] for t in done] == ["cancelled"]
        assert not s.of("error")
