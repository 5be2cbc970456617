"""One assistant response: it owns its tasks (generate → speak → send) and its
audio, and can be paused, resumed, cancelled and truncated.

Pipeline: retrieval (optional) → LLM token stream → incremental clause
splitter (the first clause cut early, clauses.py) → TTS per clause, one after another so audio order holds (the first
clause speaks while the rest still generates) → resampled to the session rate
→ paced out as response.output_audio.delta, at most ``audio_lead_ms`` ahead
of the listener. Every clause is placed on the item's audio timeline, so a
played position maps back to the words heard.

Preemptive runs (``held=True``): the conversation may start a response for a
user turn that is not confirmed yet (its silence window is still open). Such
a run generates and synthesises, but nothing reaches the client: its events
are kept in order, audio is not sent, its item is not in the conversation.
``release()`` (the turn was confirmed) then emits exactly what a response
started at that moment would have: response.created, the output item, the
kept events, and the audio, which is usually ready by then. ``abandon()``
(the user went on) drops it all; the caller then cancels the tasks.

Played position: the client plays what it receives as it arrives, so the
position is min(audio sent, wall time since audio started), rewound on
underrun. A pause (barge-in) freezes it and drops the unsent queued audio;
resume re-sends from the frozen position; cancel truncates the item there."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

from opentelemetry import trace

from common.audio import StreamResampler
from common.tracing import current_trace_id, tracer
from services.gateway import events, metrics
from services.gateway.backends.types import BackendError, ChatMessage, LlmUsage, Passage
from services.gateway.clauses import FastFirstClauseSplitter
from services.gateway.protocol import new_id
from services.gateway.session import Clause, Item, heard_text
from services.gateway.timings import TurnTimings

if TYPE_CHECKING:
    from services.gateway.conversation import Conversation

log = logging.getLogger(__name__)
CHUNK_MS = 100          # largest audio delta
CLAUSE_QUEUE = 32       # clauses generated ahead of synthesis


class Response:
    def __init__(self, conv: "Conversation", *, messages: Sequence[ChatMessage], query: str,
                 modalities: list[str], timings: TurnTimings | None, metadata: dict[str, str],
                 in_conversation: bool, max_tokens: int, held: bool = False) -> None:
        cfg = conv.state.config
        self.conv, self.clock = conv, conv.clock
        self.id = new_id("resp")
        self.item = Item(id=new_id("item"), role="assistant", status="in_progress")
        self.messages, self.query = list(messages), query
        self.audio_out = "audio" in modalities
        self.modalities = ["audio"] if self.audio_out else ["text"]
        self.timings = timings or TurnTimings()
        self.metadata = dict(metadata)
        self.in_conversation = in_conversation
        self.max_tokens = max_tokens
        self.rate, self.voice, self.speed = cfg.output_rate, cfg.voice, cfg.speed
        self.retrieval = cfg.retrieval_enabled and conv.settings.retrieval
        self.k = cfg.retrieval_k
        self.bpm = self.rate * 2 / 1000.0          # bytes per ms of output audio
        self.phase = "generating"                  # generating → playing → done
        self.status = "in_progress"
        self.text = ""
        self.audio = bytearray()
        self.sent = 0                              # bytes of self.audio sent
        self.started = False
        self.play_origin = 0.0
        self.paused = False
        self.frozen_ms = 0.0
        self.gen_done = False
        self.announced = 0                         # clauses whose transcript delta went out
        self.passages: list[Passage] = []
        self.usage = LlmUsage()
        self.trace_id: str | None = None
        self._wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        # Preemptive run: what it would have emitted, in order, until released.
        self.held = held
        self._held_actions: list[Callable[[], None]] = []
        self._released = asyncio.Event()
        if not held:
            self._released.set()
        self.failure: BackendError | None = None
        self.plan: tuple = ()              # what it was built from (set by the conversation)
        self.turn_id: str | None = None    # the user turn a preemptive run answers
        # Tracing: this response's span is a child of the user turn's span; the
        # response that answers the turn (not a discarded preemptive run) ends it.
        self.turn_span: Any = None
        self.owns_turn_span = False

    # -- positions ---------------------------------------------------------------------
    @property
    def sent_ms(self) -> float:
        return self.sent / self.bpm

    @property
    def total_ms(self) -> float:
        return len(self.audio) / self.bpm

    def played_ms(self) -> float:
        if not self.started:
            return 0.0
        if self.paused:
            return self.frozen_ms
        return max(0.0, min(self.sent_ms, (self.clock.now() - self.play_origin) * 1000.0))

    def _ev(self, type: str, **kw) -> dict:
        return events.ev(type, response_id=self.id, item_id=self.item.id, output_index=0,
                         content_index=0, **kw)

    def _response(self, status: str, details: dict | None = None) -> dict:
        md = dict(self.metadata)
        if status != "in_progress":
            md["timings"] = self.timings.metadata()
            if self.passages:
                md["sources"] = json.dumps([{"source": p.source, "title": p.title,
                                             "score": round(p.score, 4)} for p in self.passages])
            if self.trace_id:
                md["trace_id"] = self.trace_id
        cfg = self.conv.state.config
        return events.response_obj(
            self.id, status, output=[self.item.wire()] if status != "in_progress" else [],
            modalities=self.modalities, status_details=details,
            usage=events.usage(self.usage.prompt_tokens, self.usage.completion_tokens)
            if status != "in_progress" else None,
            metadata=md, conversation_id=self.conv.conversation_id if self.in_conversation else None,
            voice=cfg.voice or "default", rate=self.rate, max_output_tokens=cfg.max_output_tokens)

    # -- the run --------------------------------------------------------------------------
    async def run(self) -> None:
        parent = trace.set_span_in_context(self.turn_span) if self.turn_span is not None else None
        try:
            await self._run(parent)
        finally:
            if self.owns_turn_span and self.turn_span is not None:
                self.turn_span.end()

    async def _run(self, parent: Any) -> None:
        with tracer("gateway").start_as_current_span("response", context=parent) as span:
            self.trace_id = current_trace_id()
            span.set_attribute("response.id", self.id)
            span.set_attribute("response.preemptive", self.held)
            if not self.held:
                self._start()
            failure: BackendError | None = None
            try:
                async with asyncio.TaskGroup() as tg:
                    q: asyncio.Queue[str | None] = asyncio.Queue(CLAUSE_QUEUE)
                    tg.create_task(self._generate(q), name=f"{self.id}-generate")
                    if self.audio_out:
                        tg.create_task(self._speak(q), name=f"{self.id}-speak")
                        tg.create_task(self._send(), name=f"{self.id}-send")
            except* BackendError as eg:
                failure = eg.exceptions[0]
            # A held run that failed is seen (and replaced) at release time.
            self.failure = failure
            await self._released.wait()
            if failure is not None:
                self._fail(failure)
                return
            self._complete()
            if self.audio_out and self.started:
                await self._playout()
            self.phase = "done"

    # -- holding (preemptive runs) --------------------------------------------------------
    def _emit(self, event: dict, **kw) -> None:
        if self.held:
            self._held_actions.append(lambda: self.conv.emit(event, **kw))
        else:
            self.conv.emit(event, **kw)

    def release(self) -> None:
        """The turn is confirmed: from now on the client sees this response as
        if it had been created now (the held events follow response.created)."""
        if not self.held:
            return
        self.held = False
        self._start()
        actions, self._held_actions = self._held_actions, []
        for act in actions:
            act()
        self._released.set()
        self._wake.set()

    def abandon(self) -> None:
        """The turn went on: nothing this run did may reach the client. The
        caller cancels its tasks (stop_tasks)."""
        self._held_actions.clear()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _start(self) -> None:
        c = self.conv
        c.emit(events.ev("response.created", response=self._response("in_progress")))
        prev = c.add_item(self.item) if self.in_conversation else None
        c.emit(events.ev("response.output_item.added", response_id=self.id, output_index=0,
                         item=self.item.wire()))
        if self.in_conversation:
            c.emit(events.ev("conversation.item.added", previous_item_id=prev, item=self.item.wire()))
        part = {"type": "audio", "transcript": ""} if self.audio_out else {"type": "text", "text": ""}
        c.emit(self._ev("response.content_part.added", part=part))

    async def _generate(self, q: asyncio.Queue) -> None:
        if self.retrieval and self.query.strip():
            t0 = self.clock.now()
            with tracer("gateway").start_as_current_span("retrieval"):
                try:
                    hits = await self.conv.backends.rag.search(self.query, self.k, self.conv.settings.rag_min_score)
                    self.passages = [p for p in hits if p.score >= self.conv.settings.rag_min_score]
                except BackendError as exc:
                    # Retrieval is an aid: answer without it, but say so.
                    if self.held:
                        self._held_actions.append(lambda e=exc: self.conv.backend_error(e))
                    else:
                        self.conv.backend_error(exc)
            self.timings.retrieval_s = self.clock.now() - t0
        s = self.conv.settings
        splitter = FastFirstClauseSplitter(s.first_clause_weak_words, s.first_clause_max_words)
        self.timings.llm_start = self.clock.now()
        with tracer("gateway").start_as_current_span("llm"):
            async for delta in self.conv.backends.llm.generate(
                    self.messages, self.passages, self.max_tokens, self.id, self.usage):
                if self.timings.llm_first_token is None:
                    self.timings.llm_first_token = self.clock.now()
                self.text += delta
                if self.audio_out:
                    for clause in splitter.push(delta):
                        await q.put(clause)
                else:
                    self._emit(self._ev("response.output_text.delta", delta=delta))
        if self.audio_out:
            tail = splitter.flush()
            if tail:
                await q.put(tail)
            await q.put(None)

    async def _speak(self, q: asyncio.Queue) -> None:
        with tracer("gateway").start_as_current_span("tts"):
            while (clause := await q.get()) is not None:
                start = self.total_ms
                c = Clause(clause, start, start)
                self.item.clauses.append(c)
                if self.timings.tts_start is None:
                    self.timings.tts_start = self.clock.now()
                rs: StreamResampler | None = None
                async for piece in self.conv.backends.tts.synthesize(clause, self.voice, self.speed):
                    if self.timings.tts_first_audio is None:
                        self.timings.tts_first_audio = self.clock.now()
                    rs = rs or StreamResampler(piece.rate, self.rate)
                    self._append(rs.process(piece.pcm), c)
                if rs is not None:
                    self._append(rs.process(b"", last=True), c)
        self.gen_done = True
        self._wake.set()

    def _append(self, pcm: bytes, clause: Clause) -> None:
        if pcm:
            self.audio += pcm
            clause.end_ms = self.total_ms
            self._wake.set()

    async def _wait_wake(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    async def _send(self) -> None:
        lead = self.conv.settings.audio_lead_ms
        chunk = int(CHUNK_MS * self.bpm) & ~1
        while True:
            if self.held:          # a preemptive run sends nothing before its release
                await self._wait_wake()
                continue
            if self.paused or self.sent >= len(self.audio):
                if self.gen_done and not self.paused and self.sent >= len(self.audio):
                    break
                await self._wait_wake()
                continue
            now = self.clock.now()
            if self.started:
                elapsed = (now - self.play_origin) * 1000.0
                if elapsed > self.sent_ms:      # the listener ran dry: playback restarts now
                    self.play_origin = now - self.sent_ms / 1000.0
                    elapsed = self.sent_ms
                ahead = self.sent_ms - elapsed
                if ahead >= lead:
                    await self.clock.sleep((ahead - lead + CHUNK_MS / 2) / 1000.0)
                    continue
            pcm = bytes(self.audio[self.sent:self.sent + chunk])
            if not self.started:
                self.started = True
                self.play_origin = now
                self.timings.first_audio_sent = now
                self.conv.emit(events.ev("output_audio_buffer.started", response_id=self.id))
            self._announce(self.sent_ms + len(pcm) / self.bpm)
            self.conv.emit(self._ev("response.output_audio.delta", delta=base64.b64encode(pcm).decode()),
                           response_id=self.id, audio_ms=len(pcm) / self.bpm)
            self.sent += len(pcm)
        self._announce(float("inf"))

    def _announce(self, upto_ms: float) -> None:
        """Transcript deltas for clauses whose audio starts before ``upto_ms``."""
        clauses = self.item.clauses
        while self.announced < len(clauses) and clauses[self.announced].start_ms < upto_ms:
            text = clauses[self.announced].text
            self.conv.emit(self._ev("response.output_audio_transcript.delta",
                                    delta=text if self.announced == 0 else " " + text))
            self.announced += 1

    async def _playout(self) -> None:
        """After response.done: wait until the listener has heard it all."""
        self.phase = "playing"
        while True:
            if self.paused:
                await self._wait_wake()
                continue
            remaining = self.total_ms - self.played_ms()
            if remaining <= 0.5:
                break
            await self.clock.sleep(remaining / 1000.0)
        self.conv.emit(events.ev("output_audio_buffer.stopped", response_id=self.id))

    # -- endings ------------------------------------------------------------------------------
    def _transcript(self) -> str:
        if not self.audio_out:
            return self.text
        if self.item.truncated_ms is not None:
            return heard_text(self.item.clauses, self.item.truncated_ms)
        return " ".join(c.text for c in self.item.clauses)

    def _set_content(self, text: str) -> None:
        self.item.content = ([{"type": "output_audio", "transcript": text}] if self.audio_out
                             else [{"type": "output_text", "text": text}])

    def _finish_item(self, status: str) -> None:
        self._set_content(self._transcript())
        self.item.status = status
        self.item.audio_ms = self.sent_ms if self.audio_out else 0.0
        part = ({"type": "audio", "transcript": self._transcript()} if self.audio_out
                else {"type": "text", "text": self.text})
        self.conv.emit(self._ev("response.content_part.done", part=part))
        self.conv.emit(events.ev("response.output_item.done", response_id=self.id, output_index=0,
                                 item=self.item.wire()))
        if self.in_conversation:
            self.conv.emit(events.ev("conversation.item.done", item=self.item.wire()))

    def _complete(self) -> None:
        if self.audio_out:
            self.item.audio_ms = self.total_ms
            self.conv.emit(self._ev("response.output_audio.done"))
            self.conv.emit(self._ev("response.output_audio_transcript.done", transcript=self._transcript()))
        else:
            self.conv.emit(self._ev("response.output_text.done", text=self.text))
        self._finish_item("completed")
        self.status = "completed"
        self.conv.emit(events.ev("response.done", response=self._response("completed")))
        metrics.TURNS.labels(**metrics.base(), outcome="completed").inc()
        self.timings.observe(self.trace_id)
        self.conv.save()

    def _fail(self, exc: BackendError) -> None:
        self.conv.backend_error(exc)
        self.status, self.phase = "failed", "done"
        self._finish_item("incomplete")
        self.conv.emit(events.ev("response.done", response=self._response(
            "failed", {"type": "failed", "error": {"type": "server_error", "code": "backend_unavailable",
                                                   "message": exc.message}})))
        if self.started:
            self.conv.emit(events.ev("output_audio_buffer.stopped", response_id=self.id))
        metrics.TURNS.labels(**metrics.base(), outcome="failed").inc()
        self.conv.save()

    # -- control (called by the conversation) ---------------------------------------------------
    def pause(self) -> bool:
        """Stop sending audio at once; True if the client had audio to clear."""
        if self.paused or self.phase == "done" or not self.audio_out:
            return False
        purged_ms = self.conv.outbox.purge_audio(self.id)
        self.sent = max(0, self.sent - (int(purged_ms * self.bpm) & ~1))
        self.frozen_ms = self.played_ms()
        self.paused = True
        self._wake.set()
        if self.started:
            self.conv.emit(events.ev("output_audio_buffer.cleared", response_id=self.id))
            return True
        return False

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        if self.item.truncated_ms is not None:
            # The client said exactly what it played before the pause: resume
            # there, and the item is whole again (the rest will be heard).
            self.frozen_ms = min(self.frozen_ms, self.item.truncated_ms)
            self.item.truncated_ms = None
        self.sent = int(self.frozen_ms * self.bpm) & ~1
        if self.started:
            self.play_origin = self.clock.now() - self.frozen_ms / 1000.0
            self.conv.emit(events.ev("output_audio_buffer.started", response_id=self.id))
        self._wake.set()

    async def stop_tasks(self) -> None:
        """Cancel the run (LLM/TTS calls included) and wait for it, bounded."""
        task = self.task
        if task is None or task.done():
            return
        task.cancel()
        wait = self.conv.settings.cancel_wait_s
        done, _ = await asyncio.wait({task}, timeout=wait)
        if not done:
            log.error("response %s still running %.1f s after cancel: a backend call swallowed "
                      "the cancellation", self.id, wait)

    async def cancel(self, reason: str) -> None:
        """Barge-in (turn_detected) or client cancel: stop, keep only what was heard."""
        phase = self.phase
        if phase == "done" and self.status != "completed":
            return
        heard = min(self.played_ms(), self.sent_ms)
        if self.paused:
            heard = min(self.frozen_ms, self.sent_ms)
        await self.stop_tasks()
        self.paused, self.phase = False, "done"
        client_said = self.item.truncated_ms   # a client truncate knows what was really played
        if phase == "generating":
            self.status = "cancelled"
            self.item.audio_ms = self.sent_ms if self.audio_out else 0.0
            if self.audio_out and client_said is None:
                self.truncate(heard, emit=self.started)
            self._finish_item("incomplete")
            self.conv.emit(events.ev("response.done", response=self._response(
                "cancelled", {"type": "cancelled", "reason": reason})))
            metrics.TURNS.labels(**metrics.base(), outcome="cancelled").inc()
        elif self.audio_out and client_said is None and heard < self.total_ms - 0.5:
            self.truncate(heard, emit=True)   # interrupted while the tail was playing
        self.conv.save()

    def truncate(self, audio_end_ms: float, emit: bool = True) -> float:
        """Cut the item to ``audio_end_ms`` (clamped to the audio sent, never
        rejected for being too large); returns the value used."""
        end = float(int(max(0.0, min(float(audio_end_ms), self.sent_ms if self.started else 0.0))))
        truncate_item(self.item, end)
        if emit:
            self.conv.emit(events.ev("conversation.item.truncated", item_id=self.item.id,
                                     content_index=0, audio_end_ms=int(end)))
        return end


def truncate_item(item: Item, end_ms: float) -> None:
    """History keeps only the heard words; the item is marked truncated."""
    item.truncated_ms = end_ms
    text = heard_text(item.clauses, end_ms)
    item.content = [{"type": "output_audio", "transcript": text}]
