"""Checks a RecognitionConfig and fills in server defaults. Every message
says what was wrong and what to send instead (it reaches the client as
INVALID_ARGUMENT)."""
from __future__ import annotations

import dataclasses

from services.asr.results import InvalidRequest, ResolvedConfig, StreamConfig

SAMPLE_RATE = 16000
MAX_INTERIM_INTERVAL_MS = 500   # the contract: interims at least every 500 ms of new speech
BEAM_RANGE = (1, 10)


@dataclasses.dataclass(frozen=True)
class Defaults:
    language: str = "en"
    beam_size: int = 5
    interim_interval_ms: int = 400


def check_defaults(d: Defaults) -> None:
    """The server's own defaults must be values a client could send: an
    out-of-range default would reject every stream that relies on it (each
    gateway session would hear nothing), so the service refuses to start."""
    if not BEAM_RANGE[0] <= d.beam_size <= BEAM_RANGE[1]:
        raise InvalidRequest(f"ASR_BEAM_SIZE {d.beam_size} is out of range: use "
                             f"{BEAM_RANGE[0]}..{BEAM_RANGE[1]}")
    if not 0 < d.interim_interval_ms <= MAX_INTERIM_INTERVAL_MS:
        raise InvalidRequest(f"ASR_INTERIM_INTERVAL_MS {d.interim_interval_ms} is out of range: use "
                             f"1..{MAX_INTERIM_INTERVAL_MS} (interims at least every "
                             f"{MAX_INTERIM_INTERVAL_MS} ms of speech is the service's contract)")


def resolve_config(cfg: StreamConfig, languages: frozenset[str], defaults: Defaults) -> ResolvedConfig:
    """Validate ``cfg`` against what the loaded model can do; raise InvalidRequest."""
    if cfg.sample_rate_hz not in (0, SAMPLE_RATE):
        raise InvalidRequest(
            f"sample_rate_hz is {cfg.sample_rate_hz}: send {SAMPLE_RATE} Hz PCM16 mono "
            f"(resample on the client)")
    beam = cfg.beam_size or defaults.beam_size
    if not BEAM_RANGE[0] <= beam <= BEAM_RANGE[1]:
        raise InvalidRequest(
            f"beam_size {cfg.beam_size} is out of range: use {BEAM_RANGE[0]}..{BEAM_RANGE[1]} "
            f"(0 = server default {defaults.beam_size})")
    interval = cfg.interim_interval_ms or defaults.interim_interval_ms
    if not 0 < interval <= MAX_INTERIM_INTERVAL_MS:
        raise InvalidRequest(
            f"interim_interval_ms {cfg.interim_interval_ms} is out of range: use 1.."
            f"{MAX_INTERIM_INTERVAL_MS} (0 = server default {defaults.interim_interval_ms})")
    language = (cfg.language or defaults.language).strip().lower()
    if language == "auto":
        resolved: str | None = None
    elif language in languages:
        resolved = language
    else:
        if languages == frozenset({"en"}):
            hint = "the loaded model is English-only: use 'en'"
        else:
            hint = f"use an ISO 639-1 code Whisper knows ({', '.join(sorted(languages)[:12])}, ...) or 'auto'"
        raise InvalidRequest(f"unknown language code {cfg.language!r}: {hint}")
    return ResolvedConfig(language=resolved, interim_results=cfg.interim_results,
                          beam_size=beam, interim_interval_ms=interval, words=not cfg.omit_words,
                          background=cfg.background)
