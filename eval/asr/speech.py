"""The speech an ASR release is evaluated on, and the noise added to it.

- Bundled: the project's real clips (tests/data/speech, a human reader,
  3-7 s) and the phrases cut from them (clients/phrases.py, 2-4 words,
  0.5-2 s): short voice commands are where Whisper goes wrong.
- A folder the user points at: every ``x.wav`` (16 kHz mono PCM16) with its
  reference in ``x.txt`` beside it.

Noise: no package installed here ships recorded noise, so it is generated:
pink noise (1/f, the spectrum of room and fan noise more than white is),
from a fixed seed per utterance so every release hears the same noise,
scaled to the wanted signal-to-noise ratio over the utterance's samples."""
from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np

from clients.clips import SPEECH, clips
from clients.phrases import load_phrases
from common.audio import pcm16_to_float, read_wav

RATE = 16000


@dataclasses.dataclass(frozen=True)
class Utterance:
    name: str
    audio: np.ndarray      # float32, 16 kHz
    text: str

    @property
    def seconds(self) -> float:
        return self.audio.size / RATE


def bundled(phrases: bool = True) -> list[Utterance]:
    out = [Utterance(p.stem, _read(p), text) for p, text in clips(SPEECH)]
    if phrases:
        out += [Utterance(p.name, audio, p.text) for p, audio in load_phrases()]
    return out


def folder(path: Path) -> list[Utterance]:
    """Every WAV with a .txt reference beside it (searched recursively)."""
    out = []
    for wav in sorted(path.rglob("*.wav")):
        ref = wav.with_suffix(".txt")
        if ref.is_file():
            out.append(Utterance(wav.relative_to(path).as_posix(), _read(wav), ref.read_text().strip()))
    if not out:
        raise FileNotFoundError(f"no .wav with a .txt reference beside it in {path}")
    return out


def _read(path: Path) -> np.ndarray:
    pcm, rate = read_wav(path)
    if rate != RATE:
        raise ValueError(f"{path}: {rate} Hz; the evaluation reads 16 kHz mono PCM16")
    return pcm16_to_float(pcm)


def pink(n: int, seed: int) -> np.ndarray:
    """Unit-RMS pink noise: white noise shaped to 1/f in the frequency domain."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return (x / (np.sqrt(np.mean(x ** 2)) or 1.0)).astype(np.float32)


def with_noise(u: Utterance, snr_db: float | None) -> np.ndarray:
    """The utterance with pink noise at ``snr_db`` (None: as recorded)."""
    if snr_db is None:
        return u.audio
    signal_rms = float(np.sqrt(np.mean(u.audio.astype(np.float64) ** 2))) or 1e-4
    noise = pink(u.audio.size, zlib.crc32(u.name.encode()))
    mixed = u.audio + noise * signal_rms / (10 ** (snr_db / 20))
    return np.clip(mixed, -1.0, 1.0).astype(np.float32)


def condition(snr_db: float | None) -> str:
    return "clean" if snr_db is None else f"snr {snr_db:g} dB"
