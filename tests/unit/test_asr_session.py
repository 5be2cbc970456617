"""Invariants of one recognition stream (session state machine, fake model):
config comes first and once, and bad input is rejected with a message that
says what was wrong; audio is buffered per utterance and the buffer resets
at each end of utterance; interims come every interim_interval of new audio,
never more than one in flight per stream; a final starts at once even while
an interim runs, and interims that finish after it are dropped; finals keep
utterance order; closing the stream cancels the model work it owns. Streams
share one interim scheduler: another stream's final holds every interim back,
and a queued interim takes all the audio that arrived while it waited."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from services.asr.results import (Audio, EndOfUtterance, Flush, InvalidRequest, Result,
                                  StreamConfig, Transcript, Word)
from services.asr.observers import NullObserver
from services.asr.session import RecognitionSession, SessionLimits
from services.asr.engine import Cancelled, Unreliable

RATE = 16000


def pcm(ms: int, value: int = 1000) -> bytes:
    return np.full(RATE * ms // 1000, value, dtype="<i2").tobytes()


def words_for(audio: np.ndarray) -> list[str]:
    """The fake model 'hears' one word per 250 ms."""
    return [f"w{i}" for i in range(int(audio.size / RATE * 4))]


class FakeEngine:
    """Implements the Transcriber interface; gates let a test hold a pass mid-flight."""

    languages = frozenset({"en", "de"})

    def __init__(self) -> None:
        self.interim_pool = ThreadPoolExecutor(4)
        self.final_pool = ThreadPoolExecutor(4)
        self.interim_gate = threading.Event()
        self.interim_gate.set()
        self.final_gates: dict[int, threading.Event] = {}   # by final call number
        self.interim_started = threading.Event()
        self.lock = threading.Lock()
        self.active_interims = self.max_active_interims = 0
        self.interim_sizes: list[int] = []
        self.batches: list[list[int]] = []
        self.final_sizes: list[int] = []
        self.final_words: list[bool] = []
        self.final_redo: list[bool] = []
        self.final_trim: list[bool] = []   # False: asked straight for the full window
        self.unreliable_finals: set[int] = set()   # indexes of final passes whose trimmed decode is unreliable
        self.cancelled = threading.Event()
        self.fail_final = False

    def transcribe_interim(self, audio, language, cancel) -> Transcript:
        with self.lock:
            self.active_interims += 1
            self.max_active_interims = max(self.max_active_interims, self.active_interims)
            self.interim_sizes.append(audio.size)
        self.interim_started.set()
        try:
            while not self.interim_gate.wait(0.005):
                if cancel.is_set():
                    self.cancelled.set()
                    raise Cancelled()
            return Transcript(" ".join(words_for(audio)), model_seconds=0.01)
        finally:
            with self.lock:
                self.active_interims -= 1

    def transcribe_interims(self, items) -> list:
        """A batch (batching.py): recorded, then each item as a pass of its own."""
        self.batches.append([it.audio.size for it in items])
        out: list = []
        for it in items:
            try:
                out.append(self.transcribe_interim(it.audio, it.language, it.cancel))
            except Exception as exc:
                out.append(exc)
        return out

    def transcribe_final(self, audio, language, beam_size, cancel, words=True, redo=True,
                         background=False, trim=True) -> Transcript:
        with self.lock:
            n = len(self.final_sizes)
            self.final_sizes.append(audio.size)
            self.final_words.append(words)
            self.final_redo.append(redo)
            self.final_trim.append(trim)
        if trim and n in self.unreliable_finals:   # the real engine: redone on the full window, or raised
            if not redo:
                raise Unreliable()
            self.final_sizes.append(audio.size)
        gate = self.final_gates.get(n)
        while gate is not None and not gate.wait(0.005):
            if cancel.is_set():
                self.cancelled.set()
                raise Cancelled()
        if self.fail_final:
            raise RuntimeError("model exploded")
        ws = words_for(audio)
        return Transcript(" ".join(ws), tuple(Word(w, i * 250, i * 250 + 200, 0.9) for i, w in enumerate(ws)),
                          model_seconds=0.02)


class Stream:
    """Drives a session like a client: send events, read results as they come."""

    def __init__(self, engine: FakeEngine, limits: SessionLimits = SessionLimits(), clock=None,
                 interims=None, observer=None, batcher=None) -> None:
        self.session = RecognitionSession(engine, limits, observer, clock=clock, interims=interims,
                                          batcher=batcher)
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.results: list[Result] = []
        self.error: BaseException | None = None
        self._gen = self.session.run(self._events())
        self.task = asyncio.create_task(self._consume())

    async def _events(self):
        while (ev := await self.inbox.get()) is not None:
            yield ev

    async def _consume(self) -> None:
        try:
            async for r in self._gen:
                self.results.append(r)
        except InvalidRequest as exc:
            self.error = exc

    def send(self, *events) -> None:
        for ev in events:
            self.inbox.put_nowait(ev)

    async def settle(self, engine: FakeEngine) -> None:
        """Let queued events and in-flight passes finish (no timing asserted)."""
        for _ in range(400):
            await asyncio.sleep(0.002)
            if self.inbox.empty() and engine.active_interims == 0 and not _busy(self.session):
                await asyncio.sleep(0.002)
                if engine.active_interims == 0 and not _busy(self.session):
                    return

    async def close(self) -> list[Result]:
        self.inbox.put_nowait(None)
        await asyncio.wait_for(self.task, 10)
        return self.results


def _busy(session: RecognitionSession) -> bool:
    return any(not t.done() for t in session._owned.tasks)


CFG = StreamConfig(language="en", interim_results=True, interim_interval_ms=400)


async def test_interims_every_interval_of_new_audio_with_agreement_fields() -> None:
    eng = FakeEngine()
    s = Stream(eng)
    s.send(CFG)
    for _ in range(100):                     # 2 s in 20 ms chunks
        s.send(Audio(pcm(20)))
        await s.settle(eng)
    results = await s.close()
    interims = [r for r in results if not r.is_final]
    assert [r.audio_processed_ms for r in interims] == [400, 800, 1200, 1600, 2000]
    assert interims[1].text == "w0 w1 w2"
    assert interims[2].changed_words == 0 and interims[2].stability > 0
    final = results[-1]
    assert final.is_final and final.text == " ".join(f"w{i}" for i in range(8))
    assert final.words[1] == Word("w1", 250, 450, 0.9)
    assert eng.max_active_interims == 1


async def test_no_interims_unless_asked() -> None:
    eng = FakeEngine()
    s = Stream(eng)
    s.send(StreamConfig(language="en"), Audio(pcm(1500)), EndOfUtterance())
    results = await s.close()
    assert [r.is_final for r in results] == [True]
    assert eng.interim_sizes == []


async def test_one_interim_in_flight_per_stream() -> None:
    eng = FakeEngine()
    eng.interim_gate.clear()
    s = Stream(eng)
    s.send(CFG)
    for _ in range(50):
        s.send(Audio(pcm(40)))
    await asyncio.to_thread(eng.interim_started.wait, 5)
    await asyncio.sleep(0.05)
    assert len(eng.interim_sizes) == 1       # later audio did not queue more passes
    eng.interim_gate.set()
    await s.settle(eng)
    await s.close()
    assert eng.max_active_interims == 1
    # The pass after the blocked one covered everything that arrived meanwhile.
    assert eng.interim_sizes[1] == 2 * RATE


async def test_final_does_not_wait_for_a_running_interim_and_stale_interims_are_dropped() -> None:
    eng = FakeEngine()
    eng.interim_gate.clear()
    s = Stream(eng)
    s.send(CFG, Audio(pcm(1000)))
    await asyncio.to_thread(eng.interim_started.wait, 5)
    s.send(EndOfUtterance())
    for _ in range(500):
        if s.results:
            break
        await asyncio.sleep(0.002)
    assert s.results and s.results[0].is_final     # arrived while the interim was still held
    assert s.results[0].audio_processed_ms == 1000
    eng.interim_gate.set()
    await s.settle(eng)
    results = await s.close()
    assert all(r.is_final for r in results if r.utterance_index == 0)


async def test_buffer_resets_at_each_end_of_utterance() -> None:
    eng = FakeEngine()
    s = Stream(eng)
    s.send(StreamConfig(), Audio(pcm(1000)), EndOfUtterance(), Audio(pcm(500)), EndOfUtterance())
    results = await s.close()
    assert [(r.utterance_index, r.audio_processed_ms, r.is_final) for r in results] == [
        (0, 1000, True), (1, 500, True)]
    assert eng.final_sizes == [RATE, RATE // 2]
    assert results[1].text == "w0 w1"


async def test_half_close_with_pending_audio_gives_a_final() -> None:
    eng = FakeEngine()
    s = Stream(eng)
    s.send(StreamConfig(), Audio(pcm(750)))
    results = await s.close()
    assert [(r.is_final, r.audio_processed_ms) for r in results] == [(True, 750)]


async def test_empty_utterance_gives_an_empty_final_without_a_model_call() -> None:
    eng = FakeEngine()
    s = Stream(eng)
    s.send(StreamConfig(), EndOfUtterance())
    results = await s.close()
    assert [(r.is_final, r.text, r.utterance_index) for r in results] == [(True, "", 0)]
    assert eng.final_sizes == []


async def test_long_utterance_is_finalised_at_the_limit() -> None:
    eng = FakeEngine()
    s = Stream(eng, SessionLimits(max_utterance_s=1.0))
    s.send(StreamConfig(), Audio(pcm(1200)), Audio(pcm(1300)))
    results = await s.close()
    assert [(r.utterance_index, r.audio_processed_ms) for r in results] == [
        (0, 1000), (1, 1000), (2, 500)]


async def test_finals_keep_utterance_order_when_a_later_one_is_faster() -> None:
    eng = FakeEngine()
    slow = threading.Event()
    eng.final_gates[0] = slow
    s = Stream(eng)
    s.send(StreamConfig(), Audio(pcm(1000)), EndOfUtterance(), Audio(pcm(500)), EndOfUtterance())
    for _ in range(500):
        if len(eng.final_sizes) == 2:
            break
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.05)
    assert s.results == []                   # the second final waits for the first
    slow.set()
    results = await s.close()
    assert [r.utterance_index for r in results] == [0, 1]


async def test_closing_the_stream_cancels_the_model_work() -> None:
    eng = FakeEngine()
    eng.interim_gate.clear()
    s = Stream(eng)
    s.send(CFG, Audio(pcm(1000)))
    await asyncio.to_thread(eng.interim_started.wait, 5)
    s.task.cancel()                          # the client went away
    with pytest.raises(asyncio.CancelledError):
        await s.task
    await s._gen.aclose()
    assert await asyncio.to_thread(eng.cancelled.wait, 5)


async def test_model_failure_ends_the_stream_with_the_error() -> None:
    eng = FakeEngine()
    eng.fail_final = True
    s = Stream(eng)
    s.send(StreamConfig(), Audio(pcm(500)), EndOfUtterance())
    with pytest.raises(RuntimeError, match="model exploded"):
        await s.close()


@pytest.mark.parametrize("events, message", [
    ([Audio(pcm(20))], "first message must be a RecognitionConfig"),
    ([EndOfUtterance()], "first message must be a RecognitionConfig"),
    ([StreamConfig(), StreamConfig()], "sent twice"),
    ([StreamConfig(), Audio(b"\x00\x01\x02")], "odd count"),
    ([StreamConfig(sample_rate_hz=8000)], "send 16000 Hz PCM16 mono"),
    ([StreamConfig(beam_size=11)], "beam_size 11 is out of range"),
    ([StreamConfig(beam_size=-1)], "beam_size -1 is out of range"),
    ([StreamConfig(language="xx")], "unknown language code 'xx'"),
    ([StreamConfig(interim_interval_ms=501)], "interim_interval_ms 501 is out of range"),
    ([], "without a RecognitionConfig"),
])
async def test_bad_input_is_rejected_with_what_was_wrong(events, message) -> None:
    eng = FakeEngine()
    s = Stream(eng)
    s.send(*events)
    await s.close()
    assert s.error is not None and message in str(s.error)


async def test_valid_config_values_are_accepted() -> None:
    eng = FakeEngine()
    s = Stream(eng)
    s.send(StreamConfig(language="de", beam_size=10, sample_rate_hz=16000, interim_interval_ms=500),
           Audio(pcm(300)), EndOfUtterance())
    results = await s.close()
    assert s.error is None and results[-1].is_final
    assert s.session.config is not None and s.session.config.beam_size == 10


# -- flush: a provisional final while the utterance stays open ------------------------------

NO_INTERIMS = StreamConfig(language="en", interim_results=False)


async def test_flush_sends_a_provisional_result_and_keeps_the_utterance_open() -> None:
    eng = FakeEngine()
    s = Stream(eng)
    s.send(NO_INTERIMS, Audio(pcm(1000)), Flush())
    await s.settle(eng)
    s.send(Audio(pcm(500)), EndOfUtterance())
    results = await s.close()
    prov, final = results
    assert prov.provisional and not prov.is_final and prov.text == "w0 w1 w2 w3"
    assert prov.audio_processed_ms == 1000 and prov.utterance_index == 0
    # a plain end of utterance transcribes everything again, the flush's audio and what came after
    assert final.is_final and not final.provisional and final.audio_processed_ms == 1500
    assert eng.final_sizes == [RATE, RATE * 3 // 2]


async def test_an_unreliable_flush_is_not_redone_and_its_final_transcribes_anew() -> None:
    """Invariant: a flush pass (a barge-in's confirmation, a provisional final)
    is never redone on the full 30 s window; an unreliable one sends no text,
    is counted, and a final that would adopt it transcribes the audio itself,
    straight on the full window (its trimmed decode of the same speech would
    loop again: 2026-12-07, ~1 s of each such turn)."""
    class Counting(NullObserver):
        unreliable = 0
        def audio(self, seconds): pass
        def interim(self, *a, **k): pass
        def final(self, rtf, eou_to_final_s): pass
        def flush_unreliable(self): self.unreliable += 1
    eng, obs = FakeEngine(), Counting()
    eng.unreliable_finals = {0}
    s = Stream(eng, observer=obs)
    s.send(NO_INTERIMS, Audio(pcm(1000)), Flush())
    await s.settle(eng)
    s.send(EndOfUtterance(use_provisional=True))
    results = await s.close()
    assert [r.provisional for r in results] == [False] and results[0].is_final
    assert results[0].audio_processed_ms == 1000
    assert eng.final_redo == [False, True] and obs.unreliable == 1
    assert eng.final_sizes == [RATE, RATE]   # one trimmed flush pass, one final pass, no redo
    assert eng.final_trim == [True, False]   # the final did not try the trimmed window again


async def test_a_final_after_an_unreliable_flush_it_does_not_adopt_tries_the_trimmed_window() -> None:
    """Only a final adopting the flush (same speech end) skips the trimmed
    pass: a plain end of utterance has more speech than the flush heard."""
    eng = FakeEngine()
    eng.unreliable_finals = {0}
    s = Stream(eng)
    s.send(NO_INTERIMS, Audio(pcm(1000)), Flush())
    await s.settle(eng)
    s.send(Audio(pcm(500)), EndOfUtterance())
    results = await s.close()
    assert [r.is_final for r in results] == [True] and results[0].audio_processed_ms == 1500
    assert eng.final_trim == [True, True]


async def test_end_of_utterance_with_use_provisional_adopts_the_running_flush() -> None:
    eng = FakeEngine()
    eng.final_gates[0] = threading.Event()        # the flush pass is held mid-flight
    s = Stream(eng)
    s.send(NO_INTERIMS, Audio(pcm(1000)), Flush(), Audio(pcm(200)), EndOfUtterance(use_provisional=True))
    await asyncio.sleep(0.05)
    assert s.results == []                        # the final waits for the flush pass
    eng.final_gates[0].set()
    results = await s.close()
    assert len(results) == 1                      # no provisional result: the final carries the text
    assert results[0].is_final and results[0].text == "w0 w1 w2 w3"
    assert results[0].audio_processed_ms == 1000  # what the flush covered
    assert eng.final_sizes == [RATE]              # one model pass, not two


async def test_a_newer_flush_replaces_one_that_has_not_started() -> None:
    eng = FakeEngine()
    eng.final_gates[0] = threading.Event()
    s = Stream(eng)
    s.send(NO_INTERIMS, Audio(pcm(500)), Flush())
    await asyncio.sleep(0.05)                     # its pass is running (held)
    s.send(Audio(pcm(500)), Flush(), Audio(pcm(500)), Flush())
    await asyncio.sleep(0.05)
    eng.final_gates[0].set()                      # the first pass ends; only the latest runs next
    await s.settle(eng)
    s.send(EndOfUtterance(use_provisional=True))
    results = await s.close()
    assert eng.final_sizes == [RATE // 2, RATE * 3 // 2]
    # the pass that ran is still sent (true text for the audio it covered), the skipped one is not
    assert [(r.provisional, r.audio_processed_ms) for r in results] == [(True, 500), (True, 1500), (False, 1500)]
    assert results[-1].is_final and results[-1].audio_processed_ms == 1500


async def test_use_provisional_without_a_flush_is_a_plain_final_and_words_can_be_omitted() -> None:
    eng = FakeEngine()
    s = Stream(eng)
    s.send(StreamConfig(language="en", omit_words=True), Audio(pcm(1000)),
           EndOfUtterance(use_provisional=True))
    results = await s.close()
    assert results[0].is_final and results[0].audio_processed_ms == 1000
    assert eng.final_words == [False]


async def test_a_flush_from_an_ended_utterance_is_not_sent_or_used() -> None:
    eng = FakeEngine()
    eng.final_gates[0] = threading.Event()
    s = Stream(eng)
    s.send(NO_INTERIMS, Audio(pcm(1000)), Flush(), Audio(pcm(1000)), EndOfUtterance())
    await asyncio.sleep(0.05)
    eng.final_gates[0].set()
    results = await s.close()
    assert [(r.is_final, r.provisional, r.audio_processed_ms) for r in results] == [(True, False, 2000)]


async def test_a_provisional_result_waits_for_the_previous_final() -> None:
    eng = FakeEngine()
    eng.final_gates[0] = threading.Event()        # utterance 0's final is held
    s = Stream(eng)
    s.send(NO_INTERIMS, Audio(pcm(1000)), EndOfUtterance(), Audio(pcm(500)), Flush())
    await asyncio.sleep(0.05)
    assert eng.final_sizes == [RATE, RATE // 2]   # the flush pass ran meanwhile...
    assert s.results == []                        # ...but its result is not sent before final 0
    eng.final_gates[0].set()
    await s.settle(eng)
    s.send(EndOfUtterance())
    results = await s.close()
    assert [(r.utterance_index, r.is_final, r.provisional) for r in results] == [
        (0, True, False), (1, False, True), (1, True, False)]


async def test_interims_rest_after_a_pass_so_they_keep_at_most_half_a_core_busy() -> None:
    from common.clock import VirtualClock

    class SlowInterims(FakeEngine):
        def transcribe_interim(self, audio, language, cancel) -> Transcript:
            tr = super().transcribe_interim(audio, language, cancel)
            return Transcript(tr.text, model_seconds=0.3)   # "took" 300 ms

    eng, clock = SlowInterims(), VirtualClock()
    s = Stream(eng, SessionLimits(interim_max_duty=0.5), clock=clock)
    s.send(CFG)
    for _ in range(30):                       # 1.2 s of audio arrives with no time passing
        s.send(Audio(pcm(40)))
    await s.settle(eng)
    assert len(eng.interim_sizes) == 1        # one pass; the next rests 0.3 s (duty 0.5)
    await clock.advance(0.29)
    assert len(eng.interim_sizes) == 1
    await clock.advance(0.02)                 # rest over: the due audio gets its interim, no new audio needed
    await s.settle(eng)
    assert eng.interim_sizes == [int(0.4 * RATE), int(1.2 * RATE)]
    await s.close()


# -- streams sharing the process-wide interim scheduler -------------------------------------

async def test_another_streams_final_holds_interims_back_and_they_take_the_audio_at_start() -> None:
    from services.asr.interims import InterimScheduler

    eng = FakeEngine()
    eng.final_gates[0] = threading.Event()        # stream a's final is held mid-flight
    shared = InterimScheduler(1)
    a, b = Stream(eng, interims=shared), Stream(eng, interims=shared)
    a.send(NO_INTERIMS, Audio(pcm(1000)), EndOfUtterance())
    for _ in range(500):
        if eng.final_sizes:
            break
        await asyncio.sleep(0.002)
    b.send(CFG)
    for _ in range(25):                            # 1 s of b's speech while a's final runs
        b.send(Audio(pcm(40)))
    await asyncio.sleep(0.05)
    assert eng.interim_sizes == [] and shared.queued == 1   # one request, however much audio came
    eng.final_gates[0].set()
    await b.settle(eng)
    assert eng.interim_sizes == [RATE]             # all of it, taken when the pass started
    await a.close()
    await b.close()
    assert shared.queued == shared.running == shared.finals == 0


async def test_streams_granted_one_pass_are_decoded_as_one_batch_each_with_its_own_text() -> None:
    from services.asr.batching import InterimBatcher
    from services.asr.interims import InterimScheduler

    eng = FakeEngine()
    shared, batcher = InterimScheduler(1, max_batch=3), InterimBatcher(eng, eng.interim_pool)
    shared.final_started()                         # another stream's final: interims queue meanwhile
    a, b = (Stream(eng, interims=shared, batcher=batcher) for _ in range(2))
    a.send(CFG, Audio(pcm(600)))
    b.send(CFG, Audio(pcm(1000)))
    for _ in range(500):
        if shared.queued == 2:
            break
        await asyncio.sleep(0.002)
    shared.final_finished()
    await a.settle(eng)
    await b.settle(eng)
    assert eng.batches == [[int(0.6 * RATE), RATE]]   # one pass, both streams
    assert [r.text for r in a.results] == [" ".join(words_for(np.zeros(int(0.6 * RATE))))]
    assert [r.text for r in b.results] == [" ".join(words_for(np.zeros(RATE)))]
    await a.close()
    await b.close()
    assert shared.queued == shared.running == 0


async def test_the_interim_cadence_is_reported_in_speech_and_wall_time() -> None:
    from common.clock import VirtualClock

    class Seen(NullObserver):
        def __init__(self) -> None:
            self.intervals: list[tuple[float | None, float | None]] = []

        def audio(self, seconds): pass
        def final(self, rtf, eou_to_final_s): pass

        def interim(self, rtf, churn, interval_s, audio_interval_s=None) -> None:
            self.intervals.append((interval_s, audio_interval_s))

    eng, clock, seen = FakeEngine(), VirtualClock(), Seen()
    s = Stream(eng, clock=clock, observer=seen)
    s.send(CFG)
    for _ in range(60):                            # 1.2 s in real time
        s.send(Audio(pcm(20)))
        await s.settle(eng)
        await clock.advance(0.02)
    await s.close()
    assert [(None if w is None else round(w, 3), a) for w, a in seen.intervals] == [
        (None, 0.4), (0.4, 0.4), (0.4, 0.4)]


async def test_the_interim_slot_is_given_back_when_a_granted_stream_closes_at_once() -> None:

    from services.asr.interims import InterimScheduler

    eng, shared = FakeEngine(), InterimScheduler(1)
    shared.final_started()                         # another stream's final: a's interim queues
    a = Stream(eng, interims=shared)
    a.send(CFG, Audio(pcm(1000)))
    for _ in range(500):
        if shared.queued:
            break
        await asyncio.sleep(0.002)
    shared.final_finished()                        # granted: its task is created...
    for task in list(a.session._owned.tasks):            # ...and cancelled before its first step
        task.cancel()
    await asyncio.sleep(0.02)
    assert shared.running == 0
    a.task.cancel()
    await asyncio.gather(a.task, return_exceptions=True)
    await a._gen.aclose()
