"""Protobuf <-> VAD engine types. The only module besides the servicer and
__main__ that touches vad_pb2; defaults for 0-valued fields live here."""
from __future__ import annotations

from common.stubs import vad_pb2
from services.vad.engine import SAMPLE_RATE
from services.vad.segmenter import Event, SegmenterParams, SpeechPaused, SpeechStart, SpeechStop

DEFAULTS = SegmenterParams()
MIN_PROGRESS_MS, MAX_PROGRESS_MS = 100, 60_000


def params_from_config(cfg: vad_pb2.VadConfig) -> SegmenterParams:
    """VadConfig -> validated params (0 = default); ValueError says what is wrong."""
    if cfg.sample_rate_hz not in (0, SAMPLE_RATE):
        raise ValueError(f"sample_rate_hz must be {SAMPLE_RATE} (or 0 for {SAMPLE_RATE}), "
                         f"got {cfg.sample_rate_hz}")
    return SegmenterParams(
        threshold=cfg.threshold if cfg.threshold != 0 else DEFAULTS.threshold,
        min_speech_ms=cfg.min_speech_ms if cfg.min_speech_ms != 0 else DEFAULTS.min_speech_ms,
        min_silence_ms=cfg.min_silence_ms if cfg.min_silence_ms != 0 else DEFAULTS.min_silence_ms,
        prefix_padding_ms=(cfg.prefix_padding_ms if cfg.prefix_padding_ms != 0
                           else DEFAULTS.prefix_padding_ms),
        pause_events=cfg.pause_events,
        end_of_turn=cfg.end_of_turn,
    )


def progress_ms_from_config(cfg: vad_pb2.VadConfig) -> int:
    """VadConfig.progress_ms, validated (0 = no progress responses)."""
    p = cfg.progress_ms
    if p != 0 and not MIN_PROGRESS_MS <= p <= MAX_PROGRESS_MS:
        raise ValueError(f"progress_ms must be 0 (off) or {MIN_PROGRESS_MS}-{MAX_PROGRESS_MS}, got {p}")
    return p


def progress_to_pb(audio_processed_ms: int) -> vad_pb2.DetectResponse:
    """A response with no event: the audio consumed so far (the stream is alive)."""
    return vad_pb2.DetectResponse(audio_processed_ms=audio_processed_ms)


def event_to_pb(ev: Event, audio_processed_ms: int,
                turn_probability: float | None = None) -> vad_pb2.DetectResponse:
    if isinstance(ev, SpeechStart):
        return vad_pb2.DetectResponse(
            speech_started=vad_pb2.SpeechStarted(
                audio_ms=ev.audio_ms, padded_start_ms=ev.padded_start_ms,
                decided_at_ms=ev.decided_at_ms),
            audio_processed_ms=audio_processed_ms)
    if isinstance(ev, SpeechPaused):
        return vad_pb2.DetectResponse(
            speech_paused=vad_pb2.SpeechPaused(audio_ms=ev.audio_ms, decided_at_ms=ev.decided_at_ms),
            audio_processed_ms=audio_processed_ms)
    assert isinstance(ev, SpeechStop)
    stopped = vad_pb2.SpeechStopped(audio_ms=ev.audio_ms, decided_at_ms=ev.decided_at_ms)
    if turn_probability is not None:
        stopped.turn_complete_probability = turn_probability
    return vad_pb2.DetectResponse(speech_stopped=stopped, audio_processed_ms=audio_processed_ms)
