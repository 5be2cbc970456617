"""The life of one user turn as a pure state machine: whether it talks over a
reply and how far cutting that reply has gone, and whether the turn has
ended. No IO, no tasks, no clock: bargein.py (the one place a barge-in starts
and is confirmed) and turns.py (where turns end) tell this what happened.

Two independent parts, because the code has them independent:

The barge-in, one transition table::

    NONE ──talk_over──▶ PENDING ──confirm──▶ CUTTING ──cut_finished──▶ CUT

- NONE: the turn talks over no reply (or interruptions are off): nothing to cut.
- PENDING: its speech started over a reply, which is paused; not confirmed
  yet (it may be a cough, an "mm-hm", the reply's own echo). A pending
  barge-in that never confirms stays PENDING: the reply resumes (a false
  interruption) and the turn is dropped when it ends.
- CUTTING: confirmed (long enough, a real word): the reply is being
  cancelled and truncated.
- CUT: the cut is done; the history an answer to this turn will see is known.

The end (``end``): OPEN → ENDED, once; ending again changes nothing (a turn
already ended can be dropped). A turn ends whatever its barge-in, and an
ended PENDING turn can still be confirmed: the last check, with its final
transcript, is made after the end (Conversation.end_turn).

An event the table does not list raises IllegalTransition, except
``cut_finished`` once CUT (two signals may report the same cut's end)."""
from __future__ import annotations

import enum

from services.gateway.table_step import step


class BargeState(enum.Enum):
    NONE = "none"
    PENDING = "pending"
    CUTTING = "cutting"
    CUT = "cut"


class TurnEvent(enum.Enum):
    TALK_OVER = "talk_over"         # speech started over an interruptible reply (paused)
    CONFIRM = "confirm"             # a real interruption: the reply is being cancelled
    CUT_FINISHED = "cut_finished"   # the reply's cancel and truncation are done


B, T = BargeState, TurnEvent
TRANSITIONS: dict[tuple[BargeState, TurnEvent], BargeState] = {
    (B.NONE, T.TALK_OVER): B.PENDING,
    (B.PENDING, T.CONFIRM): B.CUTTING,
    (B.CUTTING, T.CUT_FINISHED): B.CUT,
}
IGNORED: frozenset[tuple[BargeState, TurnEvent]] = frozenset({(B.CUT, T.CUT_FINISHED)})


class IllegalTransition(RuntimeError):
    """An event the turn's state does not allow: a bug in the caller."""


class TurnLife:
    def __init__(self) -> None:
        self.barge = B.NONE
        self.ended = False

    def _go(self, event: TurnEvent) -> BargeState | None:
        before = self.barge
        after = step(TRANSITIONS, IGNORED, before, event, IllegalTransition, "turn barge-in")
        if after is None:
            return None
        self.barge = after
        return before

    # -- events ----------------------------------------------------------------------
    def talk_over(self) -> BargeState | None:
        return self._go(T.TALK_OVER)

    def confirm(self) -> BargeState | None:
        return self._go(T.CONFIRM)

    def cut_finished(self) -> BargeState | None:
        return self._go(T.CUT_FINISHED)

    def end(self) -> bool:
        """The turn ended; False if it had already."""
        was, self.ended = self.ended, True
        return not was

    # -- what the state means ----------------------------------------------------------
    @property
    def barge_in(self) -> bool:
        """The turn's speech started over a reply."""
        return self.barge is not B.NONE

    @property
    def confirmed(self) -> bool:
        """Its barge-in is a real interruption (the reply is cut or being cut)."""
        return self.barge in (B.CUTTING, B.CUT)

    @property
    def pending(self) -> bool:
        """Speech over a paused reply, not confirmed yet."""
        return self.barge is B.PENDING

    @property
    def cut_done(self) -> bool:
        """No reply is left to cut: it talked over none, or the cut is done."""
        return self.barge in (B.NONE, B.CUT)
