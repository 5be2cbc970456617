"""The ASR service's own data types: what a stream is configured with, what
it receives, and what it answers. No protobuf here (convert.py maps these to
and from the wire), so the session and engine can be tested without gRPC."""
from __future__ import annotations

import dataclasses
from typing import Union


class InvalidRequest(ValueError):
    """A client mistake; the message says exactly what was wrong (→ INVALID_ARGUMENT)."""


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """RecognitionConfig as sent by the client (0/empty = server default)."""

    language: str = ""
    interim_results: bool = False
    beam_size: int = 0
    sample_rate_hz: int = 0
    interim_interval_ms: int = 0
    omit_words: bool = False
    background: bool = False      # priority BACKGROUND: finals at the interims' low CPU priority


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    """A validated config with every default filled in."""

    language: str | None        # None = let the model detect it
    interim_results: bool
    beam_size: int
    interim_interval_ms: int
    words: bool = True          # word timings on finals
    background: bool = False    # finals at the interims' low CPU priority (nobody waits for them)


@dataclasses.dataclass(frozen=True)
class Audio:
    """A chunk of PCM16 little-endian mono at 16 kHz."""

    pcm: bytes


@dataclasses.dataclass(frozen=True)
class EndOfUtterance:
    """Control{force_eou}: transcribe what was sent since the last end, then reset.
    With ``use_provisional`` the latest Flush's pass is the final instead."""

    use_provisional: bool = False


@dataclasses.dataclass(frozen=True)
class Flush:
    """Control{flush}: a final-quality pass over the utterance so far, which stays open."""


Event = Union[StreamConfig, Audio, EndOfUtterance, Flush]


@dataclasses.dataclass(frozen=True)
class Word:
    word: str
    start_ms: int      # from the utterance's first sample
    end_ms: int
    probability: float


@dataclasses.dataclass(frozen=True)
class Transcript:
    """What one model pass produced."""

    text: str
    words: tuple[Word, ...] = ()
    model_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Result:
    """One answer on the stream: an interim hypothesis or a final result."""

    text: str
    is_final: bool
    utterance_index: int
    audio_processed_ms: int
    stability: float = 0.0
    changed_words: int = 0
    words: tuple[Word, ...] = ()
    processing_ms: float = 0.0
    provisional: bool = False   # a Flush's result (is_final is False)
