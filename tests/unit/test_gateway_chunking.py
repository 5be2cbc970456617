"""Audio reaches the VAD in whole frames and the ASR in chunks (settings
vad_chunk_ms / asr_chunk_ms): far fewer gRPC messages than the client's
20 ms appends, and the same turn, at most a chunk later. Virtual clock,
fake engines (whose VAD decides on 10 ms frames)."""
from __future__ import annotations

from common.clock import VirtualClock
from services.gateway.fakes import FakeBackends
from services.gateway.fakes.asr import FakeAsrStream
from services.gateway.fakes.vad import FakeVadStream
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings

QUESTION = "what is the weather like today"
REPLY = "Fine, thanks. It is sunny and warm all day."
BYTES_PER_MS = 32


def _record(monkeypatch) -> dict[str, list[int]]:
    sizes: dict[str, list[int]] = {"vad": [], "asr": []}
    for name, cls in (("vad", FakeVadStream), ("asr", FakeAsrStream)):
        send = cls.send

        async def recording(self, pcm16k: bytes, _send=send, _name=name) -> None:
            sizes[_name].append(len(pcm16k))
            await _send(self, pcm16k)

        monkeypatch.setattr(cls, "send", recording)
    return sizes


async def _turn(chunked: bool, **settings):
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[(0.5, 2.5)], texts=[QUESTION], replies=(REPLY,))
    gs = GatewaySettings(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, **settings)
    async with ScriptedSession(b, clock, gs, chunked=chunked) as s:
        await s.run_audio(6.0)
        transcripts = [e.event["transcript"]
                       for e in s.of("conversation.item.input_audio_transcription.completed")]
        return transcripts, s.b.llm.requested_at, len(s.of("response.done"))


async def test_whole_vad_frames_and_asr_chunks_give_the_same_turn(monkeypatch):
    sizes = _record(monkeypatch)
    plain = await _turn(False)
    plain_msgs = {k: len(v) for k, v in sizes.items()}
    sizes["vad"].clear(), sizes["asr"].clear()
    text, requested, done = await _turn(True, vad_chunk_ms=30, asr_chunk_ms=100)

    assert sizes["vad"] and all(n % (30 * BYTES_PER_MS) == 0 for n in sizes["vad"])
    assert sum(sizes["vad"]) >= (6000 - 30) * BYTES_PER_MS     # nothing lost, a part-frame held at most
    # The ASR's chunks are 100 ms or more but for the rest sent before a flush or end.
    short = [n for n in sizes["asr"] if n < 100 * BYTES_PER_MS]
    assert len(short) <= 3, short
    assert len(sizes["vad"]) < plain_msgs["vad"] * 0.7 and len(sizes["asr"]) < plain_msgs["asr"] * 0.3
    assert (text, done) == (plain[0], plain[2]) == ([QUESTION], 1)
    # The VAD decides a frame at most a chunk later; the ASR's final comes from the flush either way.
    assert len(requested) == 1 and 0 <= requested[0] - plain[1][0] <= 0.030 + 1e-6
