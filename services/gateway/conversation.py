"""One Realtime session at run time, the coordinator: it dispatches client
events (the ``_on_*`` handlers; item edits in item_events.py), pumps input
audio through turn-taking (turns.py, barge-in in bargein.py), commits ended
turns (``end_turn``), runs responses (response.py) built by the planner
(planning.py: history, plan, LLM prefill) or released by preemption
(preempt.py: answers started inside the silence window), keeps the session
state (session.py) saved in the store, and owns every task it starts (closed
together with the session)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Coroutine, cast

from services.gateway import echo_trace, events, metrics, protocol
from services.gateway.audio_in import AudioQueue, Resampler, RingBuffer
from services.gateway.backends.types import BackendError
from services.gateway.defaults import default_turn_detection
from services.gateway.echo_ref import SessionEcho
from services.gateway.item_events import ItemEvents
from services.gateway.outbox import Outbox
from services.gateway.planning import Planner, hand_turn_span
from services.gateway.preempt import Preemption
from services.gateway.protocol import ProtocolError
from services.gateway.response import Response
from services.gateway.resume import resume_session
from services.gateway.session import Item, SessionState
from services.gateway.session_update import session_update
from services.gateway.settings import GatewaySettings
from services.gateway.supervise import Supervisor
from services.gateway.turn_state import UserTurn
from services.gateway.turns import TurnTaker

log = logging.getLogger(__name__)


class Conversation:
    def __init__(self, state: SessionState, settings: GatewaySettings, backends: Any, clock: Any,
                 store: Any, load_session: Callable[[str], Coroutine[Any, Any, SessionState | None]] | None = None,
                 route: Callable[[str, dict[str, str]], Any] | None = None) -> None:
        self.state, self.settings, self.backends, self.clock, self.store = state, settings, backends, clock, store
        self.load_session = load_session
        self.route = route    # (session id, its stored variants) -> its backends: a resume's own
        self.outbox = Outbox(settings.outbox_max_events, clock)
        self.audio_q = AudioQueue(settings.input_queue_ms)
        self.ring = RingBuffer()
        self.resampler = Resampler()
        # The assistant's own voice cancelled from the mic audio (echo.py).
        self.echo = SessionEcho(lambda: self.response, trace=echo_trace.for_session(settings, state.id),
                                onsets=settings.echo_onset_pause) if settings.echo_cancel else None
        self.turns = TurnTaker(self)
        self.items = ItemEvents(self)             # the client's edits of the items
        self.response: Response | None = None
        self.planner = Planner(self)              # what answers are built from; LLM prefill
        self.preemption = Preemption(self, self.planner)   # the held answer of a turn in its silence window
        self._tasks: set[asyncio.Task] = set()
        self.supervisor = Supervisor(self)        # critical tasks: restarted or the session closed
        self.closed = False

    @property
    def conversation_id(self) -> str:
        return "conv_" + self.state.id.removeprefix("sess_")

    # -- tasks ------------------------------------------------------------------------
    def spawn(self, coro: Coroutine, name: str, *, turn: UserTurn | None = None,
              event_id: str | None = None) -> asyncio.Task:
        """A task owned by this session: tracked, cancelled at close; its
        unexpected failure is reported (supervise.py), naming ``event_id``
        (the client event it serves) and dropping ``turn`` (the user turn it
        ends) if that is still the turn in progress."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.state.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(t, name, turn, event_id))
        return task

    def _task_done(self, task: asyncio.Task, kind: str, turn: UserTurn | None, event_id: str | None) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not (self.closed or self.outbox.closed):
            # Never silent: an error event, a count, and the turn it stranded dropped.
            self.supervisor.one_shot_failed(kind, exc, turn, event_id)
        elif exc is not None:
            log.error("session %s: task %s failed", self.state.id, task.get_name(), exc_info=exc)

    def start(self) -> None:
        self.turns.start()
        self.spawn(self.supervisor.run("audio-pump", self._pump), "audio-pump")

    async def close(self) -> None:
        """Cancel every task, wait for them (bounded), store the session. Cancelled
        while waiting, it still discards the queues and stores the session; the
        tasks, already cancelled, end by themselves."""
        self.closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        try:
            if tasks:
                done, pending = await asyncio.wait(tasks, timeout=self.settings.cancel_wait_s)
                if pending:
                    log.error("session %s: %d tasks did not stop %.1f s after cancel: %s", self.state.id,
                              len(pending), self.settings.cancel_wait_s, [t.get_name() for t in pending])
        finally:
            self.audio_q.discard()
            self.outbox.discard()
            self.save()
            self._write_echo_trace()

    def _write_echo_trace(self) -> None:
        """The stretch of echo cancelling a closing session was in (diagnosis, echo_trace.py)."""
        if self.echo is not None and self.echo.trace is not None:
            try:
                self.echo.trace.write()
            except Exception:
                log.exception("session %s: echo trace not written", self.state.id)

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
        self.state.insert(item, None)
        return self.bound_items(item.id)

    def bound_items(self, added: str) -> str | None:
        """Keep at most settings.max_items: the oldest leave, announced, never the item just
        ``added`` (even added first); saves. Returns the id of the item ``added`` follows."""
        items = self.state.items
        while len(items) > max(1, self.settings.max_items):
            old = items.pop(1 if items[0].id == added else 0)
            self.emit(events.ev("conversation.item.deleted", item_id=old.id))
        self.save()
        at = next(i for i, it in enumerate(items) if it.id == added)
        return items[at - 1].id if at else None

    # -- input audio ---------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            kind, pcm, arg, at = await self.audio_q.get()
            if kind == "audio":
                pcm16 = self.resampler.to16k(pcm, cast(int, arg))   # an audio entry's arg is its rate
                # The newest 16 kHz sample was recorded delay_ms before this chunk's end.
                wall = at - self.resampler.delay_ms / 1000.0
                if self.echo is not None:
                    pcm16, wall = self.echo.clean(pcm16, wall,
                                                  enabled=self.state.config.noise_reduction != "near_field")
                    voice_at = self.echo.take_voice_onset()
                    if voice_at is not None:
                        self.turns.bargein.echo_onset(voice_at)
                self.ring.append(pcm16, wall)
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
        except Exception:
            # A bug met by one event must not close the socket (1011) and lose the
            # session: the client hears which event failed, the log has the rest.
            log.exception("session %s: %s failed", self.state.id, ev.get("type"))
            self.emit(events.error("internal_error", f"{ev.get('type')}: the server failed to handle this "
                                   "event; the session goes on", event_id=ev.get("event_id"),
                                   type="server_error"))

    async def _on_session_update(self, ev: dict) -> None:
        old = self.state.config
        cfg, resume = session_update(ev, old, default_turn_detection(self.settings))
        if resume and resume != self.state.id:
            await resume_session(self, ev, resume)
            old = self.state.config
            cfg, _ = session_update(ev, old, default_turn_detection(self.settings))
        self.state.config = cfg
        self.turns.sync_vad()
        if cfg.turn_detection and old.turn_detection and (
                cfg.turn_detection.type != old.turn_detection.type   # semantic_vad asks the VAD for scores
                or cfg.turn_detection.threshold != old.turn_detection.threshold
                or cfg.turn_detection.prefix_padding_ms != old.turn_detection.prefix_padding_ms):
            await self.turns.reconfigure_vad()
        self.save()
        self.emit(events.ev("session.updated", session=cfg.wire(self.state.id)))

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

    # conversation.item.* (item_events.py)
    async def _on_conversation_item_create(self, ev: dict) -> None:
        await self.items.create(ev)

    async def _on_conversation_item_delete(self, ev: dict) -> None:
        await self.items.delete(ev)

    async def _on_conversation_item_retrieve(self, ev: dict) -> None:
        await self.items.retrieve(ev)

    async def _on_conversation_item_truncate(self, ev: dict) -> None:
        await self.items.truncate(ev)

    async def _on_response_create(self, ev: dict) -> None:
        opts = protocol.response_create(ev, self.state.config.tools)
        if self.generating():
            assert self.response is not None   # generating() says there is one
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
        self.spawn(resp.cancel("client_cancelled"), "client-cancel", event_id=ev.get("event_id"))

    async def _on_output_audio_buffer_clear(self, ev: dict) -> None:
        resp = self.response
        if resp is not None and resp.phase != "done" and resp.audio_out and resp.started:
            resp.pause()   # emits output_audio_buffer.cleared
            self.spawn(resp.cancel("client_cancelled"), "client-clear", event_id=ev.get("event_id"))
        else:
            self.emit(events.ev("output_audio_buffer.cleared", response_id=resp.id if resp else None))

    # -- turn-taking hooks --------------------------------------------------------------------
    def generating(self) -> bool:
        return self.response is not None and self.response.phase == "generating"

    def interruptible_response(self) -> Response | None:
        r = self.response
        if r is None or not r.life.live:   # ended (completed, failed, cancelled)
            return None
        return r

    def pause_response(self, resp: Response, onset_wall: float) -> None:
        if resp.pause():
            metrics.BARGE_IN_REACTION.labels(**metrics.base()).observe(max(0.0, self.clock.now() - onset_wall))

    def resume_response(self, dropped_by: str | None = None) -> None:
        """Resume the reply a barge-in paused: a false interruption (speech that
        confirmed nothing), counted as one; or, with ``dropped_by``, the client
        dropped the turn (input cleared, turn detection off) or turned
        interruptions off, which is not."""
        resp = self.response
        if resp is not None and resp.paused and resp.phase != "done":
            resp.resume()
            if dropped_by is None:
                metrics.FALSE_INTERRUPTIONS.labels(**metrics.base()).inc()
            log.info("session %s: %s, response %s resumed", self.state.id,
                     dropped_by or "false interruption", resp.id)

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
            held = self.preemption.held
            if held is not None and held.turn_id == turn.item_id:
                self.discard_preempt("discarded")
            if not turn.span_handed_over:
                turn.end_span()

    async def _end_turn(self, turn: UserTurn) -> None:
        td = self.state.config.turn_detection
        if not turn.manual:
            self.emit(events.ev("input_audio_buffer.speech_stopped", audio_end_ms=int(turn.end_ms()),
                                item_id=turn.item_id))
        if not await turn.wait_finals(self.settings.final_timeout_s, self.clock):
            log.warning("session %s: no final transcript %.1f s after the turn ended; using interims",
                        self.state.id, self.settings.final_timeout_s)
            # The turn waited this long on the ASR: its stage says so (a final
            # never received would leave a very slow ASR out of the breakdown).
            turn.give_up_finals()
            turn.timings.final = self.clock.now()
        text = turn.text()
        if (turn.life.pending and not turn.manual
                and not self.turns.bargein.confirm_at_turn_end(turn, td)):
            # Why at INFO; the words only at DEBUG (transcripts stay out of INFO logs).
            log.info("session %s: speech over the reply dropped (%s, %d words)", self.state.id,
                     self.turns.bargein.why_not(turn, td), len(text.split()))
            log.debug("session %s: the dropped speech: %r", self.state.id, text)
            return
        if turn.interrupt_task is not None:
            await asyncio.wait([turn.interrupt_task])    # a failed cut is reported by its own task
        if not text and not turn.manual:
            log.info("session %s: speech without words: no turn", self.state.id)
            return
        prev = self.state.items[-1].id if self.state.items else None
        self.emit(events.ev("input_audio_buffer.committed", previous_item_id=prev, item_id=turn.item_id))
        item = Item(id=turn.item_id, role="user", content=[{"type": "input_audio", "transcript": None}])
        self.state.insert(item, None)
        prev = self.bound_items(item.id)
        self.emit(events.ev("conversation.item.added", previous_item_id=prev, item=item.wire()))
        item.content = [{"type": "input_audio", "transcript": text}]
        self.emit(events.ev("conversation.item.input_audio_transcription.completed", item_id=item.id,
                            content_index=0, transcript=text,
                            usage={"type": "duration", "seconds": round(turn.speech_ms(self.ring.end_ms) / 1000, 3)}))
        self.emit(events.ev("conversation.item.done", previous_item_id=prev, item=item.wire()))
        self.save()
        if not turn.manual and td is not None and td.create_response and not self.generating():
            held = self.preemption.release(turn)
            if held is None:
                self.create_response(protocol.ResponseOptions(), turn)
            else:
                self.response = held
                hand_turn_span(turn, held)
                held.release()

    # -- answers (planning.py, preempt.py) ----------------------------------------------------
    def preempt(self, turn: UserTurn) -> None:
        self.preemption.start(turn)

    def discard_preempt(self, outcome: str) -> None:
        self.preemption.discard(outcome)

    def prefill(self, turn: UserTurn) -> None:
        self.planner.prefill(turn)

    def create_response(self, opts: protocol.ResponseOptions, turn: UserTurn | None = None) -> Response:
        resp = self.planner.new_response(opts, turn.timings if turn else None)
        if turn is not None:
            hand_turn_span(turn, resp)
        self.response = resp
        resp.task = self.spawn(resp.run(), f"response-{resp.id}")
        return resp
