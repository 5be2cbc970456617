"""The ASR counts its final-quality passes by kind (metrics.py:
voice_asr_passes_total, voice_asr_pass_seconds_total,
voice_asr_flushes_adopted_total), so an operator can see how much normal-
priority CPU goes to flushes for speech that went on: a flush adopted by its
final is one pass for the utterance; a flush the speech outran is one more."""
from __future__ import annotations

from services.asr.observers import NullObserver
from services.asr.results import Audio, EndOfUtterance, Flush
from tests.unit.test_asr_session import NO_INTERIMS, FakeEngine, Stream, pcm


class Passes(NullObserver):
    def __init__(self) -> None:
        self.passes: list[tuple[str, float]] = []
        self.adopted = 0

    def model_pass(self, kind: str, model_seconds: float) -> None:
        self.passes.append((kind, model_seconds))

    def flush_adopted(self) -> None:
        self.adopted += 1


async def test_an_adopted_flush_is_the_utterances_only_pass() -> None:
    eng, obs = FakeEngine(), Passes()
    s = Stream(eng, observer=obs)
    s.send(NO_INTERIMS, Audio(pcm(1000)), Flush())
    await s.settle(eng)
    s.send(EndOfUtterance(use_provisional=True))
    await s.close()
    assert obs.passes == [("flush", 0.02)] and obs.adopted == 1


async def test_a_flush_the_speech_outran_counts_beside_the_final() -> None:
    eng, obs = FakeEngine(), Passes()
    s = Stream(eng, observer=obs)
    s.send(NO_INTERIMS, Audio(pcm(1000)), Flush())
    await s.settle(eng)
    s.send(Audio(pcm(500)), EndOfUtterance())     # speech went on: a final of its own
    results = await s.close()
    assert [k for k, _ in obs.passes] == ["flush", "final"] and obs.adopted == 0
    assert results[-1].is_final and results[-1].audio_processed_ms == 1500


async def test_an_unreliable_flush_is_no_pass_and_its_final_is() -> None:
    eng, obs = FakeEngine(), Passes()
    eng.unreliable_finals = {0}
    s = Stream(eng, observer=obs)
    s.send(NO_INTERIMS, Audio(pcm(1000)), Flush())
    await s.settle(eng)
    s.send(EndOfUtterance(use_provisional=True))
    await s.close()
    assert [k for k, _ in obs.passes] == ["final"] and obs.adopted == 0
