"""The life of one response as a pure state machine: named states, one
transition table, a method per event. No IO, no tasks, no clock: response.py
does the work (events to the client, cancelling tasks, truncating) and tells
this what happened; what the client saw and may see next follows from the
state alone.

    HELD ──release──▶ GENERATING ──complete──▶ PLAYING ──played──▶ COMPLETED
     │                 │    │                    │                  ▲   │
     discard           fail cancel               └──────cancel──────┘   cancel
     ▼                 ▼    ▼                   (the tail cut: it      (a cut after the
    DISCARDED      FAILED  CANCELLED             stays completed)       end: same state)

- HELD: a preemptive run (preempt.py): it generates, nothing reaches the
  client (held.py keeps what it would say) until ``release``.
- GENERATING: response.created was sent; the answer is being generated
  (and its audio sent as it comes).
- PLAYING: response.done (completed) was sent; the listener may still be
  hearing its audio (a text answer passes through at once).
- COMPLETED, FAILED, CANCELLED: ended, with that wire status.
  DISCARDED: a held run dropped unheard (the client never knew of it).

Pausing (a barge-in not confirmed yet) is not a state here: it is a freeze of
the played position, allowed in any live state (playout.py does the
arithmetic); a cancel ends the pause.

An event the table does not list raises IllegalTransition, except the few
listed in IGNORED: events that may arrive once the response has moved on
(a release of a response never held, a cut of a reply already cut or
failed), which leave the state as it is. Every method returns the state the
response left, or None when the event was ignored."""
from __future__ import annotations

import enum

from services.gateway.table_step import step


class ResponseState(enum.Enum):
    HELD = "held"
    GENERATING = "generating"
    PLAYING = "playing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DISCARDED = "discarded"


class ResponseEvent(enum.Enum):
    RELEASE = "release"     # the held run's turn is confirmed: the client sees it from now on
    DISCARD = "discard"     # the held run's turn went on: drop it unheard
    COMPLETE = "complete"   # generation finished (response.done completed)
    PLAYED = "played"       # the listener heard the audio to its end (or there was none)
    FAIL = "fail"           # generation failed (response.done failed)
    CANCEL = "cancel"       # barge-in or client cancel: stop, keep what was heard


S, E = ResponseState, ResponseEvent
TRANSITIONS: dict[tuple[ResponseState, ResponseEvent], ResponseState] = {
    (S.HELD, E.RELEASE): S.GENERATING,
    (S.HELD, E.DISCARD): S.DISCARDED,
    (S.GENERATING, E.COMPLETE): S.PLAYING,
    (S.GENERATING, E.FAIL): S.FAILED,
    (S.GENERATING, E.CANCEL): S.CANCELLED,
    (S.PLAYING, E.PLAYED): S.COMPLETED,
    (S.PLAYING, E.CANCEL): S.COMPLETED,      # the tail cut: the answer was complete
    (S.COMPLETED, E.CANCEL): S.COMPLETED,    # a cut that comes after the end: truncation only
}
# Late events that change nothing (see the module doc).
IGNORED: frozenset[tuple[ResponseState, ResponseEvent]] = frozenset({
    *((s, E.RELEASE) for s in (S.GENERATING, S.PLAYING, S.COMPLETED, S.FAILED, S.CANCELLED)),
    (S.FAILED, E.CANCEL),
    (S.CANCELLED, E.CANCEL),
})
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.DISCARDED})
# What the protocol calls each state (response.phase, response.status).
PHASE = {S.HELD: "generating", S.GENERATING: "generating", S.PLAYING: "playing"}
STATUS = {S.HELD: "in_progress", S.GENERATING: "in_progress", S.PLAYING: "completed",
          S.COMPLETED: "completed", S.FAILED: "failed", S.CANCELLED: "cancelled",
          S.DISCARDED: "cancelled"}


class IllegalTransition(RuntimeError):
    """An event the response's state does not allow: a bug in the caller."""


class ResponseLife:
    def __init__(self, held: bool = False) -> None:
        self.state = S.HELD if held else S.GENERATING

    def _go(self, event: ResponseEvent) -> ResponseState | None:
        before = self.state
        after = step(TRANSITIONS, IGNORED, before, event, IllegalTransition, "response")
        if after is None:
            return None
        self.state = after
        return before

    def accepts(self, event: ResponseEvent) -> bool:
        """Whether ``event`` moves the response (not ignored, not illegal)."""
        return (self.state, event) in TRANSITIONS

    # -- events ----------------------------------------------------------------------
    def release(self) -> ResponseState | None:
        return self._go(E.RELEASE)

    def discard(self) -> ResponseState | None:
        return self._go(E.DISCARD)

    def complete(self) -> ResponseState | None:
        return self._go(E.COMPLETE)

    def played(self) -> ResponseState | None:
        return self._go(E.PLAYED)

    def fail(self) -> ResponseState | None:
        return self._go(E.FAIL)

    def cancel(self) -> ResponseState | None:
        return self._go(E.CANCEL)

    # -- what the state means ----------------------------------------------------------
    @property
    def held(self) -> bool:
        """Nothing may reach the client: held, or discarded while held."""
        return self.state in (S.HELD, S.DISCARDED)

    @property
    def live(self) -> bool:
        return self.state not in TERMINAL

    @property
    def phase(self) -> str:
        """generating → playing → done, as the conversation reads it."""
        return PHASE.get(self.state, "done")

    @property
    def status(self) -> str:
        """The wire status: in_progress, completed, failed or cancelled."""
        return STATUS[self.state]
