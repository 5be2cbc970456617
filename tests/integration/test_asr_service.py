"""Invariants of the real ASR service process (Whisper base on CPU), driven
through gRPC with real human speech: every LibriVox clip is transcribed with
WER <= 10 % overall; interim results arrive while audio is still streaming,
at most ~500 ms of audio apart, and never revise committed words; one stream
carries several utterances; every malformed request gets INVALID_ARGUMENT
with a message saying what was wrong, while a concurrent good stream is
unaffected; a client cancel is seen by the server as a cancelled stream.
A flush gives a provisional result of the open utterance (after the previous
final); force_eou with use_provisional makes the flush's pass the one final,
covering only what the flush saw; omit_words gives finals without words."""
from __future__ import annotations

import asyncio
import contextlib
import re

import grpc
import jiwer
import pytest

from common.audio import read_wav
from common.stubs import asr_pb2, asr_pb2_grpc
from services.asr.client import SAMPLE_RATE, chunks, recognize, status
from tests.procs import clips, running

pytestmark = pytest.mark.slow


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def asr():
    with running("services.asr", "ASR_") as svc:
        yield svc


@pytest.fixture(scope="module")
def speech() -> list[tuple[bytes, str]]:
    out = []
    for wav, ref in clips():
        pcm, rate = read_wav(wav)
        assert rate == SAMPLE_RATE
        out.append((pcm, ref))
    assert len(out) >= 5
    return out


async def test_every_clip_is_transcribed_within_10_percent_wer(asr, speech) -> None:
    refs, hyps = [], []
    for i, (pcm, ref) in enumerate(speech):
        rec = await recognize(asr.address, [pcm], chunk_ms=(20, 30, 40)[i % 3])
        finals = rec.finals
        assert len(finals) == 1 and finals[0].utterance_index == 0
        assert finals[0].audio_processed_ms == len(pcm) * 1000 // (2 * SAMPLE_RATE)
        assert finals[0].words and finals[0].words[-1].end_ms <= finals[0].audio_processed_ms + 100
        refs.append(norm(ref))
        hyps.append(norm(finals[0].text))
    wer = jiwer.wer(refs, hyps)
    print(f"WER over {len(refs)} clips: {wer:.3f}")
    assert wer <= 0.10, list(zip(refs, hyps))


async def test_interims_arrive_while_streaming_and_do_not_churn(asr, speech) -> None:
    pcm, ref = max(speech, key=lambda s: len(s[0]))        # the ~7 s clip, at real-time pace
    rec = await recognize(asr.address, [pcm], chunk_ms=20, realtime=True)
    interims = rec.interims(0)
    early = [r for r in interims if r.at < rec.last_chunk_at[0]]
    assert len(early) >= 5, "interims must arrive while the audio is still being sent"
    covered = [r.response.audio_processed_ms for r in early]
    assert covered == sorted(covered)
    # At least every ~500 ms of new speech (+ one chunk of slack for chunk boundaries),
    # or, where one pass takes longer than that on this host, the next one starts as
    # soon as it ends: a gap is the audio that arrived during the pass before it (its
    # processing_ms) plus ~120 ms of hand-over. A slower host (2026-12-02: passes of
    # 450-600 ms on the 7 s clip, gaps of 560 ms) stretches the cadence; a service
    # that idles between passes fails. 9 in 10 gaps within bound (a pass may be
    # slowed by other processes), none beyond max(1 s, the slowest pass + 250 ms).
    procs = [0.0] + [r.response.processing_ms for r in early]
    gaps = [b - a for a, b in zip([0] + covered, covered)]
    over = sorted(g - max(520.0, p + 120.0) for g, p in zip(gaps, procs))
    assert over[int(0.9 * (len(over) - 1))] <= 0, list(zip(gaps, [round(p) for p in procs]))
    assert max(gaps) <= max(1000.0, max(procs) + 250.0), list(zip(gaps, [round(p) for p in procs]))
    # Committed words (stability * words) are never revised by a later interim.
    prev: list[str] = []
    for r in interims:
        words = r.response.text.split()
        assert [norm(w) for w in words[:len(prev)]] == [norm(w) for w in prev], (prev, words)
        prev = words[:round(r.response.stability * len(words))]
    assert jiwer.wer(norm(ref), norm(rec.finals[0].text)) <= 0.10


async def test_two_utterances_on_one_stream(asr, speech) -> None:
    (a, ref_a), (b, ref_b) = speech[1], speech[4]
    rec = await recognize(asr.address, [a, b], chunk_ms=40)
    finals = rec.finals
    assert [f.utterance_index for f in finals] == [0, 1]
    assert jiwer.wer(norm(ref_a), norm(finals[0].text)) <= 0.15
    assert jiwer.wer(norm(ref_b), norm(finals[1].text)) <= 0.15
    # Word times count from each utterance's own first sample.
    assert finals[1].words[0].start_ms < 1000
    assert all(r.response.utterance_index == 1 for r in rec.received[rec.received.index(
        next(r for r in rec.received if r.response.is_final)) + 1:])


async def test_half_close_without_force_eou_still_gives_a_final(asr, speech) -> None:
    pcm, ref = speech[3]
    rec = await recognize(asr.address, [pcm], force_eou=False,
                          config=asr_pb2.RecognitionConfig(language="en", beam_size=1))
    assert len(rec.finals) == 1
    assert jiwer.wer(norm(ref), norm(rec.finals[0].text)) <= 0.15


def _req(**kw) -> asr_pb2.RecognizeRequest:
    return asr_pb2.RecognizeRequest(**kw)


CFG = _req(config=asr_pb2.RecognitionConfig(language="en"))
AUDIO = _req(audio=b"\x00\x00" * 320)
EOU = _req(control=asr_pb2.Control(force_eou=True))
# The offending message is the last one each client sends: a grpc.aio client that
# writes after the server has ended the call reports INTERNAL "Internal error from
# Core" instead of the server's status (grpc/grpc#36066), a client-side bug.
BAD = {
    "missing config": ([AUDIO], "first message must be a RecognitionConfig"),
    "control before config": ([EOU], "first message must be a RecognitionConfig"),
    "config twice": ([CFG, AUDIO, CFG], "sent twice"),
    "sample rate": ([_req(config=asr_pb2.RecognitionConfig(sample_rate_hz=44100))],
                    "send 16000 Hz PCM16 mono"),
    "odd byte count": ([CFG, _req(audio=b"\x00" * 641)], "641 bytes, an odd count"),
    "beam size": ([_req(config=asr_pb2.RecognitionConfig(beam_size=12))], "beam_size 12 is out of range"),
    "language": ([_req(config=asr_pb2.RecognitionConfig(language="klingon"))],
                 "unknown language code 'klingon'"),
    "interim interval": ([_req(config=asr_pb2.RecognitionConfig(interim_interval_ms=800))],
                         "interim_interval_ms 800 is out of range"),
    "empty request": ([CFG, _req()], "set one of config, audio or control"),
    "force_eou with flush": ([CFG, AUDIO, _req(control=asr_pb2.Control(force_eou=True, flush=True))],
                             "Control sets both force_eou and flush"),
    "use_provisional without force_eou": (
        [CFG, AUDIO, _req(control=asr_pb2.Control(use_provisional=True))],
        "Control.use_provisional needs force_eou"),
    "use_provisional with flush": (
        [CFG, AUDIO, _req(control=asr_pb2.Control(flush=True, use_provisional=True))],
        "Control.use_provisional needs force_eou"),
}


async def _run_raw(address: str, requests: list[asr_pb2.RecognizeRequest]) -> list:
    async def gen():
        for r in requests:
            yield r
    async with grpc.aio.insecure_channel(address) as ch:
        return [r async for r in asr_pb2_grpc.RecognizerStub(ch).StreamingRecognize(gen(), timeout=60)]


@pytest.mark.parametrize("case", sorted(BAD))
async def test_malformed_request_gets_invalid_argument(asr, case) -> None:
    requests, message = BAD[case]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _run_raw(asr.address, requests)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


async def test_a_bad_stream_does_not_disturb_a_concurrent_good_one(asr, speech) -> None:
    pcm, ref = speech[0]
    before = await status(asr.address)

    async def bad() -> grpc.StatusCode:
        await asyncio.sleep(0.3)      # while the good stream is mid-way
        try:
            await _run_raw(asr.address, [CFG, AUDIO, _req(audio=b"\x01")])
        except grpc.aio.AioRpcError as e:
            return e.code()
        return grpc.StatusCode.OK

    good, code = await asyncio.gather(recognize(asr.address, [pcm], chunk_ms=20, realtime=True), bad())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert jiwer.wer(norm(ref), norm(good.finals[0].text)) <= 0.10
    after = await status(asr.address)
    assert after.failed_streams == before.failed_streams + 1
    assert after.completed_streams == before.completed_streams + 1
    assert after.active_streams == 0


async def test_client_cancel_reaches_the_server(asr, speech) -> None:
    before = await status(asr.address)
    pcm, _ = speech[0]

    async def gen():
        yield asr_pb2.RecognizeRequest(config=asr_pb2.RecognitionConfig(language="en", interim_results=True))
        for c in chunks(pcm, 20):
            yield asr_pb2.RecognizeRequest(audio=c)
            await asyncio.sleep(0.02)

    async with grpc.aio.insecure_channel(asr.address) as ch:
        call = asr_pb2_grpc.RecognizerStub(ch).StreamingRecognize(gen())
        async for _ in call:          # first interim: the server is working on this stream
            break
        call.cancel()
    for _ in range(100):
        after = await status(asr.address)
        if after.cancelled_streams > before.cancelled_streams and after.active_streams == 0:
            break
        await asyncio.sleep(0.05)
    assert after.cancelled_streams == before.cancelled_streams + 1
    assert after.active_streams == 0


# -- flush: a final-quality pass while the utterance stays open ----------------------------

FLUSH = _req(control=asr_pb2.Control(flush=True))


def _ms(pcm: bytes) -> int:
    return len(pcm) * 1000 // (2 * SAMPLE_RATE)


@contextlib.asynccontextmanager
async def _stepped(address: str, config: asr_pb2.RecognitionConfig | None = None):
    """A stream the test writes and reads step by step (it must wait for some
    results before sending more). Every write here comes before the server
    could end the call: see grpc/grpc#36066 above."""
    async with grpc.aio.insecure_channel(address) as ch:
        call = asr_pb2_grpc.RecognizerStub(ch).StreamingRecognize(timeout=120)
        await call.write(_req(config=config or asr_pb2.RecognitionConfig(
            language="en", interim_results=True)))
        yield call


async def _send(call, pcm: bytes) -> None:
    for c in chunks(pcm, 20):      # as fast as the server reads: no real-time pacing
        await call.write(_req(audio=c))


async def _read_until(call, done) -> list[asr_pb2.RecognizeResponse]:
    """Responses up to and including the first one ``done`` accepts (or the end)."""
    got = []
    while True:
        r = await asyncio.wait_for(call.read(), 60)
        if r is grpc.aio.EOF:
            return got
        got.append(r)
        if done(r):
            return got


async def test_use_provisional_makes_the_flush_result_the_final(asr, speech) -> None:
    pcm, ref = speech[0]
    async with _stepped(asr.address) as call:
        await _send(call, pcm)
        await call.write(FLUSH)
        # Silence after the flush: the client (a VAD) knows it holds no speech,
        # so the final must be the flush's pass, which did not cover it.
        await call.write(_req(audio=bytes(SAMPLE_RATE)))   # 500 ms
        await call.write(_req(control=asr_pb2.Control(force_eou=True, use_provisional=True)))
        await call.done_writing()
        got = await _read_until(call, lambda r: False)
    assert await call.code() == grpc.StatusCode.OK
    finals = [r for r in got if r.is_final]
    assert [r for r in got if r.provisional] == [], "the adopted flush is sent once, as the final"
    assert len(finals) == 1 and finals[0].utterance_index == 0 and not finals[0].provisional
    assert finals[0].audio_processed_ms == _ms(pcm)
    assert jiwer.wer(norm(ref), norm(finals[0].text)) <= 0.10, finals[0].text
    # Word timings come with the adopted final too (the default), inside what it covered.
    assert finals[0].words and finals[0].words[-1].end_ms <= _ms(pcm) + 100
    assert got[-1] is finals[0]


async def test_flush_gives_a_provisional_result_and_the_utterance_goes_on(asr, speech) -> None:
    (a, ref_a), (b, ref_b) = speech[1], speech[4]
    async with _stepped(asr.address) as call:
        await _send(call, a)
        await call.write(FLUSH)
        # A provisional result is only sent while its utterance is open: wait for it.
        first = await _read_until(call, lambda r: r.provisional or r.is_final)
        await _send(call, b)
        await call.write(EOU)
        await call.done_writing()
        rest = await _read_until(call, lambda r: False)
    assert await call.code() == grpc.StatusCode.OK
    prov = first[-1]
    assert prov.provisional and not prov.is_final and prov.utterance_index == 0
    assert prov.audio_processed_ms == _ms(a) and prov.stability == 1.0 and not prov.words
    assert jiwer.wer(norm(ref_a), norm(prov.text)) <= 0.15, prov.text
    assert [r for r in rest if r.provisional] == []
    finals = [r for r in rest if r.is_final]
    assert len(finals) == 1 and finals[0].utterance_index == 0 and not finals[0].provisional
    # A plain force_eou transcribes the whole utterance: both clips, the flushed one too.
    final = finals[0]
    assert final.audio_processed_ms == _ms(a + b)
    assert jiwer.wer(norm(ref_a + " " + ref_b), norm(final.text)) <= 0.15, final.text
    assert final.words[0].start_ms < _ms(a) < final.words[-1].end_ms <= _ms(a + b) + 100


async def test_omit_words_gives_finals_without_word_timings(asr, speech) -> None:
    pcm, ref = speech[4]
    bare = await recognize(asr.address, [pcm],
                           config=asr_pb2.RecognitionConfig(language="en", omit_words=True))
    full = await recognize(asr.address, [pcm], config=asr_pb2.RecognitionConfig(language="en"))
    assert len(bare.finals) == 1 and len(full.finals) == 1
    assert list(bare.finals[0].words) == []
    assert len(full.finals[0].words) == len(norm(full.finals[0].text).split())
    # Only the alignment pass is skipped: the text is the same beam search's. Two passes
    # need not agree word for word on every CPU, so: both accurate, at most a word apart.
    assert jiwer.wer(norm(ref), norm(bare.finals[0].text)) <= 0.10
    assert jiwer.wer(norm(ref), norm(full.finals[0].text)) <= 0.10
    assert jiwer.wer(norm(full.finals[0].text), norm(bare.finals[0].text)) <= 1 / len(ref.split())
    assert bare.finals[0].audio_processed_ms == _ms(pcm)


async def test_a_provisional_result_comes_after_the_previous_final(asr, speech) -> None:
    # A flush of a short next utterance finishes before the long previous final:
    # its result must still wait, so results stay in utterance order.
    (long, ref), (short, _) = max(speech, key=lambda s: len(s[0])), speech[1]
    async with _stepped(asr.address, asr_pb2.RecognitionConfig(language="en")) as call:
        await _send(call, long)
        await call.write(EOU)
        await call.write(_req(audio=short[:2 * SAMPLE_RATE]))   # its first second
        await call.write(FLUSH)
        got = await _read_until(call, lambda r: r.provisional)
        await call.write(EOU)
        await call.done_writing()
        got += await _read_until(call, lambda r: False)
    assert [(r.utterance_index, r.is_final, r.provisional) for r in got] == [
        (0, True, False), (1, False, True), (1, True, False)]
    assert got[1].audio_processed_ms == got[2].audio_processed_ms == 1000
    assert jiwer.wer(norm(ref), norm(got[0].text)) <= 0.10


async def test_the_gateway_client_serialises_writes_from_several_tasks(asr, speech) -> None:
    """The gateway writes to one ASR stream from several tasks (audio from its
    input task; flush and end of utterance from its VAD reader). grpc.aio fails
    the whole call when two writes overlap (INTERNAL "Internal error from
    Core"); the client's writes must queue instead, and the stream go on."""
    from services.gateway.backends.grpc_clients import GrpcAsr
    from services.gateway.backends.types import AsrParams

    pcm, ref = speech[1]
    async with grpc.aio.insecure_channel(asr.address) as ch:
        stream = await GrpcAsr("asr", asr.address, ch, 30.0).open(AsrParams("en", 0, 1))
        pieces = [pcm[i:i + 640] for i in range(0, len(pcm), 640)]
        # every chunk, a flush and the trace context written at once from separate tasks
        await asyncio.gather(*(stream.send(p) for p in pieces[: len(pieces) // 2]),
                             stream.flush(), stream.send_trace({"traceparent": ""}))
        for p in pieces[len(pieces) // 2:]:
            await stream.send(p)
        await stream.end_utterance()
        final = None
        async for r in stream.results():
            if r.is_final:
                final = r
                break
        await stream.close()
    assert final is not None and final.utterance_index == 0
    # the chunks were written in an arbitrary order, so only check that speech came through
    assert len(norm(final.text).split()) >= len(norm(ref).split()) // 2


async def test_a_batching_service_decodes_streams_together_and_each_hears_its_own_words(speech) -> None:
    """ASR_INTERIM_BATCH (the GPU default; off on a CPU): three people talking at once
    in real time get interims from shared passes, and every stream's interims and
    final are its own speech."""
    import urllib.request

    with running("services.asr", "ASR_", {"ASR_INTERIM_BATCH": "4"}) as svc:
        picked = sorted(speech, key=lambda s: len(s[0]))[-3:]       # the three longest clips
        recs = await asyncio.gather(*(recognize(svc.address, [pcm], chunk_ms=20, realtime=True)
                                      for pcm, _ in picked))
        body = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics",
                                      timeout=5).read().decode()
    for rec, (_, ref) in zip(recs, picked):
        early = [r for r in rec.interims(0) if r.at < rec.last_chunk_at[0]]
        assert len(early) >= 3, "interims must arrive while the audio is still being sent"
        # Its own words, not another stream's: an interim covers only the speech so far and
        # greedy interims are rough ("How do you marry more amiable woman" for "Had he
        # married a more amiable woman"), so: most of its words are in this stream's
        # reference, and more of them than in any other stream's.
        words = norm(early[-1].response.text).split()
        share = [sum(w in norm(r).split() for w in words) / max(1, len(words)) for _, r in picked]
        mine = [r for _, r in picked].index(ref)
        others = max(x for i, x in enumerate(share) if i != mine)
        assert len(words) >= 3 and share[mine] >= 0.5 and share[mine] > others, \
            (early[-1].response.text, ref, share)
        assert jiwer.wer(norm(ref), norm(rec.finals[0].text)) <= 0.10
    sizes = {float(m.group(1)): float(m.group(2)) for m in re.finditer(
        r'voice_asr_interim_batch_streams_bucket\{[^}]*le="([0-9.]+)"[^}]*\} ([0-9.e+]+)', body)}
    # Some pass carried more than one stream (the histogram's count above le=1).
    assert sizes and sizes[max(sizes)] > sizes[1.0], sizes
