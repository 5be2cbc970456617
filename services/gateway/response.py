"""One assistant response: it owns its tasks (generate → speak → send) and its
audio, and can be paused, resumed, cancelled and truncated.

Pipeline: retrieval (optional) → LLM token stream → incremental clause
splitter (the first clause cut early, clauses.py) → audio out
(response_audio.py: TTS per clause, in order, resampled, paced to the
listener). Every clause is placed on the item's audio timeline, so a played
position maps back to the words heard.

Its life (held → generating → playing → done, and how it ended) is one
state machine, response_life.py: ``phase``, ``status`` and ``held`` are read
from it. Preemptive runs (``held=True``) keep what they would tell the
client until ``release()`` (held.py says how); ``abandon()`` drops it.

With tools offered, the assistant item is announced with the first word:
the LLM may call a tool instead (function_call.py), the response's only output.

Played position and pacing (what was sent, what the listener heard, where a
pause froze it) are arithmetic in playout.py; a cancel truncates the item at
the position heard."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

from opentelemetry import trace

from common.tracing import current_trace_id, tracer
from services.gateway import answer_source, confirm, events, function_call, turn_end
from services.gateway.backends.types import BackendError, ChatMessage, LlmUsage, Passage, ToolCall, Tools
from services.gateway.clauses import FastFirstClauseSplitter
from services.gateway.held import HeldOutput
from services.gateway.protocol import new_id
from services.gateway.response_life import ResponseEvent, ResponseLife, ResponseState
from services.gateway.response_wire import (
    content_part, drop_partial, item_transcript, response_object, set_item_content, truncate_end,
    truncate_item,
)
from services.gateway.response_audio import AudioOut
from services.gateway.session import Item, tts_voice
from services.gateway.timings import TurnTimings

if TYPE_CHECKING:
    from services.gateway.conversation import Conversation

log = logging.getLogger(__name__)
CLAUSE_QUEUE = 32       # clauses generated ahead of synthesis


class Response:
    def __init__(self, conv: "Conversation", *, messages: Sequence[ChatMessage], query: str,
                 modalities: list[str], timings: TurnTimings | None, metadata: dict[str, str],
                 in_conversation: bool, max_tokens: int, held: bool = False,
                 tools: Tools | None = None) -> None:
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
        self.completed = asyncio.Event()   # generation done, status completed (playout may go on)
        # Called (synchronously) when the answer is completed; never for a
        # cancelled or failed one, so nothing waits on an answer that won't come.
        self.on_completed: list[Callable[["Response"], None]] = []
        self.rate, self.voice, self.speed = cfg.output_rate, cfg.voice, cfg.speed
        self.retrieval = cfg.retrieval_enabled and conv.settings.retrieval
        self.k = cfg.retrieval_k
        self.audio = AudioOut(clock=self.clock, rate=self.rate, speed=self.speed,
                              lead_ms=conv.settings.audio_lead_ms, backends=conv.backends, item=lambda: self.item,
                              timings=self.timings, response_id=self.id, emit=conv.emit, ev=self._ev,
                              held=lambda: self.held)
        self.playout = self.audio.playout           # the audio, sent and heard (playout.py)
        self.life = ResponseLife(held)             # its state (response_life.py)
        self.text = ""
        self.passages: list[Passage] = []
        self.may_decline = False   # it answers the user's latest words (planning.py)
        self.answers_item = ""     # the user item it answers (planning.py: its prefill's quoting)
        self.declined = False      # ... and was answered "I don't know" without the LLM (answer_source.py)
        self.usage = LlmUsage()
        self.trace_id: str | None = None
        self.task: asyncio.Task | None = None
        self.hold = HeldOutput(lambda: self.life.held)   # a preemptive run's output until released
        self.failure: Exception | None = None
        self.plan: tuple = ()              # what it was built from (set by the conversation)
        self.turn_id: str | None = None    # the user turn a preemptive run answers
        self.tools = tools                 # offered to the LLM (None: none, or tool_choice "none")
        self.call: ToolCall | None = None  # the LLM called a tool: the response is that call
        self.sensitive: frozenset[str] = frozenset()   # tools called only after a yes (confirm.py)
        self.asks: dict[str, str] | None = None         # the sensitive call this response asks about
        self._item_opened = False          # the assistant item was announced
        # Tracing: this response's span is a child of the user turn's span; the
        # response that answers the turn (not a discarded preemptive run) ends it.
        self.turn_span: Any = None
        self.owns_turn_span = False

    # -- state (response_life.py, playout.py) ------------------------------------------------
    @property
    def phase(self) -> str:
        """generating → playing → done."""
        return self.life.phase

    @property
    def status(self) -> str:
        """in_progress, completed, failed or cancelled (the wire status)."""
        return self.life.status

    @property
    def started(self) -> bool:
        """The first audio went out to the client."""
        return self.playout.started

    @property
    def paused(self) -> bool:
        return self.playout.paused

    @property
    def held(self) -> bool:
        """A preemptive run not released yet: nothing reaches the client."""
        return self.life.held

    def _ev(self, type: str, **kw) -> dict:
        return events.ev(type, response_id=self.id, item_id=self.item.id, output_index=0,
                         content_index=0, **kw)

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
            failure: Exception | None = None
            try:
                async with asyncio.TaskGroup() as tg:
                    q: asyncio.Queue[str | None] = asyncio.Queue(CLAUSE_QUEUE)
                    tg.create_task(self._generate(q), name=f"{self.id}-generate")
                    if self.audio_out:
                        tg.create_task(self._speak(q), name=f"{self.id}-speak")
                        tg.create_task(self.audio.send(), name=f"{self.id}-send")
            except* BackendError as eg:
                failure = eg.exceptions[0]
            except* Exception as eg:
                # A bug met while answering ends the response (failed), instead of
                # leaving it in_progress for ever and every later response.create refused.
                log.error("response %s failed", self.id, exc_info=eg)
                failure = eg.exceptions[0]
            # A held run that failed is seen (and replaced) at release time.
            self.failure = failure
            await self.hold.released.wait()
            if not self.life.live:
                # A cancel ended it while its tasks outlived the stop (a backend
                # that swallowed the cancel): it is over, nothing more to say.
                log.warning("response %s: its work ended after it was %s", self.id, self.life.status)
                return
            if failure is not None:
                self._fail(failure)
                return
            self._complete()
            if self.audio_out and self.started:
                await self.audio.play_to_end()
            if self.life.live:
                self.life.played()

    # -- holding (preemptive runs) --------------------------------------------------------
    def _emit(self, event: dict, **kw) -> None:
        self.hold.do(lambda: self.conv.emit(event, **kw))

    def release(self) -> None:
        """The turn is confirmed: from now on the client sees this response as
        if it had been created now (the held events follow response.created)."""
        if self.life.release() is None:
            return                         # never held: nothing to release
        actions = self.hold.take()
        self._start()
        for act in actions:
            act()
        self.hold.released.set()
        self.audio.wake()

    def abandon(self) -> None:
        """The turn went on: nothing this run did may reach the client. The
        caller cancels its tasks (stop_tasks)."""
        self.life.discard()
        self.hold.drop()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _start(self) -> None:
        self.conv.emit(events.ev("response.created", response=response_object(self, "in_progress")))
        if self.tools is None:    # with tools, the first word (not a call) opens it
            self._open_item()

    def _open_item(self) -> None:
        c = self.conv
        self._item_opened = True
        prev = c.add_item(self.item) if self.in_conversation else None
        c.emit(events.ev("response.output_item.added", response_id=self.id, output_index=0,
                         item=self.item.wire()))
        if self.in_conversation:
            c.emit(events.ev("conversation.item.added", previous_item_id=prev, item=self.item.wire()))
        c.emit(self._ev("response.content_part.added", part=content_part(self.audio_out, "")))

    async def _generate(self, q: asyncio.Queue) -> None:
        if (call := confirm.confirmed(self)) is not None:
            function_call.take(self, call)    # the user said yes: this response is the waiting call
            if self.audio_out:
                await q.put(None)
            return
        await answer_source.retrieve(self)
        s = self.conv.settings
        splitter = FastFirstClauseSplitter(s.first_clause_weak_words, s.first_clause_max_words,
                                           s.clause_growth)
        words = answer_source.words(self)
        if not self.declined:     # a decline has no LLM stage to time
            self.timings.llm_start = self.clock.now()
        with tracer("gateway").start_as_current_span("llm"):
            async for delta in words:
                if self.timings.llm_first_token is None and not self.declined:
                    self.timings.llm_first_token = self.clock.now()
                if isinstance(delta, ToolCall) and (ask := confirm.guard(self, delta)) is not None:
                    delta = ask                   # a sensitive tool: ask first (confirm.py)
                if isinstance(delta, ToolCall):
                    function_call.take(self, delta)   # the response becomes the call
                    continue
                if self.tools is not None and not self._item_opened:
                    self._item_opened = True      # (a held run announces it at release, in order)
                    self.hold.do(self._open_item)
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
            await self.audio.speak(q, tts_voice(self.voice))

    # -- endings ------------------------------------------------------------------------------
    def _transcript(self) -> str:
        return item_transcript(self.item, self.audio_out, self.text)

    def _finish_item(self, status: str) -> None:
        if self.call is not None:
            return                  # the function_call item is done (function_call.py)
        if not self._item_opened:   # tools offered and no word came: the item is announced now
            self._open_item()
        set_item_content(self.item, self.audio_out, self._transcript())
        self.item.status = status
        self.item.audio_ms = self.playout.sent_ms if self.audio_out else 0.0
        part = content_part(self.audio_out, self._transcript())
        self.conv.emit(self._ev("response.content_part.done", part=part))
        self.conv.emit(events.ev("response.output_item.done", response_id=self.id, output_index=0,
                                 item=self.item.wire()))
        if self._in_conversation():
            self.conv.emit(events.ev("conversation.item.done", item=self.item.wire()))

    def _complete(self) -> None:
        self.life.complete()     # playing until the listener heard it (run), even a text answer
        if self.call is not None:
            pass                    # no text, no audio: the call is the output
        elif self.audio_out:
            self.item.audio_ms = self.playout.total_ms
            self.conv.emit(self._ev("response.output_audio.done"))
            self.conv.emit(self._ev("response.output_audio_transcript.done", transcript=self._transcript()))
        else:
            self.conv.emit(self._ev("response.output_text.done", text=self.text))
        self._finish_item("completed")
        self.completed.set()
        for callback in self.on_completed:
            callback(self)
        self.conv.emit(events.ev("response.done", response=response_object(self, "completed")))
        turn_end.ended(self, "completed")
        self.conv.save()

    def _fail(self, exc: Exception) -> None:
        self.life.fail()
        if isinstance(exc, BackendError):
            self.conv.backend_error(exc)
            code, message = "backend_unavailable", exc.message
        else:
            code = "internal_error"
            message = f"the server failed while answering ({type(exc).__name__}); the session goes on"
            self.conv.emit(events.error(code, message, type="server_error"))
        if self.audio_out:    # the history keeps only what the client got as audio
            self.truncate(drop_partial(self.audio.partial, self.playout.sent_ms if self.started else 0.0),
                          emit=self.started)
        self._finish_item("incomplete")
        self.conv.emit(events.ev("response.done", response=response_object(self, "failed", {
            "type": "failed", "error": {"type": "server_error", "code": code, "message": message}})))
        self.audio.buffer_event("stopped")    # unless a pause cleared it already
        turn_end.ended(self, "failed")
        self.conv.save()

    # -- control (called by the conversation) ---------------------------------------------------
    def pause(self) -> bool:
        """Stop sending audio at once; True if the client had audio to clear."""
        if self.paused or not self.life.live or not self.audio_out:
            return False
        self.playout.freeze(self.conv.outbox.purge_audio(self.id))
        self.audio.wake()
        if self.started:
            self.audio.buffer_event("cleared")
            return True
        return False

    def resume(self) -> None:
        if not self.paused:
            return
        # The client said exactly what it played before the pause (a truncate):
        # resume there, and the item is whole again (the rest will be heard).
        self.playout.resume(self.item.truncated_ms)
        self.item.truncated_ms = None
        if self.started:
            self.audio.buffer_event("started")
        self.audio.wake()

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
        if not self.life.accepts(ResponseEvent.CANCEL):
            return                             # failed or cancelled already (or never shown)
        heard = self.playout.heard_ms()
        await self.stop_tasks()
        self.playout.paused = False
        before = self.life.cancel()            # None: another cancel ended it meanwhile
        if before is not None and self.audio_out:
            # A cut the reply was not paused for (paused, it was cleared then):
            # the client drops what it holds, or it heard it all.
            self.audio.buffer_event("cleared" if heard < self.playout.total_ms - 0.5 else "stopped")
        client_said = self.item.truncated_ms   # a client truncate knows what was really played
        if before is ResponseState.GENERATING:
            self.item.audio_ms = self.playout.sent_ms if self.audio_out else 0.0
            if self.audio_out and client_said is None:
                self.truncate(heard, emit=self.started)
            self._finish_item("incomplete")
            self.conv.emit(events.ev("response.done", response=response_object(
                self, "cancelled", {"type": "cancelled", "reason": reason})))
            turn_end.ended(self, "cancelled")
        elif (before is not None and self.audio_out and client_said is None
              and heard < self.playout.total_ms - 0.5):
            self.truncate(heard, emit=True)   # interrupted while the tail was playing
        self.conv.save()

    def _in_conversation(self) -> bool:
        """The item is in the conversation now: not out-of-band, not deleted
        (by the client, or pushed out by newer items) while answering."""
        return self.in_conversation and self.conv.state.find(self.item.id) is not None

    def truncate(self, audio_end_ms: float, emit: bool = True) -> float:
        """Cut the item to ``audio_end_ms`` (clamped to the audio sent, never
        rejected for being too large); returns the value used. Announced only
        for an item in the conversation (not an out-of-band response's)."""
        end = truncate_end(audio_end_ms, self.playout.sent_ms if self.started else 0.0)
        truncate_item(self.item, end)
        if emit and self._in_conversation():
            self.conv.emit(events.ev("conversation.item.truncated", item_id=self.item.id,
                                     content_index=0, audio_end_ms=int(end)))
        return end

