"""Turn-taking: from input audio and the VAD/ASR streams to user turns.

All audio goes to a per-session VAD stream configured with a short
min_silence, so "silence began" is known early. On speech_started the audio
from the padded start is sent to the ASR stream and streaming continues while
speech lasts; interims become transcription deltas. On speech_stopped the
ASR utterance is ended at once (force_eou: the final transcription runs while
the silence window is still open) and a timer of silence_duration_ms (minus
the silence already elapsed) starts; with semantic_vad the window depends on
the stop's end-of-turn probability (services/gateway/semantic.py). Earlier
still (asr_flush_on_pause), the VAD's "paused" — the first unvoiced frame after speech, a min_silence before
its stop — flushes the ASR: the final pass starts on the utterance so far,
which stays open. When the stop then has the same speech end (nothing voiced
in between), the utterance is ended with use_provisional and that pass is
its final; otherwise it is ended as usual. Speech before the timer fires continues
the same turn: its final is appended, so a pause inside a sentence gives one
turn and one answer. When the timer fires the turn ends (Conversation.end_turn).

Preemptive generation: when the last segment's final arrives while the
window is still open (every segment final, no speech going on), the
conversation starts the answer for the turn's text, held (preempt.py); speech starting
again inside the window discards it, and the next final starts a new one
with the longer text. Earlier still, when the segment's latest interim
already covers the audio up to the VAD's speech end, the run starts from it at
speech_stopped; the final then keeps it if the texts are equal once
normalised (case, punctuation), and restarts it otherwise.

Barge-in (speech over a reply: pause, confirm, flush, resume) is decided in
one place, bargein.py; the turn data (Segment, UserTurn) is in turn_state.py.
Every time here is read from the injected clock."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from common.tracing import new_root_span, traceparent_of
from services.gateway import backchannel, events, metrics, semantic
from services.gateway.backends.types import AsrResult, BackendError, VadEvent
from services.gateway.bargein import BargeIn
from services.gateway.protocol import ProtocolError, new_id
from services.gateway.streams import StreamKeeper
from services.gateway.turn_state import Segment, UserTurn
from services.gateway.turn_streams import Utterances, VadFeed, asr_params, vad_params

if TYPE_CHECKING:
    from services.gateway.conversation import Conversation

log = logging.getLogger(__name__)
MIN_COMMIT_MS = 100
__all__ = ["MIN_COMMIT_MS", "Segment", "TurnTaker", "UserTurn"]   # the turn data lives in turn_state.py


class TurnTaker:
    def __init__(self, conv: "Conversation") -> None:
        self.conv = conv
        self.turn: UserTurn | None = None
        self.segment: Segment | None = None
        self.vad_feed = VadFeed(conv.ring)
        self.utterances = Utterances(conv.ring)
        self._endpoint_task: asyncio.Task | None = None
        self.bargein = BargeIn(self)
        b = conv.backends
        self.vad = StreamKeeper(b.vad, self._open_vad, lambda s: s.events(), self._on_vad,
                                self._vad_up, lambda e, first: self._down(e, first), conv.clock)
        self.asr = StreamKeeper(b.asr, self._open_asr, lambda s: s.results(), self._on_asr,
                                self._asr_up, self._asr_down, conv.clock)
        self._vad_task: asyncio.Task | None = None

    # -- streams ------------------------------------------------------------------
    @property
    def td(self):
        return self.conv.state.config.turn_detection

    def start(self) -> None:
        self.conv.spawn(self.conv.supervisor.run("asr-stream", self.asr.run), "asr-stream")
        self.sync_vad()

    def sync_vad(self) -> None:
        """Run the VAD stream only in server_vad mode."""
        if self.td is not None and self._vad_task is None:
            self._vad_task = self.conv.spawn(self.conv.supervisor.run("vad-stream", self.vad.run),
                                             "vad-stream")
        elif self.td is None and self._vad_task is not None:
            self._vad_task.cancel()
            self._vad_task = None
            self.drop_turn()

    async def reconfigure_vad(self) -> None:
        await self.vad.restart()
        if self.segment is not None:
            # The new stream knows nothing of the speech in progress and will
            # never report its stop: end the segment here, as when the VAD is
            # lost (speech that goes on is a new start in the same turn's
            # silence window). Left open, a cough over the reply kept the reply
            # paused for ever (a threshold change while it lasted).
            await self._speech_stopped(self.conv.ring.end_ms)

    async def _open_vad(self):
        return await self.conv.backends.vad.open(vad_params(self.td, self.conv.settings))

    async def _open_asr(self):
        return await self.conv.backends.asr.open(asr_params(self.conv.settings))

    def _vad_up(self, stream) -> None:
        self.vad_feed.restart()

    def _asr_up(self, stream) -> None:
        self.utterances.restart(self.segment)

    def _asr_down(self, exc: BackendError, first: bool) -> None:
        self.utterances.lost(self.segment)
        self._down(exc, first)

    def _down(self, exc: BackendError, first: bool) -> None:
        if first:
            self.conv.emit(events.error("backend_unavailable", exc.message, type="server_error"))
        if exc.backend == "vad" and self.segment is not None:
            # Without VAD the open segment cannot end by itself: end it here.
            self.conv.spawn(self._speech_stopped(self.conv.ring.end_ms), "vad-lost-stop", turn=self.turn)

    # -- audio ----------------------------------------------------------------------
    async def feed(self, pcm16k: bytes) -> None:
        """Audio just added to the ring buffer."""
        settings, ring = self.conv.settings, self.conv.ring
        if self._vad_task is not None:
            pcm = self.vad_feed.due(settings.vad_chunk_ms)   # whole VAD frames only (settings.py)
            if pcm:
                await self.vad.send("send", pcm)
        if self.td is None and self.segment is None and pcm16k:
            await self._open_manual_segment(len(pcm16k) / 32.0)
        elif self.segment is not None and ring.end_ms - self.utterances.sent_to >= settings.asr_chunk_ms:
            await self.asr_send_upto()
        if self.turn is not None and self.turn.life.pending:
            if not self.bargein.confirm(self.turn):
                await self.bargein.confirm_flush(self.turn)

    async def asr_send_upto(self) -> None:
        pcm = self.utterances.unsent()
        if pcm:
            await self.asr.send("send", pcm)

    async def _open_segment(self, onset_ms: float, padded_ms: float) -> Segment:
        seg = Segment(onset_ms, max(padded_ms, self.utterances.sent_to))
        self.segment = seg
        assert self.turn is not None
        self.turn.segments.append(seg)
        if self.asr.stream is not None:
            self.utterances.add(seg)
        else:
            seg.done.set()  # no ASR: this segment will have no text
        self.utterances.sent_to = seg.padded_ms
        await self.asr_send_upto()
        return seg

    async def _close_segment(self, end_ms: float) -> Segment | None:
        seg = self.segment
        if seg is None:
            return None
        seg.end_ms = end_ms
        self.segment = None
        await self.asr_send_upto()
        if not seg.done.is_set():
            # The flush heard everything when no voiced frame came after its speech end.
            adopt = seg.flush_end_ms is not None and seg.flush_end_ms >= end_ms
            if await self.asr.send("end_utterance", adopt):
                if self.turn is not None:
                    # asr_final_ms counts from the request of the pass that gives the final
                    self.turn.timings.eou_sent = seg.flush_at if adopt else self.conv.clock.now()
            else:
                seg.final = seg.interim
                seg.done.set()
        return seg

    # -- VAD events -------------------------------------------------------------------
    async def _on_vad(self, ev: VadEvent) -> None:
        if self.td is None:
            return
        base = self.vad_feed.base_ms
        if ev.kind == "started":
            await self._speech_started(ev.audio_ms + base, ev.padded_start_ms + base)
        elif ev.kind == "paused":
            await self._speech_paused(ev.audio_ms + base)
        elif ev.kind == "stopped":
            await self._speech_stopped(ev.audio_ms + base, ev.turn_probability)

    async def _speech_started(self, onset_ms: float, padded_ms: float) -> None:
        if self.segment is not None:
            return
        conv, now = self.conv, self.conv.clock.now()
        if self.turn is None or self.turn.ended:
            turn = UserTurn(new_id("item"), padded_ms, conv.ring.wall_of(onset_ms) or now)
            self.turn = turn
            await self._trace_turn(turn)
            self.bargein.cancel_resume()
            conv.emit(events.ev("input_audio_buffer.speech_started", audio_start_ms=int(padded_ms),
                                item_id=turn.item_id))
            self.bargein.begin(turn)
        else:
            # Speech again inside the silence window: the same turn goes on,
            # and an answer started for its shorter text is dropped unheard.
            self._cancel(self._endpoint_task)
            self.bargein.cancel_resume()
            self.conv.discard_preempt("discarded")
        await self._open_segment(onset_ms, padded_ms)

    async def _speech_paused(self, end_ms: float) -> None:
        """Speech may have ended at ``end_ms``: start the final pass now."""
        seg = self.segment
        if seg is None or seg.done.is_set() or self.asr.stream is None:
            return
        await self.asr_send_upto()     # the flush covers every sample received so far
        if await self.asr.send("flush"):
            seg.flush_end_ms, seg.flush_at = end_ms, self.conv.clock.now()

    async def _speech_stopped(self, end_ms: float, turn_probability: float | None = None) -> None:
        seg = await self._close_segment(end_ms)
        turn = self.turn
        if seg is None or turn is None or turn.manual:
            return
        clock = self.conv.clock
        now = clock.now()
        wall_end = self.conv.ring.wall_of(end_ms)
        turn.timings.speech_end = wall_end if wall_end is not None else now
        turn.timings.vad_stopped = now
        window_ms = semantic.silence_window_ms(self.td, turn_probability, self.conv.settings)
        remaining = window_ms / 1000.0 - (now - turn.timings.speech_end)
        self._endpoint_task = self.conv.spawn(self._endpoint(turn, remaining), "endpoint", turn=turn)
        if self._in_window(turn):
            # The final came while the utterance was being ended (a flush that
            # finished before the stop): the answer can start now.
            self.conv.preempt(turn)
        if seg.interim_end_ms is not None:
            turn.timings.interim_gap_ms = max(0.0, end_ms - seg.interim_end_ms)
        if (self.conv.settings.preempt_from_interim and not seg.done.is_set() and seg.interim
                and seg.interim_end_ms is not None and seg.interim_end_ms >= end_ms
                and all(s.done.is_set() for s in turn.segments if s is not seg)):
            self.conv.preempt(turn)   # the interim already heard all of it
        if turn.life.pending:
            self.bargein.resume_later(turn)

    async def _endpoint(self, turn: UserTurn, remaining: float) -> None:
        await self.conv.clock.sleep(max(0.0, remaining))
        if self.turn is not turn or self.segment is not None or turn.ended:
            return
        turn.life.end()
        turn.timings.turn_end = self.conv.clock.now()
        await self.conv.end_turn(turn)

    # -- ASR results ----------------------------------------------------------------------
    async def _on_asr(self, r: AsrResult) -> None:
        seg = self.utterances.get(r.utterance_index)
        if seg is None:
            return
        if seg.done.is_set():   # cleared or given up on: its text is not used
            if r.is_final:
                self.utterances.settle(r.utterance_index)
            return
        if r.provisional and seg.end_ms is not None:
            return   # the segment has ended without this flush: its own final is coming
        if r.is_final:
            seg.final = r.text.strip()
            seg.done.set()
            self.utterances.settle(r.utterance_index)
            if self.turn is not None and seg in self.turn.segments:
                self.turn.timings.final = self.conv.clock.now()
        else:
            previous, seg.interim = seg.interim, r.text.strip()
            if self.turn is not None and seg in self.turn.segments:
                self.turn.timings.count_interim(previous, seg.interim)
            if r.audio_processed_ms:
                seg.interim_end_ms = seg.padded_ms + r.audio_processed_ms
        turn = self.turn
        if turn is None or seg not in turn.segments:
            return
        self.send_delta(turn)
        if not r.is_final and not r.provisional and self.segment is seg:
            self.conv.prefill(turn)    # the user is still speaking: warm the LLM with the words so far
        if turn.life.pending:
            self.bargein.confirm(turn)
        if r.is_final and self._in_window(turn):
            self.conv.preempt(turn)

    def _in_window(self, turn: UserTurn) -> bool:
        """The turn's text is complete and only the end-of-turn timer is running."""
        return (self.segment is None and not turn.ended and not turn.manual
                and self._endpoint_task is not None and not self._endpoint_task.done()
                and all(s.done.is_set() for s in turn.segments))

    def send_delta(self, turn: UserTurn) -> None:
        text = turn.text()
        if text == turn.sent_transcript or turn.ended:
            return
        if turn.life.pending and (not backchannel.is_real(text) or self.bargein.is_echo(turn)):
            return  # a cough, an "mm-hm" or the reply's own echo: not shown as a user turn
        prev = turn.sent_transcript
        common = 0
        while common < min(len(prev), len(text)) and prev[common] == text[common]:
            common += 1
        turn.sent_transcript = text
        self.conv.emit(events.ev("conversation.item.input_audio_transcription.delta",
                                 item_id=turn.item_id, content_index=0, delta=text[common:],
                                 transcript=text))

    # -- client commands -------------------------------------------------------------------
    async def _open_manual_segment(self, ms: float) -> None:
        if self.turn is None or self.turn.ended:
            start = self.conv.ring.end_ms - ms
            self.turn = UserTurn(new_id("item"), start, self.conv.clock.now(), manual=True)
            await self._trace_turn(self.turn)
        await self._open_segment(self.conv.ring.end_ms - ms, self.conv.ring.end_ms - ms)

    async def commit(self, event_id: str | None) -> None:
        turn = self.turn
        if turn is None or turn.ended:
            raise ProtocolError("input_audio_buffer_commit_empty",
                                "input_audio_buffer.commit: the input audio buffer is empty: "
                                f"expected at least {MIN_COMMIT_MS} ms of audio", event_id=event_id)
        seg = self.segment
        if turn.manual and seg is not None and self.conv.ring.end_ms - seg.padded_ms < MIN_COMMIT_MS:
            raise ProtocolError("input_audio_buffer_commit_empty",
                                f"input_audio_buffer.commit: buffer too small: expected at least "
                                f"{MIN_COMMIT_MS} ms of audio, got {self.conv.ring.end_ms - seg.padded_ms:.0f} ms",
                                event_id=event_id)
        self._cancel(self._endpoint_task)
        now = self.conv.clock.now()
        if seg is not None:
            await self._close_segment(self.conv.ring.end_ms)
            turn.timings.speech_end = now
        turn.life.end()
        turn.timings.turn_end = now
        if seg is not None and turn.life.pending:
            # Its speech paused the reply, and no speech stop will come for it
            # now (the commit closed its segment): the false-interruption timer
            # starts here, or a cough committed over the reply would leave it
            # paused and in progress for ever (found by the protocol state
            # machine, tests/fuzz: CI 2026-12-03). A commit after the speech
            # stopped finds the timer that stop started.
            self.bargein.resume_later(turn)
        # Waiting for the final must not hold up the audio behind this command.
        self.conv.spawn(self.conv.end_turn(turn), "commit", turn=turn, event_id=event_id)

    async def clear(self) -> None:
        self.drop_turn()
        seg = self.segment
        if seg is not None:
            self.segment = None
            seg.final = ""
            seg.done.set()
            await self.asr.send("end_utterance")  # resets the ASR utterance; its text is ignored

    def drop_turn(self) -> None:
        self._cancel(self._endpoint_task)
        self.conv.discard_preempt("discarded")
        if self.turn is not None:
            self.turn.life.end()
            if not self.turn.span_handed_over:
                self.turn.end_span()
            if self.turn.life.pending:
                # Its speech paused the reply and can no longer confirm: the reply
                # resumes (a false interruption), or it would stay paused and in
                # progress for ever, every response.create refused (turn detection
                # turned off, or the input cleared, over a cough: found by the
                # protocol state machine, tests/fuzz).
                self.bargein.cancel_resume()
                self.conv.resume_response(dropped_by="turn dropped")
        self.turn = None

    async def _trace_turn(self, turn: UserTurn) -> None:
        """Open the turn's trace and tell the long-lived VAD and ASR streams, so
        this turn's speech segment and utterance spans join it (not per frame)."""
        turn.span = new_root_span("gateway", "turn", {"turn.item_id": turn.item_id,
                                                      **metrics.variant_attrs(self.conv.backends.variants)})
        carrier = traceparent_of(turn.span)
        if carrier:   # tracing on
            await self.vad.send("send_trace", carrier)
            await self.asr.send("send_trace", carrier)

    @staticmethod
    def _cancel(task: asyncio.Task | None) -> None:
        if task is not None and not task.done():
            task.cancel()
