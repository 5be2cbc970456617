"""Microphone input for the browser tests: WAV files Chromium plays as its fake
capture device (--use-file-for-fake-audio-capture), built from the project's
real speech clips. Chromium loops the file, so each ends with a long silence
that outlasts the test."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from common.audio import read_wav, resample_pcm16
from tests.procs import SPEECH

RATE = 48000  # the fake device's native rate: no resampling inside Chromium
QUESTION_CLIP = "librivox-sense-0880"    # "he was not an ill disposed young man"
INTERRUPT_CLIP = "librivox-sense-0930"   # "he might even have been made amiable himself"


def clip(name: str) -> bytes:
    pcm, rate = read_wav(SPEECH / f"{name}.wav")
    return resample_pcm16(pcm, rate, RATE)


def reference(name: str) -> str:
    return (SPEECH / f"{name}.txt").read_text().strip()


def silence(seconds: float) -> bytes:
    return np.zeros(int(RATE * seconds), dtype="<i2").tobytes()


def write_wav(path: Path, pcm: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return path


def question_wav(path: Path, lead_s: float = 0.8, tail_s: float = 60.0) -> Path:
    """One question, then silence."""
    return write_wav(path, silence(lead_s) + clip(QUESTION_CLIP) + silence(tail_s))


def interruption_wav(path: Path, gap_s: float, lead_s: float = 0.8, tail_s: float = 60.0) -> Path:
    """A question, `gap_s` of silence (the reply starts playing in it), then a
    second utterance that talks over the reply."""
    return write_wav(path, silence(lead_s) + clip(QUESTION_CLIP) + silence(gap_s)
                     + clip(INTERRUPT_CLIP) + silence(tail_s))


def cough_wav(path: Path, gap_s: float, lead_s: float = 0.8, tail_s: float = 60.0) -> Path:
    """A question, then a short noise burst (a cough, not words) during the reply."""
    rng = np.random.default_rng(7)
    burst = (rng.standard_normal(int(RATE * 0.25)) * 0.15 * 32767).astype("<i2").tobytes()
    return write_wav(path, silence(lead_s) + clip(QUESTION_CLIP) + silence(gap_s) + burst + silence(tail_s))


def seconds(name: str) -> float:
    return len(clip(name)) / 2 / RATE
