"""Whisper log-mel features in numpy, as the Smart Turn model was trained on.

The same numbers as ``transformers.WhisperFeatureExtractor(chunk_length=8)``
with ``do_normalize=True`` (checked once against it, docs/benchmarks.md): the
waveform is normalised to zero mean and unit variance, a centred (reflect
padded) STFT with a periodic Hann window of 400 samples and a hop of 160 gives
a power spectrum, 80 Slaney mel filters from 0 to 8 kHz map it, then
``log10``, the last frame dropped, a floor 8 below the maximum, and
``(x + 4) / 4``. No torch, no transformers: the VAD image stays small."""
from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    log_step = 27.0 / np.log(6.4)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * log_step, 3.0 * f / 200.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(log_step * (m - 15.0)), 200.0 * m / 3.0)


@functools.lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """(n_fft/2 + 1, 80) triangular filters with Slaney area normalisation."""
    bins = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    widths = np.diff(edges)
    slopes = edges[None, :] - bins[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:-1]   # periodic Hann (torch.hann_window)


def log_mel(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """(80, n_samples / 160) float32 features of ``audio`` (16 kHz, float),
    zero-padded at the end or cut to ``n_samples`` first."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be one-dimensional, got shape {x.shape}")
    x = np.pad(x, (0, max(0, n_samples - x.size)))[:n_samples]
    # Normalised in float32 before the float64 spectrum, as the reference does.
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _window(), axis=-1)) ** 2      # (frames, 201)
    mel = np.log10(np.maximum(power @ mel_filters(), 1e-10)).T[:, :-1]  # (80, frames - 1)
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)
