"""A response's audio out: its clauses synthesised one after another (so
audio order holds while the rest still generates), resampled to the session
rate, placed on the item's audio timeline, and paced to the client as
response.output_audio.delta at most ``audio_lead_ms`` ahead of the listener,
each clause's transcript delta just before its first audio.

It knows nothing of the conversation: the response hands it the TTS client,
its backends (for the TTS), how to emit an event, and whether it is held (a preemptive run sends nothing
before its release). Played position and pacing arithmetic is playout.py's."""
from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any, Callable

from common.audio import StreamResampler
from common.clock import Clock
from services.gateway import events, metrics
from services.gateway.backends.types import Priority
from services.gateway.playout import Playout
from services.gateway.session import Clause, Item
from services.gateway.timings import TurnTimings

log = logging.getLogger(__name__)


class AudioOut:
    def __init__(self, *, clock: Clock, rate: int, speed: float, lead_ms: float,
                 backends: Any, item: Callable[[], Item], timings: TurnTimings, response_id: str,
                 emit: Callable[..., None], ev: Callable[..., dict], held: Callable[[], bool]) -> None:
        """``item``: the response's item now (a function call replaces it)."""
        self.clock, self.rate, self.speed, self.lead_ms = clock, rate, speed, lead_ms
        self.backends, self._item, self.timings, self.response_id = backends, item, timings, response_id
        self._emit, self._ev, self._held = emit, ev, held
        self.playout = Playout(clock, rate)   # the audio, sent and heard
        self.gen_done = False                 # every clause synthesised
        self.announced = 0                    # clauses whose transcript delta went out
        self.partial: Clause | None = None    # the clause whose audio is still being made
        self._wake = asyncio.Event()
        self._clause_at = 0.0                          # the latest clause's synthesis was asked for then
        self._clause_priority = Priority.URGENT
        self.buffer_open = False              # the client's output audio buffer: started, not yet closed

    def buffer_event(self, kind: str) -> None:
        """output_audio_buffer.<kind>: ``started`` opens the client's buffer,
        ``stopped`` (played out) or ``cleared`` (cut or paused) closes it, each
        only when it changes it, so a client that counts them (the page, the
        e2e tests) sees every start closed exactly once: a reply paused (so
        cleared) that then fails is not stopped as well."""
        opening = kind == "started"
        if self.buffer_open != opening:
            self.buffer_open = opening
            self._emit(events.ev(f"output_audio_buffer.{kind}", response_id=self.response_id))

    def wake(self) -> None:
        self._wake.set()

    async def _wait_wake(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    async def speak(self, q: asyncio.Queue, tts_voice: str) -> None:
        """Synthesise the clauses from ``q`` (None ends them) onto the timeline."""
        while (clause := await q.get()) is not None:
            start = self.playout.total_ms
            c = Clause(clause, start, start)
            clauses = self._item().clauses
            clauses.append(c)
            if self.timings.tts_start is None:
                self.timings.tts_start = self.clock.now()
            rs: StreamResampler | None = None
            self.partial = c
            priority: Priority = self.playout.clause_priority(len(clauses) - 1)
            self._clause_at, self._clause_priority = self.clock.now(), priority
            async for piece in self.backends.tts.synthesize(clause, tts_voice, self.speed, priority):
                if self.timings.tts_first_audio is None:
                    self.timings.tts_first_audio = self.clock.now()
                rs = rs or StreamResampler(piece.rate, self.rate)
                self._append(rs.process(piece.pcm), c)
            if rs is not None:
                self._append(rs.process(b"", last=True), c)
            self.partial = None
        self.gen_done = True
        self._wake.set()

    def _underrun(self, gap_s: float) -> None:
        """Count a silence the listener heard, and say what the audio was waiting for."""
        metrics.AUDIO_UNDERRUN.labels(**metrics.base()).observe(gap_s)
        n = len(self._item().clauses)        # the clause whose audio ended the silence
        began = self.clock.now() - gap_s
        if self._clause_at > began:           # its words came after the audio ahead ran out
            why = f"clause {n}'s text, which came {1000 * (self._clause_at - began):.0f} ms into the silence"
        else:
            why = (f"clause {n}'s synthesis ({self._clause_priority.name.lower()}), asked for "
                   f"{1000 * (began - self._clause_at):.0f} ms before the silence began")
        log.info("response %s: the listener's audio ran dry for %.0f ms, %.0f ms into the answer, waiting "
                 "for %s", self.response_id, 1000 * gap_s, self.playout.sent_ms, why)

    def _append(self, pcm: bytes, clause: Clause) -> None:
        if pcm:
            self.playout.append(pcm)
            clause.end_ms = self.playout.total_ms
            self._wake.set()

    async def send(self) -> None:
        """Pace the audio out to the client until all of it was sent."""
        out = self.playout
        while True:
            if self._held():       # a preemptive run sends nothing before its release
                await self._wait_wake()
                continue
            if out.paused or out.all_sent:
                if self.gen_done and not out.paused and out.all_sent:
                    break
                await self._wait_wake()
                continue
            now = self.clock.now()
            wait_s = out.lead_wait_s(now, self.lead_ms)
            while out.gaps:
                self._underrun(out.gaps.pop())
            if wait_s is not None:
                await self.clock.sleep(wait_s)
                continue
            pcm = out.next_chunk()
            if not out.started:
                out.start(now)
                self.timings.first_audio_sent = now
                self.buffer_event("started")
            self._announce(out.sent_ms + len(pcm) / out.bpm)
            self._emit(self._ev("response.output_audio.delta", delta=base64.b64encode(pcm).decode()),
                       response_id=self.response_id, audio_ms=len(pcm) / out.bpm)
            out.mark_sent(pcm)
        self._announce(float("inf"))

    def _announce(self, upto_ms: float) -> None:
        """Transcript deltas for clauses whose audio starts before ``upto_ms``."""
        clauses = self._item().clauses
        while self.announced < len(clauses) and clauses[self.announced].start_ms < upto_ms:
            text = clauses[self.announced].text
            self._emit(self._ev("response.output_audio_transcript.delta",
                                delta=text if self.announced == 0 else " " + text))
            self.announced += 1

    async def play_to_end(self) -> None:
        """After response.done: wait until the listener has heard it all."""
        while True:
            if self.playout.paused:
                await self._wait_wake()
                continue
            remaining = self.playout.total_ms - self.playout.played_ms()
            if remaining <= 0.5:
                break
            await self.clock.sleep(remaining / 1000.0)
        self.buffer_event("stopped")
