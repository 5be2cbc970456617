"""Invariant: a backend that accepts a call and then never answers is a
BackendError naming it within the idle deadline, never a turn that waits for
ever; a long-lived stream that owes nothing (nobody speaks) is never called
hung; and the servers' connection age limit moves new calls to a new
connection without cutting a call in flight."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from common.config import ServiceSettings
from common.server import server_options
from services.gateway.backends.deadlines import CHANNEL_KEEPALIVE, ReplyWatch
from services.gateway.backends.grpc_clients import GrpcAsr, GrpcLlm, GrpcRag, GrpcTts, GrpcVad
from services.gateway.backends.types import AsrParams, BackendError, ChatMessage, LlmUsage, VadParams
from tests.unit.grpc_backends import scripted_server

IDLE = 0.3


# -- ReplyWatch (pure) ------------------------------------------------------------------
def test_a_reply_owed_for_the_idle_time_is_a_hang():
    w = ReplyWatch(2.0)
    assert not w.hung(100.0) and w.wait_s(100.0) == 0.5   # nothing owed: just look again later
    w.expect(100.0)
    w.expect(101.0)                  # a second request does not move the first one's deadline
    assert w.wait_s(101.0) == pytest.approx(1.0)
    assert not w.hung(101.9) and w.hung(102.0)


def test_progress_restarts_the_wait_and_a_reply_clears_it():
    w = ReplyWatch(2.0)
    w.expect(0.0)
    w.progress(1.5)                  # an interim: the server is alive and working
    assert not w.hung(3.0) and w.hung(3.5)
    w.answered()
    assert not w.hung(100.0)
    w.progress(50.0)                 # progress with nothing owed owes nothing
    assert not w.hung(100.0)


# -- real gRPC clients against scripted servers ---------------------------------------
async def _drain(it) -> list:
    return [x async for x in it]


def _llm(addr: str, ch) -> GrpcLlm:
    return GrpcLlm("llm", addr, ch, 30.0, IDLE)


@pytest.mark.parametrize("mode", ["hang", "hang_after_one"])
async def test_a_hung_llm_stream_fails_naming_the_llm(mode):
    async with scripted_server() as (addr, modes):
        modes.llm = mode
        async with grpc.aio.insecure_channel(addr) as ch:
            t0 = time.monotonic()
            with pytest.raises(BackendError) as ei:
                await _drain(_llm(addr, ch).generate([ChatMessage("user", "hi")], [], 10, "r", LlmUsage()))
            assert time.monotonic() - t0 < IDLE + 1.0
    assert ei.value.backend == "llm" and addr in ei.value.message and "no token" in ei.value.message


async def test_a_healthy_llm_stream_is_not_cut():
    async with scripted_server() as (addr, _):
        async with grpc.aio.insecure_channel(addr) as ch:
            usage = LlmUsage()
            text = await _drain(_llm(addr, ch).generate([ChatMessage("user", "hi")], [], 10, "r", usage))
    assert "".join(text) == "Hello there." and usage.finish_reason == "stop"


async def test_a_hung_tts_stream_fails_naming_the_tts():
    async with scripted_server() as (addr, modes):
        modes.tts = "hang_after_one"
        async with grpc.aio.insecure_channel(addr) as ch:
            got = []
            with pytest.raises(BackendError) as ei:
                async for piece in GrpcTts("tts", addr, ch, 30.0, IDLE).synthesize("Hi.", "", 1.0):
                    got.append(piece)
    assert len(got) == 1 and ei.value.backend == "tts" and "no audio" in ei.value.message


async def test_a_hung_rag_search_fails_at_its_deadline():
    async with scripted_server() as (addr, modes):
        modes.rag = "hang"
        async with grpc.aio.insecure_channel(addr) as ch:
            with pytest.raises(BackendError) as ei:
                await GrpcRag("rag", addr, ch, 0.3).search("q", 3, 0.0)
    assert ei.value.backend == "rag" and "deadline_exceeded" in ei.value.message


async def _asr_results(stream, into: list) -> None:
    async for r in stream.results():
        into.append(r)


async def test_an_asr_stream_that_owes_nothing_is_never_hung_and_one_that_owes_a_final_is():
    async with scripted_server() as (addr, modes):
        async with grpc.aio.insecure_channel(addr) as ch:
            client = GrpcAsr("asr", addr, ch, 30.0, IDLE)
            stream = await client.open(AsrParams("en"))
            got: list = []
            reader = asyncio.create_task(_asr_results(stream, got))
            await stream.send(b"\0\0" * 1600)
            await asyncio.sleep(IDLE * 4)          # silence owes nothing
            assert not reader.done()
            await stream.end_utterance()           # answered: a final
            await asyncio.sleep(IDLE * 2)
            assert not reader.done() and [r.is_final for r in got] == [True]
            modes.asr = "hang"
            await stream.end_utterance()           # owed, never answered
            with pytest.raises(BackendError) as ei:
                await asyncio.wait_for(reader, IDLE * 1.25 + 1.0)
            await stream.close()
    assert ei.value.backend == "asr" and "no reply" in ei.value.message


async def _vad_events(stream, into: list) -> None:
    async for ev in stream.events():
        into.append(ev)


async def test_a_vad_that_acknowledges_its_audio_is_never_hung_and_one_that_stops_is():
    """Silence brings no VAD events, so only its progress responses tell a
    quiet room from a hung VAD: audio it has not acknowledged owes a reply."""
    async with scripted_server() as (addr, modes):
        async with grpc.aio.insecure_channel(addr) as ch:
            stream = await GrpcVad("vad", addr, ch, 30.0, IDLE).open(VadParams(0.5, 150, 200, 300))
            got: list = []
            reader = asyncio.create_task(_vad_events(stream, got))
            second = b"\0\0" * 16000
            for _ in range(4):                     # 4 s of silence, each second acknowledged
                await stream.send(second)
                await asyncio.sleep(IDLE / 2)
            await asyncio.sleep(IDLE * 2)
            assert not reader.done() and got == []     # progress is not an event
            assert stream.acked_ms == 4000
            await asyncio.sleep(IDLE * 2)
            assert not reader.done()               # nothing sent, nothing owed: a client may pause
            modes.vad = "hang"
            t0 = time.monotonic()
            for _ in range(2):                     # 2 s of audio, never acknowledged
                await stream.send(second)
            with pytest.raises(BackendError) as ei:
                await asyncio.wait_for(reader, IDLE * 1.25 + 1.0)
            assert time.monotonic() - t0 >= IDLE
            await stream.close()
    assert ei.value.backend == "vad" and "no reply" in ei.value.message


# -- keepalive and connection age -----------------------------------------------------
def test_the_servers_accept_the_gateways_ping_rate():
    """A server refusing pings more often than the client sends them closes the
    connection with GOAWAY too_many_pings, every KEEPALIVE_TIME_MS."""
    server = dict(server_options(ServiceSettings()))
    client = dict(CHANNEL_KEEPALIVE)
    assert server["grpc.http2.min_recv_ping_interval_without_data_ms"] < client["grpc.keepalive_time_ms"]
    assert server["grpc.keepalive_permit_without_calls"] == 1
    # Strikes never close the connection: a GOAWAY too_many_pings cut a
    # session's ASR stream mid-utterance in CI (the utterance was lost).
    assert server["grpc.http2.max_ping_strikes"] == 0
    assert server["grpc.max_connection_age_ms"] == 300_000
    assert "grpc.max_connection_age_ms" not in dict(server_options(ServiceSettings(max_connection_age_s=0)))
    # No grace limit: a session's ASR stream must not be cut when its connection ages.
    assert "grpc.max_connection_age_grace_ms" not in server


async def test_a_call_outlives_its_connections_age_and_new_calls_still_work():
    opts = server_options(ServiceSettings(max_connection_age_s=0.2))
    async with scripted_server(opts) as (addr, _):
        async with grpc.aio.insecure_channel(addr, options=CHANNEL_KEEPALIVE) as ch:
            stream = await GrpcAsr("asr", addr, ch, 30.0, 5.0).open(AsrParams("en"))
            got: list = []
            reader = asyncio.create_task(_asr_results(stream, got))
            await asyncio.sleep(0.6)                 # the connection is past its age (GOAWAY sent)
            await stream.end_utterance()
            for _ in range(50):
                if got:
                    break
                await asyncio.sleep(0.02)
            assert [r.is_final for r in got] == [True] and not reader.done()
            passages = await GrpcRag("rag", addr, ch, 2.0).search("q", 3, 0.0)   # a new call
            assert [p.source for p in passages] == ["a.md"]
            await stream.close()
            await asyncio.wait_for(reader, 2.0)


async def test_with_vad_progress_off_nothing_is_owed_for_an_older_vad():
    """GATEWAY_VAD_IDLE_TIMEOUT_S=0: no progress asked (a VAD older than
    VadConfig.progress_ms never sends any), so its silence is never a hang."""
    async with scripted_server() as (addr, modes):
        modes.vad = "hang"                         # what an older VAD looks like: no progress, ever
        async with grpc.aio.insecure_channel(addr) as ch:
            stream = await GrpcVad("vad", addr, ch, 30.0, IDLE, progress=False).open(VadParams(0.5, 150, 200, 300))
            assert stream.progress_ms == 0
            reader = asyncio.create_task(_vad_events(stream, []))
            for _ in range(3):
                await stream.send(b"\0\0" * 16000)
            await asyncio.sleep(IDLE * 3)
            assert not reader.done()
            await stream.close()
            await asyncio.gather(reader, return_exceptions=True)


class _OneRead:
    """A server stream whose next message is the future ``msg``."""

    def __init__(self) -> None:
        self.msg: asyncio.Future = asyncio.get_running_loop().create_future()
        self.cancelled = False

    def read(self) -> asyncio.Future:
        return self.msg

    def cancel(self) -> None:
        self.cancelled = True


async def test_a_cancel_that_meets_a_message_still_cancels_the_reader():
    """The TTS reader of a response whose LLM failed is cancelled by the
    response's task group; a chunk arriving in that same instant must not
    swallow the cancel (asyncio.wait_for does on Python 3.11, gh-86296: the
    reader then waited for ever and the response never ended)."""
    from services.gateway.backends.deadlines import read_within
    call = _OneRead()
    reader = asyncio.create_task(read_within(call, 5.0, "tts", "t:1", "audio"))
    await asyncio.sleep(0)               # the reader waits in the read
    call.msg.set_result("chunk")         # the message arrives ...
    reader.cancel()                      # ... as the reader is cancelled
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_a_read_past_the_idle_time_cancels_the_call_and_names_it():
    from services.gateway.backends.deadlines import read_within
    call = _OneRead()
    with pytest.raises(BackendError, match=r"tts at t:1 .*no audio for 0.05 s"):
        await read_within(call, 0.05, "tts", "t:1", "audio")
    assert call.cancelled
