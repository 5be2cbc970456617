"""One Realtime session at run time: it dispatches client events, pumps input
audio through turn-taking (turns.py), runs responses (response.py), keeps the
session state (session.py) saved in the store, and owns every task it starts
(closed together with the session).

Preemptive generation: once a voice turn's text is final inside its silence
window, ``preempt`` starts a held response for it (its history is the
history the turn will have once committed). At the end of the turn the held
run is released if it was built from exactly what a response created then
would be built from; otherwise (history or settings changed, or it failed)
it is replaced by a fresh one. If the user goes on, ``discard_preempt``
drops it: nothing reached the client, no turn outcome is counted."""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Callable, Coroutine

from services.gateway import backchannel, events, metrics, protocol
from services.gateway.audio_in import AudioQueue, Resampler, RingBuffer
from services.gateway.backends.types import BackendError, ChatMessage
from services.gateway.outbox import Outbox
from services.gateway.protocol import ProtocolError
from services.gateway.response import Response, truncate_item
from services.gateway.session import Item, SessionConfig, SessionState, TurnDetection
from services.gateway.settings import GatewaySettings
from services.gateway.timings import TurnTimings
from services.gateway.turns import TurnTaker, UserTurn

log = logging.getLogger(__name__)


def default_config(s: GatewaySettings, model: str | None = None) -> SessionConfig:
    return SessionConfig(
        model=model or "local", instructions=s.instructions, voice=s.voice,
        turn_detection=default_turn_detection(s), retrieval_enabled=s.retrieval, retrieval_k=s.rag_k)


def default_turn_detection(s: GatewaySettings) -> TurnDetection:
    return TurnDetection(threshold=s.vad_threshold, prefix_padding_ms=s.prefix_padding_ms,
                         silence_duration_ms=s.silence_duration_ms, min_interrupt_ms=s.min_interrupt_ms,
                         false_interruption_timeout_ms=s.false_interruption_timeout_ms,
                         preemptive_generation=s.preemptive_generation)


def same_words(a: str, b: str) -> bool:
    """Equal once case and punctuation are set aside ("What's up?" == "what's up")."""
    return re.sub(r"[^\w']+", " ", a.lower()).split() == re.sub(r"[^\w']+", " ", b.lower()).split()


_DOCS_CACHE: dict[str, tuple[float, bool]] = {}
DOCS_CACHE_S = 30.0


async def rag_has_documents(rag: Any, clock: Any) -> bool | None:
    """Whether the retrieval service has any passage (cached per address for
    30 s); None when it cannot be asked (then the session default stands)."""
    hit = _DOCS_CACHE.get(rag.address)
    if hit and clock.now() - hit[0] < DOCS_CACHE_S:
        return hit[1]
    try:
        found = bool(await rag.search("hello", 1, 0.0))
    except BackendError:
        return None
    _DOCS_CACHE[rag.address] = (clock.now(), found)
    return found


class Conversation:
    def __init__(self, state: SessionState, settings: GatewaySettings, backends: Any, clock: Any,
                 store: Any, load_session: Callable[[str], Coroutine[Any, Any, SessionState | None]] | None = None) -> None:
        self.state, self.settings, self.backends, self.clock, self.store = state, settings, backends, clock, store
        self._load_session = load_session
        self.outbox = Outbox(settings.outbox_max_events, clock)
        self.audio_q = AudioQueue(settings.input_queue_ms)
        self.ring = RingBuffer()
        self.resampler = Resampler()
        self.turns = TurnTaker(self)
        self.response: Response | None = None
        self.preempted: Response | None = None    # held run for the turn in its silence window
        self._prefill_task: asyncio.Task | None = None
        self._prefilled = ""                      # the user text last sent for prefill
        self._tasks: set[asyncio.Task] = set()
        self.closed = False

    @property
    def conversation_id(self) -> str:
        return "conv_" + self.state.id.removeprefix("sess_")

    # -- tasks ------------------------------------------------------------------------
    def spawn(self, coro: Coroutine, name: str) -> asyncio.Task:
        """A task owned by this session: tracked, its failure logged, cancelled at close."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.state.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s: task %s failed", self.state.id, task.get_name(),
                      exc_info=task.exception())

    def start(self) -> None:
        self.turns.start()
        self.spawn(self._pump(), "audio-pump")

    async def close(self) -> None:
        self.closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=self.settings.cancel_wait_s)
            if pending:
                log.error("session %s: %d tasks did not stop %.1f s after cancel: %s", self.state.id,
                          len(pending), self.settings.cancel_wait_s, [t.get_name() for t in pending])
        self.audio_q.discard()
        self.outbox.discard()
        self.save()

    # -- output -----------------------------------------------------------------------
    def emit(self, event: dict[str, Any], *, response_id: str | None = None, audio_ms: float = 0.0) -> None:
        if event["type"] == "error":
            metrics.ERRORS.labels(**metrics.base(), code=event["error"]["code"]).inc()
        self.outbox.put(event, response_id=response_id, audio_ms=audio_ms)

    def protocol_error(self, e: ProtocolError) -> None:
        self.emit(events.from_protocol_error(e))

    def backend_error(self, exc: BackendError) -> None:
        metrics.BACKEND_ERRORS.labels(**metrics.base(), backend=exc.backend).inc()
        self.emit(events.error("backend_unavailable", exc.message, type="server_error"))

    def save(self) -> None:
        self.store.save(self.state)

    def add_item(self, item: Item) -> str | None:
        prev = self.state.insert(item, None)
        self.save()
        return prev

    # -- input audio ---------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            kind, pcm, arg, at = await self.audio_q.get()
            if kind == "audio":
                pcm16 = self.resampler.to16k(pcm, arg)
                # The newest 16 kHz sample was recorded delay_ms before this chunk's end.
                self.ring.append(pcm16, at - self.resampler.delay_ms / 1000.0)
                await self.turns.feed(pcm16)
            else:
                await self._command(kind, arg)

    async def _command(self, kind: Any, event_id: Any) -> None:
        try:
            if kind == "commit":
                await self.turns.commit(event_id)
            elif kind == "clear":
                await self.turns.clear()
                self.emit(events.ev("input_audio_buffer.cleared"))
        except ProtocolError as e:
            self.protocol_error(e)

    # -- client events ----------------------------------------------------------------------
    async def handle(self, ev: dict[str, Any]) -> None:
        try:
            handler = getattr(self, "_on_" + ev["type"].replace(".", "_"))
            await handler(ev)
        except ProtocolError as e:
            self.protocol_error(e)

    async def _on_session_update(self, ev: dict) -> None:
        old = self.state.config
        cfg, resume = protocol.session_update(ev, old, default_turn_detection(self.settings))
        if resume and resume != self.state.id:
            await self._resume(ev, resume)
            old = self.state.config
            cfg, _ = protocol.session_update(ev, old, default_turn_detection(self.settings))
        self.state.config = cfg
        self.turns.sync_vad()
        if cfg.turn_detection and old.turn_detection and (
                cfg.turn_detection.threshold != old.turn_detection.threshold
                or cfg.turn_detection.prefix_padding_ms != old.turn_detection.prefix_padding_ms):
            await self.turns.reconfigure_vad()
        self.save()
        self.emit(events.ev("session.updated", session=cfg.wire(self.state.id)))

    async def _resume(self, ev: dict, session_id: str) -> None:
        if self.state.items or self.response is not None:
            raise ProtocolError("session_resume_not_allowed",
                                f"session.update: cannot resume session '{session_id}': this session "
                                "already has conversation items", "session.id", ev.get("event_id"))
        loaded = await self._load_session(session_id) if self._load_session else None
        if loaded is None:
            raise ProtocolError("session_not_found", f"session.update: session '{session_id}' was not found "
                                "(expired or never stored)", "session.id", ev.get("event_id"))
        self.state = loaded

    async def _on_input_audio_buffer_append(self, ev: dict) -> None:
        pcm = protocol.append_audio(ev)
        if not pcm:
            return
        rate = self.state.config.input_rate
        if not self.audio_q.put(pcm, rate, self.clock.now()):
            raise ProtocolError("input_audio_queue_full",
                                f"input_audio_buffer.append: {self.audio_q.queued_ms:.0f} ms of audio are "
                                f"already waiting (limit {self.audio_q.max_ms:.0f} ms): send audio in real "
                                "time; this chunk was dropped", event_id=ev.get("event_id"))

    async def _on_input_audio_buffer_commit(self, ev: dict) -> None:
        # In order with the audio appended before it.
        self._command_in_order("commit", ev)

    async def _on_input_audio_buffer_clear(self, ev: dict) -> None:
        self._command_in_order("clear", ev)

    def _command_in_order(self, kind: str, ev: dict) -> None:
        if not self.audio_q.put_command(kind, ev.get("event_id"), self.clock.now()):
            raise ProtocolError("input_audio_queue_full", f"{ev['type']}: the input queue is full "
                                "(the client sends faster than real time); this event was dropped",
                                event_id=ev.get("event_id"))

    async def _on_conversation_item_create(self, ev: dict) -> None:
        item, prev = protocol.item_create(ev)
        if self.state.find(item.id):
            raise ProtocolError("item_already_exists", f"conversation.item.create: an item with id "
                                f"'{item.id}' already exists", "item.id", ev.get("event_id"))
        try:
            after = self.state.insert(item, prev)
        except KeyError:
            raise ProtocolError("item_not_found", f"conversation.item.create: previous_item_id '{prev}' "
                                "is not in the conversation", "previous_item_id", ev.get("event_id")) from None
        self.save()
        self.emit(events.ev("conversation.item.added", previous_item_id=after, item=item.wire()))
        self.emit(events.ev("conversation.item.done", previous_item_id=after, item=item.wire()))

    def _item(self, ev: dict, iid: str) -> Item:
        item = self.state.find(iid)
        if item is None:
            raise ProtocolError("item_not_found", f"{ev['type']}: item '{iid}' is not in the conversation",
                                "item_id", ev.get("event_id"))
        return item

    async def _on_conversation_item_delete(self, ev: dict) -> None:
        iid = protocol.item_id(ev)
        self._item(ev, iid)
        self.state.delete(iid)
        self.save()
        self.emit(events.ev("conversation.item.deleted", item_id=iid))

    async def _on_conversation_item_retrieve(self, ev: dict) -> None:
        item = self._item(ev, protocol.item_id(ev))
        self.emit(events.ev("conversation.item.retrieved", item=item.wire()))

    async def _on_conversation_item_truncate(self, ev: dict) -> None:
        iid, ci, end = protocol.truncate(ev)
        item = self._item(ev, iid)
        resp = self.response
        # The item of the response in flight gets its output_audio part only when
        # the response ends, so it is recognised by id: a barge-in truncates it.
        in_flight = resp is not None and resp.item.id == iid
        if not in_flight and (item.role != "assistant"
                              or not any(c.get("type") == "output_audio" for c in item.content)):
            raise ProtocolError("invalid_value", f"conversation.item.truncate: item '{iid}' is not an "
                                "assistant audio message; only those can be truncated", "item_id",
                                ev.get("event_id"))
        if in_flight:
            resp.truncate(end)   # clamped to the audio sent, never rejected for being too large
        else:
            used = float(int(max(0.0, min(float(end), item.audio_ms))))
            truncate_item(item, used)
            self.emit(events.ev("conversation.item.truncated", item_id=iid, content_index=ci,
                                audio_end_ms=int(used)))
        self.save()

    async def _on_response_create(self, ev: dict) -> None:
        opts = protocol.response_create(ev)
        if self.generating():
            raise ProtocolError("conversation_already_has_active_response",
                                f"response.create: response '{self.response.id}' is still in progress; "
                                "cancel it first", event_id=ev.get("event_id"))
        self.create_response(opts)

    async def _on_response_cancel(self, ev: dict) -> None:
        rid = ev.get("response_id")
        resp = self.response
        if resp is None or resp.phase != "generating" or (rid and rid != resp.id):
            raise ProtocolError("response_cancel_not_active",
                                "response.cancel: there is no response in progress"
                                + (f" with id '{rid}'" if rid else ""), "response_id", ev.get("event_id"))
        resp.pause()
        self.spawn(resp.cancel("client_cancelled"), "client-cancel")

    async def _on_output_audio_buffer_clear(self, ev: dict) -> None:
        resp = self.response
        if resp is not None and resp.phase != "done" and resp.audio_out and resp.started:
            resp.pause()   # emits output_audio_buffer.cleared
            self.spawn(resp.cancel("client_cancelled"), "client-clear")
        else:
            self.emit(events.ev("output_audio_buffer.cleared", response_id=resp.id if resp else None))

    # -- turn-taking hooks --------------------------------------------------------------------
    def generating(self) -> bool:
        return self.response is not None and self.response.phase == "generating"

    def interruptible_response(self) -> Response | None:
        r = self.response
        if r is None or r.phase == "done" or r.status in ("cancelled", "failed"):
            return None
        return r

    def pause_response(self, resp: Response, onset_wall: float) -> None:
        if resp.pause():
            metrics.BARGE_IN_REACTION.labels(**metrics.base()).observe(max(0.0, self.clock.now() - onset_wall))

    def resume_response(self) -> None:
        resp = self.response
        if resp is not None and resp.paused and resp.phase != "done":
            resp.resume()
            metrics.FALSE_INTERRUPTIONS.labels(**metrics.base()).inc()
            log.info("session %s: false interruption, response %s resumed", self.state.id, resp.id)

    async def interrupt(self, turn: UserTurn) -> None:
        resp = self.interruptible_response()
        if resp is None:
            return
        metrics.BARGE_INS.labels(**metrics.base()).inc()
        await resp.cancel("turn_detected")

    async def end_turn(self, turn: UserTurn) -> None:
        try:
            await self._end_turn(turn)
        finally:
            # A turn that ended without an answer (dropped, no words, a response
            # already running) leaves no held run behind, and its trace ends here.
            if self.preempted is not None and self.preempted.turn_id == turn.item_id:
                self.discard_preempt("discarded")
            if not turn.span_handed_over:
                turn.end_span()

    async def _end_turn(self, turn: UserTurn) -> None:
        td = self.state.config.turn_detection
        if not turn.manual:
            self.emit(events.ev("input_audio_buffer.speech_stopped", audio_end_ms=int(turn.end_ms()),
                                item_id=turn.item_id))
        if not await turn.wait_finals(self.settings.final_timeout_s):
            log.warning("session %s: no final transcript %.1f s after the turn ended; using interims",
                        self.state.id, self.settings.final_timeout_s)
        text = turn.text()
        if turn.barge_in and not turn.confirmed and not turn.manual:
            min_ms = td.min_interrupt_ms if td else 0
            if backchannel.is_real(text) and turn.speech_ms(self.ring.end_ms) >= min_ms:
                turn.confirmed = True
                turn.interrupt_task = self.spawn(self.interrupt(turn), "interrupt")
            else:
                log.info("session %s: not a real turn (%r) over the reply: dropped", self.state.id, text)
                return
        if turn.interrupt_task is not None:
            await turn.interrupt_task
        if not text and not turn.manual:
            log.info("session %s: speech without words: no turn", self.state.id)
            return
        prev = self.state.items[-1].id if self.state.items else None
        self.emit(events.ev("input_audio_buffer.committed", previous_item_id=prev, item_id=turn.item_id))
        item = Item(id=turn.item_id, role="user", content=[{"type": "input_audio", "transcript": None}])
        self.state.insert(item, None)
        self.emit(events.ev("conversation.item.added", previous_item_id=prev, item=item.wire()))
        item.content = [{"type": "input_audio", "transcript": text}]
        self.emit(events.ev("conversation.item.input_audio_transcription.completed", item_id=item.id,
                            content_index=0, transcript=text,
                            usage={"type": "duration", "seconds": round(turn.speech_ms(self.ring.end_ms) / 1000, 3)}))
        self.emit(events.ev("conversation.item.done", previous_item_id=prev, item=item.wire()))
        self.save()
        if not turn.manual and td is not None and td.create_response and not self.generating():
            if not self._release_preempt(turn):
                self.create_response(protocol.ResponseOptions(), turn)

    # -- preemptive generation ------------------------------------------------------------------
    def preempt(self, turn: UserTurn) -> None:
        """The turn's text is final while its silence window is open: start its
        answer now, held. Only when the history cannot change before the turn
        ends (no response running or being interrupted), so the LLM sees what it
        would see without preemption."""
        td = self.state.config.turn_detection
        if (self.closed or td is None or not td.preemptive_generation or not td.create_response
                or turn.manual or turn.ended):
            return
        if turn.barge_in and not (turn.confirmed and turn.interrupt_task is not None
                                  and turn.interrupt_task.done()):
            return   # may still be a cough or backchannel, or the reply is being cut
        if self.generating() or self.interruptible_response() is not None:
            return
        text = turn.text()
        if not text:
            return
        if self.preempted is not None:
            if self.preempted.turn_id == turn.item_id and same_words(self.preempted.query, text):
                return   # started from an interim that the final confirms
            self.discard_preempt("replaced" if self.preempted.turn_id == turn.item_id else "discarded")
        pending = Item(id=turn.item_id, role="user", content=[{"type": "input_audio", "transcript": text}])
        timings = TurnTimings(preempt_start=self.clock.now())
        resp = self._new_response(protocol.ResponseOptions(), timings, pending=pending, held=True)
        resp.turn_id = turn.item_id
        resp.turn_span = turn.span   # its spans join the turn's trace; it ends it only if released
        self.preempted = resp
        resp.task = self.spawn(resp.run(), f"preempt-{resp.id}")

    def prefill(self, turn: UserTurn) -> None:
        """While the user speaks, warm an LLM instance with the history and the
        words heard so far (the last one may still change), so the answer's
        prompt is mostly evaluated before the turn ends. Only when the answer
        would see exactly this history (no reply running or being cut), one
        request at a time; the LLM answers at once when no instance is free."""
        td = self.state.config.turn_detection
        if (self.closed or not self.settings.llm_prefill or td is None or not td.create_response
                or turn.manual or turn.ended or turn.barge_in or self.response is not None
                and self.response.phase != "done"):
            return
        if self._prefill_task is not None and not self._prefill_task.done():
            return
        words = turn.text().split()[:-1]
        text = " ".join(words)
        if len(words) < self.settings.llm_prefill_min_words or text == self._prefilled:
            return
        self._prefilled = text
        pending = Item(id=turn.item_id, role="user", content=[{"type": "input_audio", "transcript": text}])
        messages = self._plan(protocol.ResponseOptions(), pending)[0]
        self._prefill_task = self.spawn(self._prefill(list(messages), turn.item_id), "llm-prefill")

    async def _prefill(self, messages: list[ChatMessage], item_id: str) -> None:
        try:
            outcome = await self.backends.llm.prefill(messages, f"prefill-{item_id}")
        except BackendError as exc:
            outcome = "error"   # an optimisation only: the answer's own request reports a down LLM
            log.debug("session %s: prefill failed: %s", self.state.id, exc.message)
        metrics.LLM_PREFILLS.labels(**metrics.base(), outcome=outcome or "unknown").inc()

    def discard_preempt(self, outcome: str) -> None:
        """Drop the held run: cancel its LLM/TTS calls; the client never hears of it."""
        resp, self.preempted = self.preempted, None
        if resp is None:
            return
        metrics.PREEMPTIVE_RUNS.labels(**metrics.base(), outcome=outcome).inc()
        resp.abandon()
        if not self.closed:
            # Bounded wait for the cancelled calls, owned like every task here.
            self.spawn(resp.stop_tasks(), f"preempt-stop-{resp.id}")

    def _release_preempt(self, turn: UserTurn) -> bool:
        resp = self.preempted
        if resp is None or resp.turn_id != turn.item_id:
            return False
        # A run started from an interim the final confirmed answered the interim's
        # wording: compare with the plan that wording gives.
        heard_as = {turn.item_id: resp.query}
        if (resp.failure is not None or not same_words(resp.query, turn.text())
                or resp.plan != self._plan(protocol.ResponseOptions(), heard_as=heard_as)):
            log.info("session %s: preemptive response %s replaced (%s)", self.state.id, resp.id,
                     "it failed" if resp.failure is not None else "its inputs changed")
            self.discard_preempt("replaced")
            return False
        self.preempted = None
        metrics.PREEMPTIVE_RUNS.labels(**metrics.base(), outcome="released").inc()
        resp.timings.adopt(turn.timings)
        self.response = resp
        self._hand_turn_span(turn, resp)
        resp.release()
        return True

    @staticmethod
    def _hand_turn_span(turn: UserTurn, resp: Response) -> None:
        """The response answering a turn ends the turn's trace when it ends."""
        resp.turn_span, resp.owns_turn_span = turn.span, True
        turn.span_handed_over = True

    # -- responses ---------------------------------------------------------------------------
    def history(self, instructions: str, pending: Item | None = None,
                heard_as: dict[str, str] | None = None) -> list[ChatMessage]:
        """What the LLM sees; ``pending`` is a user item not committed yet and
        ``heard_as`` another wording of an item's text (preemption)."""
        msgs = [ChatMessage("system", instructions)] if instructions else []
        items = self.state.items + ([pending] if pending is not None else [])
        for it in items[-self.settings.history_items:]:
            text = (heard_as or {}).get(it.id) or it.text()
            if not text:
                continue
            if it.type == "function_call_output":
                msgs.append(ChatMessage("tool", text))
            elif it.type == "function_call":
                msgs.append(ChatMessage("assistant", text))
            else:
                msgs.append(ChatMessage(it.role, text))
        return msgs

    def _plan(self, opts: protocol.ResponseOptions, pending: Item | None = None,
              heard_as: dict[str, str] | None = None) -> tuple:
        """Everything a response is built from: equal plans give identical responses."""
        cfg = self.state.config
        instructions = opts.instructions if opts.instructions is not None else (cfg.instructions or self.settings.instructions)
        items = self.state.items + ([pending] if pending is not None else [])
        texts = [(heard_as or {}).get(it.id) or it.text() for it in items if it.role == "user"]
        query = next((t for t in reversed(texts) if t), "")
        max_tokens = opts.max_output_tokens or (cfg.max_output_tokens if isinstance(cfg.max_output_tokens, int)
                                                else self.settings.llm_max_tokens)
        return (tuple(self.history(instructions, pending, heard_as)), query,
                tuple(opts.modalities or cfg.output_modalities), tuple(sorted(opts.metadata.items())),
                opts.in_conversation, max_tokens, cfg.output_rate, cfg.voice, cfg.speed,
                cfg.retrieval_enabled, cfg.retrieval_k)

    def _new_response(self, opts: protocol.ResponseOptions, timings: TurnTimings | None,
                      pending: Item | None = None, held: bool = False) -> Response:
        plan = self._plan(opts, pending)
        messages, query, modalities, metadata, in_conversation, max_tokens = plan[:6]
        resp = Response(self, messages=list(messages), query=query, modalities=list(modalities),
                        timings=timings, metadata=dict(metadata), in_conversation=in_conversation,
                        max_tokens=max_tokens, held=held)
        resp.plan = plan
        return resp

    def create_response(self, opts: protocol.ResponseOptions, turn: UserTurn | None = None) -> Response:
        resp = self._new_response(opts, turn.timings if turn else None)
        if turn is not None:
            self._hand_turn_span(turn, resp)
        self.response = resp
        resp.task = self.spawn(resp.run(), f"response-{resp.id}")
        return resp
