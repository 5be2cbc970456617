"""One recognition stream: the protocol state machine between the client's
events and the model (no gRPC, no model code: tests drive it with a fake).

Requests are read by one task that never waits for inference, so a
force_eou is acted on as soon as it arrives (control overtakes data). Per
utterance: audio is buffered; every ``interim_interval_ms`` of new audio the
stream asks the process-wide interim scheduler (interims.py) for a pass,
unless one is already running (never more than one per stream); when the
scheduler grants it, the pass takes all the audio so far and runs in a
worker thread. On end of utterance the final pass starts at once on its own
worker (the scheduler holds every interim back while a final runs), the
buffer resets for the next utterance, and interims that finish after the
final started are discarded. Finals are sent in
utterance order, and interims of the next utterance wait until the previous
final has been sent. Closing the stream cancels every pass it owns.

Flush (a client that thinks speech may have ended): the final pass starts on
the utterance so far, which stays open; its result goes out as a provisional
result, after the previous utterance's final (as interims are). One flush
pass runs at a time per stream: a flush that has not started when a newer
one (or the end of its utterance) comes is skipped. An end of utterance
with ``use_provisional`` takes the latest flush's result as its final,
waiting for the pass if it still runs, instead of transcribing everything
again; without a usable flush it is a plain final, which goes straight to
the full 30 s window when the flush's trimmed decode looped (it would loop
again on the same speech: engine.py)."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from typing import AsyncIterator, Coroutine

import numpy as np

from common.audio import AudioFormatError, pcm16_to_float
from common.clock import Clock, MonotonicClock
from services.asr.agreement import LocalAgreement
from services.asr.engine import Cancelled, Transcriber, Unreliable
from services.asr.batching import InterimBatcher
from services.asr.interims import InterimScheduler
from services.asr.observers import NullObserver, Observer
from services.asr.owned import OwnedTasks
from services.asr.results import (Audio, EndOfUtterance, Event, Flush, InvalidRequest,
                                  ResolvedConfig, Result, StreamConfig, Transcript)
from services.asr.validate import SAMPLE_RATE, Defaults, resolve_config

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SessionLimits:
    defaults: Defaults = Defaults()
    max_utterance_s: float = 30.0   # auto-final: Whisper sees 30 s at most
    # Share of wall time one stream's interims may keep a core busy: after a pass
    # of d seconds the next waits d * (1/duty - 1). Interims re-decode the whole
    # utterance, so on long ones they run back to back, and one is then always
    # still running when speech ends, beside the final. 1 (off) by default: the
    # service promises an interim at least every 500 ms of speech.
    interim_max_duty: float = 1.0


_DONE = object()


@dataclasses.dataclass
class _Flush:
    """One flush pass: the audio of its utterance up to ``samples``."""

    utterance: int
    samples: int
    result: asyncio.Future            # Transcript, or None when skipped or failed
    adopted: bool = False             # an end of utterance took it as its final
    unreliable: bool = False          # its trimmed decode failed: the final adopting it uses the full window


def _running(task: asyncio.Task | None) -> bool:
    """Still busy, not counting the task asking (a pass that just finished and is
    about to end may start the next one)."""
    return task is not None and not task.done() and task is not asyncio.current_task()


class RecognitionSession:
    """Turns a stream of events (config first) into a stream of results."""

    def __init__(self, engine: Transcriber, limits: SessionLimits = SessionLimits(),
                 observer: Observer | None = None, clock: Clock | None = None,
                 interims: InterimScheduler | None = None,
                 batcher: InterimBatcher | None = None) -> None:
        """``interims``: the process-wide scheduler shared by every stream (the
        servicer's); a session on its own gets a private one with one slot.
        ``batcher``: streams granted one pass together are decoded as one
        batch (batching.py); without it each stream's pass runs alone."""
        self.engine, self.limits, self.batcher = engine, limits, batcher
        self.observer = observer or NullObserver()
        self.clock = clock or MonotonicClock()
        self.interims = interims or InterimScheduler(1, self.clock)
        self.config: ResolvedConfig | None = None
        self._cancel = threading.Event()
        self._out: asyncio.Queue[object] = asyncio.Queue()
        self._owned = OwnedTasks(self._out)
        # Current utterance.
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._utterance = 0
        self._agreement = LocalAgreement()
        self._interim_at = 0               # samples covered when the last interim started
        self._unseen_since = 0.0           # clock time the first audio after _interim_at arrived
        self._interim_task: asyncio.Task | None = None
        self._last_interim_sent: float | None = None
        self._last_interim_ms: int | None = None   # audio the last sent interim covered
        self._interim_rest_until = 0.0     # clock time before which no interim starts (duty)
        self._rest_task: asyncio.Task | None = None
        self._final_task: asyncio.Task | None = None
        self._flush: _Flush | None = None           # latest flush of the current utterance
        self._flush_task: asyncio.Task | None = None

    @property
    def buffered_ms(self) -> int:
        return self._samples * 1000 // SAMPLE_RATE

    @property
    def utterance_index(self) -> int:
        return self._utterance

    async def run(self, events: AsyncIterator[Event]) -> AsyncIterator[Result]:
        """Results in order; raises InvalidRequest on a client mistake."""
        reader = asyncio.create_task(self._owned.guard(self._read(events)))
        try:
            while True:
                item = await self._out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            await self._shutdown(reader)

    # -- reading requests ----------------------------------------------------------------

    async def _read(self, events: AsyncIterator[Event]) -> None:
        first = True
        async for ev in events:
            if first:
                if not isinstance(ev, StreamConfig):
                    raise InvalidRequest("the first message must be a RecognitionConfig "
                                         "(config), before any audio or control")
                self.config = resolve_config(ev, self.engine.languages, self.limits.defaults)
                first = False
            elif isinstance(ev, StreamConfig):
                raise InvalidRequest("RecognitionConfig sent twice: send config once, "
                                     "as the first message of the stream")
            elif isinstance(ev, Audio):
                self._add_audio(ev.pcm)
            elif isinstance(ev, EndOfUtterance):
                self._end_utterance(ev.use_provisional)
            elif isinstance(ev, Flush):
                self._start_flush()
        if first:
            raise InvalidRequest("stream closed without a RecognitionConfig: send config first")
        if self._samples:  # half-close with pending audio still deserves a final
            self._end_utterance()
        if self._final_task is not None:
            await self._final_task
        await self._out.put(_DONE)

    def _add_audio(self, pcm: bytes) -> None:
        if not pcm:
            return
        try:
            samples = pcm16_to_float(pcm)
        except AudioFormatError as exc:
            raise InvalidRequest(f"{exc} (send 16000 Hz PCM16 mono)") from None
        max_samples = int(self.limits.max_utterance_s * SAMPLE_RATE)
        if self._samples == self._interim_at:
            self._unseen_since = self.clock.now()
        while samples.size:
            room = max_samples - self._samples
            part, samples = samples[:room], samples[room:]
            self._chunks.append(part)
            self._samples += part.size
            self.observer.audio(part.size / SAMPLE_RATE)
            if self._samples >= max_samples:
                log.info("utterance %d reached %.0f s: final without force_eou",
                         self._utterance, self.limits.max_utterance_s)
                self._end_utterance()
                self._unseen_since = self.clock.now()
        self._maybe_interim()

    # -- interims ------------------------------------------------------------------------

    def _maybe_interim(self) -> None:
        cfg = self.config
        assert cfg is not None
        if not cfg.interim_results or not self._samples or self._cancel.is_set():
            return
        if _running(self._interim_task):
            return  # one at a time per stream: the next one will cover this audio too
        if _running(self._final_task):
            return  # the previous utterance's final goes out first
        if (self._samples - self._interim_at) * 1000 < cfg.interim_interval_ms * SAMPLE_RATE:
            return
        wait = self._interim_rest_until - self.clock.now()
        if wait > 0:
            if not _running(self._rest_task):   # due audio gets its interim after the rest
                self._rest_task = self._spawn(self._interim_after(wait))
            return
        # Queued, not started: the pass takes the audio when the scheduler grants it,
        # and asking again (more audio) keeps the one request.
        self.interims.want(self, self._unseen_since, self._start_interim)

    def _start_interim(self) -> bool:
        """Granted by the scheduler: run the pass on all the audio so far."""
        if not self._samples or self._cancel.is_set() or _running(self._interim_task):
            return False
        self._interim_at = self._samples
        audio = np.concatenate(self._chunks)
        pass_id = self.interims.pass_of(self)
        self._interim_task = self._spawn(self._interim(audio, self._utterance, pass_id))
        # A done callback, not a finally: a task cancelled before its first step never
        # runs its finally, and a slot that is never given back stops every stream's interims.
        self._interim_task.add_done_callback(lambda _: self.interims.finished(self))
        return True

    async def _interim(self, audio: np.ndarray, utterance: int, pass_id: int | None) -> None:
        try:
            tr = await self._interim_pass(audio, pass_id)
        except Cancelled:
            return
        except Unreliable:
            log.debug("interim of utterance %d skipped: looping text", utterance)
            self._maybe_interim()
            return
        duty = self.limits.interim_max_duty
        if 0 < duty < 1:
            self._interim_rest_until = self.clock.now() + tr.model_seconds * (1 / duty - 1)
        if utterance != self._utterance:
            return  # the final of this utterance has started: it supersedes us
        agreed = self._agreement.update(tr.text)
        now = self.clock.now()
        seconds = audio.size / SAMPLE_RATE
        covered_ms = audio.size * 1000 // SAMPLE_RATE
        interval = None if self._last_interim_sent is None else now - self._last_interim_sent
        # The first interim's "interval" is the speech before it: what a user waited for it.
        audio_interval = (covered_ms - (self._last_interim_ms or 0)) / 1000
        self._last_interim_sent, self._last_interim_ms = now, covered_ms
        self.observer.interim(tr.model_seconds / seconds if seconds else 0.0,
                              agreed.changed_words, interval, audio_interval)
        await self._out.put(Result(
            text=agreed.text, is_final=False, utterance_index=utterance,
            audio_processed_ms=covered_ms, stability=agreed.stability,
            changed_words=agreed.changed_words, processing_ms=tr.model_seconds * 1000))
        # Audio that arrived while we ran may already be due (fast senders).
        self._maybe_interim()

    async def _interim_pass(self, audio: np.ndarray, pass_id: int | None) -> Transcript:
        cfg = self.config
        assert cfg is not None
        if self.batcher is not None and pass_id is not None:
            return await self.batcher.interim(pass_id, audio, cfg.language, self._cancel)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.engine.interim_pool, self.engine.transcribe_interim, audio, cfg.language,
            self._cancel)

    async def _interim_after(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
        self._maybe_interim()

    # -- finals --------------------------------------------------------------------------

    def _end_utterance(self, use_provisional: bool = False) -> None:
        eou_at = self.clock.now()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        utterance = self._utterance
        adopt, self._flush = (self._flush if use_provisional else None), None
        if adopt is not None:
            adopt.adopted = True
        self._chunks, self._samples, self._interim_at = [], 0, 0
        self.interims.withdraw(self)   # a queued interim of this utterance is moot now
        self._utterance += 1
        self._agreement = LocalAgreement()
        self._last_interim_sent = self._last_interim_ms = None
        self._interim_rest_until = 0.0
        previous = self._final_task
        self._final_task = self._spawn(self._final(audio, utterance, previous, eou_at, adopt))

    async def _final(self, audio: np.ndarray, utterance: int, previous: asyncio.Task | None,
                     eou_at: float, adopt: _Flush | None = None) -> None:
        cfg = self.config
        assert cfg is not None
        tr: Transcript | None = None
        trim = True
        if adopt is not None:
            tr = await adopt.result          # None: skipped or failed, so transcribe here
            if tr is not None:
                audio = audio[:adopt.samples]
                self.observer.flush_adopted()
            # Nothing voiced since the flush: a trimmed decode would fail as its did.
            trim = not adopt.unreliable
        if tr is None and audio.size:
            tr = await self._pass(audio, trim=trim)
            if not cfg.background:   # (a release probe's pass runs at the interims' priority)
                self.observer.model_pass("final", tr.model_seconds)
        elif tr is None:
            tr = Transcript(text="")  # force_eou with nothing sent: an empty final, no model call
        if previous is not None:
            await previous   # keep finals in utterance order
        seconds = audio.size / SAMPLE_RATE
        if self.config is None or not self.config.background:   # a probe's pass is not a live final's latency
            self.observer.final(tr.model_seconds / seconds if seconds else 0.0, self.clock.now() - eou_at)
        await self._out.put(Result(
            text=tr.text, is_final=True, utterance_index=utterance,
            audio_processed_ms=audio.size * 1000 // SAMPLE_RATE, stability=1.0, words=tr.words,
            processing_ms=tr.model_seconds * 1000))
        self._maybe_interim()   # interims of the next utterance were held back for us

    async def _pass(self, audio: np.ndarray, redo: bool = True, trim: bool = True) -> Transcript:
        cfg = self.config
        assert cfg is not None
        loop = asyncio.get_running_loop()
        if cfg.background:
            # Nobody waits for it (a release probe): at the interims' low CPU
            # priority, and interims are not held back for it.
            return await loop.run_in_executor(
                self.engine.final_pool, lambda: self.engine.transcribe_final(
                    audio, cfg.language, cfg.beam_size, self._cancel, cfg.words, redo, background=True,
                    trim=trim))
        self.interims.final_started()   # no stream's interim starts while this runs
        try:
            return await loop.run_in_executor(
                self.engine.final_pool, lambda: self.engine.transcribe_final(
                    audio, cfg.language, cfg.beam_size, self._cancel, cfg.words, redo, trim=trim))
        finally:
            self.interims.final_finished()

    # -- flushes -------------------------------------------------------------------------

    def _start_flush(self) -> None:
        if not self._samples or self._cancel.is_set():
            return
        fl = _Flush(self._utterance, self._samples, asyncio.get_running_loop().create_future())
        self._flush = fl
        self._interim_at = self._samples   # this pass covers the audio an interim would
        self.interims.withdraw(self)
        audio = np.concatenate(self._chunks)
        self._flush_task = self._spawn(self._run_flush(fl, audio, self._flush_task))

    async def _run_flush(self, fl: _Flush, audio: np.ndarray, previous: asyncio.Task | None) -> None:
        tr: Transcript | None = None
        try:
            if previous is not None:
                await asyncio.wait([previous])   # one flush pass at a time per stream
            if fl is self._flush or fl.adopted:  # else a newer flush or a plain final replaced it
                try:
                    # Not redone on the 30 s window when unreliable: a flush over a
                    # fraction of a second (a barge-in's confirmation) often is, and
                    # a redo would hold the final queue ~1 s ahead of other
                    # streams' finals. No text: a final adopting it transcribes anew.
                    tr = await self._pass(audio, redo=False)
                    self.observer.model_pass("flush", tr.model_seconds)
                except Unreliable:
                    fl.unreliable = True
                    self.observer.flush_unreliable()
        finally:
            if not fl.result.done():
                fl.result.set_result(tr)

        def unsent() -> bool:   # the final carries this text, or the utterance ended without it
            return tr is None or fl.adopted or fl.utterance != self._utterance

        if not unsent() and self._final_task is not None and _running(self._final_task):
            # The previous utterance's final goes out first, as it does before interims.
            await asyncio.wait([self._final_task])
        if tr is None or unsent():
            return
        await self._out.put(Result(
            text=tr.text, is_final=False, provisional=True, utterance_index=fl.utterance,
            audio_processed_ms=fl.samples * 1000 // SAMPLE_RATE, stability=1.0,
            processing_ms=tr.model_seconds * 1000))

    def _spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task:
        return self._owned.spawn(coro)

    async def _shutdown(self, reader: asyncio.Task) -> None:
        self._cancel.set()   # passes in worker threads stop at their next check
        self.interims.withdraw(self)
        await self._owned.close(reader)
