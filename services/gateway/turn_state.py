"""The user turn as data: a Segment is one stretch of speech (VAD start →
stop, one ASR utterance); a UserTurn is the segments that make one turn (a
pause inside a sentence gives two segments, one turn), with its life
(barge-in and end, a state machine in turn_life.py), timings and trace.
turns.py moves them; conversation.py ends them."""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from common.clock import Clock
from services.gateway.timings import TurnTimings
from services.gateway.turn_life import TurnLife


@dataclasses.dataclass
class Segment:
    """One stretch of speech (VAD start → stop), one ASR utterance."""

    onset_ms: float
    padded_ms: float
    end_ms: float | None = None
    interim: str = ""
    interim_end_ms: float | None = None   # session audio the latest interim covers
    flush_end_ms: float | None = None     # speech end of the latest flush (VAD pause)
    flush_at: float | None = None         # clock time of that flush
    final: str | None = None
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def text(self) -> str:
        return (self.final if self.final is not None else self.interim).strip()

    def end_without_final(self) -> None:
        """No final will be waited for (its ASR stream lost, or too late): the
        last interim stands in, and a final arriving after this is ignored."""
        if self.final is None:
            self.final = self.interim
        self.done.set()


@dataclasses.dataclass
class UserTurn:
    item_id: str
    start_ms: float
    onset_wall: float
    manual: bool = False
    segments: list[Segment] = dataclasses.field(default_factory=list)
    # Barge-in (none → pending → cutting → cut) and end: moved by bargein.py
    # and turns.py only; read through the properties below.
    life: TurnLife = dataclasses.field(default_factory=TurnLife)
    interrupt_task: asyncio.Task | None = None   # the cut (Conversation.interrupt), once confirmed
    confirm_flush_at: float | None = None   # clock time of the latest barge-in flush
    echo_text: str = ""                     # the latest text taken for the reply's echo (counted once)
    sent_transcript: str = ""
    timings: TurnTimings = dataclasses.field(default_factory=TurnTimings)
    # The root of this turn's trace: VAD segment, ASR utterance and the
    # response's spans all hang off it. Ended by the response that answers
    # the turn, or by the conversation when the turn gets no answer.
    span: Any = None
    span_handed_over: bool = False

    @property
    def barge_in(self) -> bool:
        """Its speech started over a reply (paused then)."""
        return self.life.barge_in

    @property
    def confirmed(self) -> bool:
        """Its barge-in is a real interruption: the reply is cut or being cut."""
        return self.life.confirmed

    @property
    def ended(self) -> bool:
        return self.life.ended

    def end_span(self) -> None:
        span, self.span = self.span, None
        if span is not None:
            span.end()

    def text(self) -> str:
        return " ".join(t for t in (s.text() for s in self.segments) if t)

    def cut_done(self) -> bool:
        """No reply is left to cut for this turn: it talked over none, or its
        barge-in is confirmed and the cut (cancel, truncate) is done. Only then
        is the history an answer to it will see known (prefill, preemption)."""
        return self.life.cut_done

    def speech_ms(self, now_ms: float) -> float:
        return sum((s.end_ms if s.end_ms is not None else now_ms) - s.onset_ms for s in self.segments)

    def end_ms(self) -> float:
        ends = [s.end_ms for s in self.segments if s.end_ms is not None]
        return max(ends) if ends else self.start_ms

    def give_up_finals(self) -> None:
        """Finals too late to wait for: each keeps its last interim, and a final
        arriving after this is ignored (it would rewrite the turn's times)."""
        for s in self.segments:
            if not s.done.is_set():
                s.end_without_final()

    async def wait_finals(self, timeout: float, clock: Clock) -> bool:
        """Every segment's final received within ``timeout`` of ``clock``."""
        # One event at a time against one deadline, each wait and its timer
        # a task of our own, cancelled on the way out: a gather() cancelled
        # by wait_for (a barge-in, a closing session) left a _GatheringFuture
        # whose CancelledError nobody retrieved, logged at ERROR (found by
        # tests/fuzz).
        deadline = clock.now() + timeout
        for s in self.segments:
            if s.done.is_set():
                continue
            left = deadline - clock.now()
            if left <= 0:
                return False
            final = asyncio.ensure_future(s.done.wait())
            timer = asyncio.ensure_future(clock.sleep(left))
            try:
                await asyncio.wait((final, timer), return_when=asyncio.FIRST_COMPLETED)
            finally:
                final.cancel()
                timer.cancel()
            if not s.done.is_set():
                return False
        return True
