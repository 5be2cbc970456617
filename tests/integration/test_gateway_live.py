"""The gateway on the real speech services, with real speech sent at real time.

Invariants: a clip followed by silence gives speech_started, speech_stopped,
a transcription close to the reference, a spoken reply and a completed
response; a second clip streamed while the reply plays clears the client's
audio, cancels the response (turn_detected), cancels the backend streams
(the services' own GetStatus counts them) and truncates the history to what
was heard; a killed backend gives an error naming it, and the session
recovers by itself once the service is back."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from pathlib import Path

import grpc
import jiwer
import pytest
import websockets

from common.audio import read_wav, resample_pcm16, silence
from common.stubs import common_pb2, llm_pb2_grpc, tts_pb2_grpc
from tests.procs import ServiceProcess, clips

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RATE = 24000
CHUNK_MS = 20
SERVICES = {"vad": ("services.vad", "VAD_"), "asr": ("services.asr", "ASR_"),
            "llm": ("services.llm", "LLM_"), "tts": ("services.tts", "TTS_"),
            "rag": ("services.rag", "RAG_")}
# The tiny default model stops early unless pushed hard towards length.
LONG_ANSWER = ("You are a storyteller. Answer every message with a long story of at least eight "
               "full sentences. Never answer briefly.")


@pytest.fixture(scope="module")
def stack():
    present = {n: m for n, m in SERVICES.items() if (ROOT / m[0].replace(".", "/") / "servicer.py").exists()}
    missing = {"vad", "asr", "llm", "tts"} - set(present)
    if missing:
        pytest.skip(f"speech services not built yet: {sorted(missing)}")
    # The services run with their defaults (ASR interims at nice 19): a barge-in
    # is confirmed by an urgent ASR flush, not by waiting for an interim.
    procs = {n: ServiceProcess(m, p) for n, (m, p) in present.items()}
    try:
        for p in procs.values():
            p.spawn()
        for p in procs.values():
            p.wait_ready()
        env = {f"GATEWAY_{n.upper()}_ADDRS": p.address for n, p in procs.items()}
        if "rag" not in procs:
            # No retrieval service yet: any SERVING server keeps /healthz green,
            # and retrieval is switched off so it is never called.
            env |= {"GATEWAY_RAG_ADDRS": procs["llm"].address, "GATEWAY_RETRIEVAL": "false"}
        gw = ServiceProcess("services.gateway", "GATEWAY_", env, grpc_service=False).start(120)
        procs["gateway"] = gw
        yield procs
    finally:
        for p in procs.values():
            p.stop()


class Client:
    """A Realtime client that records every server event with its arrival time."""

    def __init__(self, ws) -> None:
        self.ws, self.events, self._new = ws, [], asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.events.append((time.monotonic(), json.loads(raw)))
                self._new.set()

    async def send(self, **event) -> None:
        await self.ws.send(json.dumps(event))

    def at(self, type_: str, pred=lambda e: True) -> float | None:
        """Arrival time of the first such event."""
        return next((t for t, e in self.events if e["type"] == type_ and pred(e)), None)

    def of(self, type_: str) -> list[dict]:
        return [e for _, e in self.events if e["type"] == type_]

    async def wait_for(self, type_: str, timeout: float = 60.0, count: int = 1, pred=lambda e: True) -> dict:
        end = time.monotonic() + timeout
        while True:
            found = [e for e in self.of(type_) if pred(e)]
            if len(found) >= count:
                return found[count - 1]
            left = end - time.monotonic()
            if left <= 0:
                errors = [e["error"].get("message") for e in self.of("error")][-5:]
                raise AssertionError(f"no {type_} within {timeout} s; got {[e['type'] for _, e in self.events][-30:]}"
                                     f"; errors: {errors}")
            self._new.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    async def stream(self, pcm24k: bytes) -> None:
        """Send audio at real time, in 20 ms chunks on an absolute schedule."""
        n = RATE * 2 * CHUNK_MS // 1000
        t0 = time.monotonic()
        for i in range(0, len(pcm24k), n):
            await self.send(type="input_audio_buffer.append", audio=base64.b64encode(pcm24k[i:i + n]).decode())
            delay = t0 + (i // n + 1) * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def connect(stack, **session):
    async with websockets.connect(f"ws://{stack['gateway'].address}/v1/realtime?model=local",
                                  max_size=None) as ws:
        c = Client(ws)
        await c.wait_for("session.created")
        if session:
            await c.send(type="session.update", session=session)
            await c.wait_for("session.updated")
        try:
            yield c
        finally:
            await c.close()


def clip24k(index: int) -> tuple[bytes, str]:
    wav, ref = clips()[index]
    pcm, rate = read_wav(wav)
    return resample_pcm16(pcm, rate, RATE), ref


async def status(address: str, stub_cls) -> common_pb2.ServiceStatus:
    async with grpc.aio.insecure_channel(address) as ch:
        return await stub_cls(ch).GetStatus(common_pb2.StatusRequest(), timeout=5)


def norm(text: str) -> str:
    return " ".join("".join(ch for ch in text.lower() if ch.isalnum() or ch.isspace()).split())


async def test_a_clip_then_silence_gets_a_spoken_answer(stack):
    pcm, ref = clip24k(0)
    async with connect(stack) as c:
        await c.stream(pcm + silence(1500, RATE))
        started = await c.wait_for("input_audio_buffer.speech_started")
        stopped = await c.wait_for("input_audio_buffer.speech_stopped")
        assert started["item_id"] == stopped["item_id"]
        assert 0 <= started["audio_start_ms"] < stopped["audio_end_ms"] <= len(pcm) / 48 + 50
        done_tr = await c.wait_for("conversation.item.input_audio_transcription.completed")
        wer = jiwer.wer(norm(ref), norm(done_tr["transcript"]))
        assert wer <= 0.35, (ref, done_tr["transcript"])
        assert c.of("conversation.item.input_audio_transcription.delta"), "no interim transcript"
        done = await c.wait_for("response.done", timeout=90)
        assert done["response"]["status"] == "completed"
        audio = b"".join(base64.b64decode(e["delta"]) for e in c.of("response.output_audio.delta"))
        assert len(audio) > RATE * 2 * 0.5, "less than half a second of spoken reply"
        transcript = done["response"]["output"][0]["content"][0]["transcript"]
        assert transcript.strip()
        timings = json.loads(done["response"]["metadata"]["timings"])
        for key in ("endpoint_ms", "asr_final_ms", "llm_first_token_ms", "tts_first_audio_ms", "voice_to_voice_ms"):
            assert timings[key] is not None and timings[key] >= 0, key
        print("timings:", timings)


async def test_no_clip_is_split_into_two_turns(stack):
    """The endpointing split rate on the project's clips, measured through the
    real gateway, VAD and ASR: every clip must be exactly one user turn."""
    turn = {"type": "server_vad", "create_response": False}
    async with connect(stack, audio={"input": {"turn_detection": turn}}) as c:
        refs = []
        for i in range(len(clips())):
            pcm, ref = clip24k(i)
            refs.append(ref)
            await c.stream(pcm + silence(1500, RATE))
        await c.wait_for("conversation.item.input_audio_transcription.completed", count=len(refs), timeout=60)
        committed = c.of("input_audio_buffer.committed")
        print(f"split rate: {len(committed) - len(refs)} extra turns over {len(refs)} clips")
        assert len(c.of("input_audio_buffer.speech_started")) == len(refs)
        assert len(committed) == len(refs)
        assert not c.of("response.created")


async def test_second_clip_while_the_reply_plays_interrupts_it(stack):
    # The cancel must reach the services and stop their work, which can only be
    # seen while they still work. When the cancelled response never got the
    # LLM's final message (its usage has no output tokens), the LLM was cut
    # mid-answer and its service must count a cancelled stream. When the LLM had
    # finished, only a TTS call still synthesising a clause can show the cancel
    # (synthesis runs ~30x faster than real time, so it may be done too): an
    # attempt with nothing left to cancel is repeated, at most 3 times, each
    # with another question. The tiny model sometimes ends its "long story"
    # before the interruption is confirmed, and for the same question (and the
    # same retrieved passages) it writes the same story every time: 83 tokens
    # three times in one CI run once docs/ had changed.
    for attempt, question in enumerate((1, 3, 4)):
        llm_was_cut, cancelled = await _interrupt_once(stack, question)
        print(f"attempt {attempt + 1}: LLM cut mid-answer {llm_was_cut}, cancelled (llm, tts) {cancelled}")
        if llm_was_cut:
            assert cancelled[0] >= 1, "the LLM was cut mid-answer but its service saw no cancellation"
            return
        if cancelled[1] >= 1:
            return   # the TTS call in flight was cancelled on the service
    pytest.fail("in 3 attempts the reply was always generated and synthesised before the interruption "
                "was confirmed: nothing left to cancel (the model wrote short stories)")


async def _interrupt_once(stack, question: int) -> tuple[bool, tuple[int, int]]:
    first, _ = clip24k(question)
    second, second_ref = clip24k(2)
    llm_before = await status(stack["llm"].address, llm_pb2_grpc.ChatStub)
    tts_before = await status(stack["tts"].address, tts_pb2_grpc.SynthesizerStub)
    # A long story with a large token budget keeps the LLM and TTS working while
    # the user cuts in, so the cancel has something to stop on the services.
    async with connect(stack, instructions=LONG_ANSWER, max_output_tokens=1000) as c:
        await c.stream(first + silence(800, RATE))
        created = await c.wait_for("response.created", timeout=60)
        rid = created["response"]["id"]
        await c.wait_for("response.output_audio.delta", timeout=60)
        # The listener hears a second of it, the microphone open as a live one
        # is (its silence also tells the gateway's echo detector that nothing
        # played comes back, so the voice over the answer is not ducked by the
        # echo canceller: echo_detect.py), and talks over it.
        await c.stream(silence(1000, RATE) + second + silence(1500, RATE))
        cleared = await c.wait_for("output_audio_buffer.cleared", timeout=30)
        assert cleared["response_id"] == rid
        done = await c.wait_for("response.done", pred=lambda e: e["response"]["id"] == rid, timeout=30)
        llm_was_cut = not (done["response"].get("usage") or {}).get("output_tokens")
        onset = [t for t, e in c.events if e["type"] == "input_audio_buffer.speech_started"][1]
        ended = c.at("response.done", lambda e: e["response"]["id"] == rid)
        print(f"interruption: speech_started -> cleared {1000 * (c.at('output_audio_buffer.cleared') - onset):.0f} ms, "
              f"-> cancelled {1000 * (ended - onset):.0f} ms; reply tokens "
              f"{(done['response'].get('usage') or {}).get('output_tokens')}")
        assert done["response"]["status"] == "cancelled", done["response"]["status"]
        assert done["response"]["status_details"]["reason"] == "turn_detected"
        trunc = await c.wait_for("conversation.item.truncated", timeout=10)
        item_id = done["response"]["output"][0]["id"]
        assert trunc["item_id"] == item_id
        spoken = "".join(e["delta"] for e in c.of("response.output_audio_transcript.delta")
                         if e["response_id"] == rid)
        heard = done["response"]["output"][0]["content"][0]["transcript"]
        assert norm(spoken).startswith(norm(heard)) and len(heard) <= len(spoken)
        await c.send(type="conversation.item.retrieve", item_id=item_id)
        kept = await c.wait_for("conversation.item.retrieved")
        assert kept["item"]["content"][0]["transcript"] == heard
        # The interruption is the next user turn and gets its own answer.
        second_tr = await c.wait_for("conversation.item.input_audio_transcription.completed", count=2, timeout=30)
        assert jiwer.wer(norm(second_ref), norm(second_tr["transcript"])) <= 0.5
        await c.wait_for("response.created", count=2, timeout=30)
    cancelled = (0, 0)
    for _ in range(20):   # the services count the cancel once their handlers unwind
        await asyncio.sleep(0.5)
        llm_after = await status(stack["llm"].address, llm_pb2_grpc.ChatStub)
        tts_after = await status(stack["tts"].address, tts_pb2_grpc.SynthesizerStub)
        cancelled = (llm_after.cancelled_streams - llm_before.cancelled_streams,
                     tts_after.cancelled_streams - tts_before.cancelled_streams)
        if sum(cancelled):
            break
    return llm_was_cut, cancelled


async def test_a_killed_backend_is_named_and_the_session_recovers(stack):
    tts = stack["tts"]
    async with connect(stack, output_modalities=["audio"]) as c:
        await asyncio.to_thread(tts.stop)
        await c.send(type="conversation.item.create", item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]})
        await c.send(type="response.create")
        err = await c.wait_for("error", timeout=60)
        assert err["error"]["code"] == "backend_unavailable"
        assert err["error"]["message"].startswith(f"tts at {tts.address} is unavailable")
        failed = await c.wait_for("response.done", timeout=60)
        assert failed["response"]["status"] == "failed"
        await asyncio.to_thread(tts.start)            # same port: the session needs no reconnect
        await c.send(type="response.create")
        done = await c.wait_for("response.done", count=2, timeout=90)
        assert done["response"]["status"] == "completed"
        assert c.of("response.output_audio.delta")

    asr = stack["asr"]
    pcm, ref = clip24k(3)
    async with connect(stack) as c:
        await asyncio.to_thread(asr.stop)
        err = await c.wait_for("error", timeout=30)
        assert err["error"]["message"].startswith(f"asr at {asr.address} is unavailable")
        await asyncio.to_thread(asr.start)
        # The stream reopens with backoff, or, if its circuit opened while the
        # ASR was away, after the breaker's cool-down (10 s): speech before
        # then has no words ("speech without words: no turn", seen in CI).
        # The session must hear the user again within a bounded time, without
        # reconnecting: speak, and again while nothing was transcribed.
        tr = None
        for _ in range(4):
            await asyncio.sleep(5.0)
            await c.stream(pcm + silence(1500, RATE))
            with contextlib.suppress(AssertionError):
                tr = await c.wait_for("conversation.item.input_audio_transcription.completed", timeout=15)
                break
        assert tr is not None, f"not heard within 4 tries after the ASR came back: {[e['type'] for _, e in c.events]}"
        assert jiwer.wer(norm(ref), norm(tr["transcript"])) <= 0.5
