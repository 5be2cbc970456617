"""The release quality probes against the real ASR and TTS services.

Invariant: on real models, a canary identical to stable (the same service as
both) passes both probes, with the WERs the probes report below their
ceiling: the ASR clips' WER and the TTS round trip through the ASR. (Failing
scores are tested in tests/unit/test_release_probes.py.)"""
from __future__ import annotations

import pytest

from release.judge import PASS
from release.probes import Prober
from tests.procs import running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def asr():
    with running("services.asr", "ASR_") as svc:
        yield svc


@pytest.fixture(scope="module")
def tts():
    with running("services.tts", "TTS_") as svc:
        yield svc


async def test_asr_probe_on_the_real_clips(asr):
    [check] = await Prober(asr_stable=asr.address, asr_canary=asr.address)("asr")
    print("asr probe:", check.record())
    assert check.rule == "quality:asr_wer" and check.outcome == PASS, check.record()
    assert check.detail["wer_canary"] == check.detail["wer_stable"] < 0.25


async def test_tts_round_trip_probe(asr, tts):
    [check] = await Prober(asr_stable=asr.address, tts_stable=tts.address, tts_canary=tts.address)("tts")
    print("tts probe:", check.record())
    assert check.rule == "quality:tts_roundtrip_wer" and check.outcome == PASS, check.record()
    assert check.detail["wer_canary"] < 0.25
