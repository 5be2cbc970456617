"""PCM16 audio helpers shared by services, gateway, tests and benchmarks."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

BYTES_PER_SAMPLE = 2


class AudioFormatError(ValueError):
    """Audio that is not what the stream was configured for; the message says why."""


def check_pcm16(data: bytes) -> None:
    if len(data) % BYTES_PER_SAMPLE:
        raise AudioFormatError(
            f"audio chunk has {len(data)} bytes, an odd count: PCM16 needs 2 bytes per sample")


def pcm16_to_float(data: bytes) -> np.ndarray:
    check_pcm16(data)
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    clipped = np.clip(samples, -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


def ms_to_samples(ms: float, rate: int) -> int:
    return int(round(ms * rate / 1000.0))


def samples_to_ms(n: int, rate: int) -> float:
    return n * 1000.0 / rate


def pcm_duration_ms(data: bytes, rate: int) -> float:
    return samples_to_ms(len(data) // BYTES_PER_SAMPLE, rate)


def resample_pcm16(data: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample a whole PCM16 buffer (soxr, high quality)."""
    if src_rate == dst_rate or not data:
        return data
    import soxr

    x = np.frombuffer(data, dtype="<i2")
    y = soxr.resample(x, src_rate, dst_rate)
    return np.asarray(y, dtype="<i2").tobytes()


class StreamResampler:
    """Chunk-by-chunk resampling without clicks at chunk borders (soxr stream)."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._rs = None
        if src_rate != dst_rate:
            import soxr

            self._rs = soxr.ResampleStream(src_rate, dst_rate, 1, dtype="int16")

    def process(self, data: bytes, last: bool = False) -> bytes:
        if self._rs is None:
            return data
        x = np.frombuffer(data, dtype="<i2")
        return np.asarray(self._rs.resample_chunk(x, last=last), dtype="<i2").tobytes()


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """Read a mono PCM16 WAV file: (pcm bytes, sample rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise AudioFormatError(f"{path}: need mono 16-bit PCM, got {w.getnchannels()} ch "
                                   f"{8 * w.getsampwidth()} bit")
        return w.readframes(w.getnframes()), w.getframerate()


def write_wav(path: str | Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def silence(ms: float, rate: int) -> bytes:
    return b"\x00\x00" * ms_to_samples(ms, rate)
