"""`python -m services.asr`: the streaming speech recognition service
(faster-whisper) on its gRPC port. Settings: flag, then ASR_* env, then default."""
from __future__ import annotations

import dataclasses

import grpc

from common.config import ServiceSettings, load_settings, setting
from common.server import run, serve
from common.stubs import asr_pb2_grpc
from stack.components import by_name

_COMPONENT = by_name("asr")


@dataclasses.dataclass
class Settings(ServiceSettings):
    port: int = setting(_COMPONENT.port, "gRPC port")
    metrics_port: int = setting(_COMPONENT.metrics_port, "Prometheus /metrics port (0 = off)")
    model: str = setting("base", "Whisper model: 'base', 'tiny.en' or a CTranslate2 Whisper directory")
    # One thread per pass: a lone final is as fast as with two (Whisper base's decoder steps are
    # too small to split), and an interim and a final then run side by side on two cores.
    threads: int = setting(1, "CPU threads per model pass (num_workers passes may run at once)")
    num_workers: int = setting(2, "concurrent model passes (a final never waits behind an interim)")
    language: str = setting("en", "language when the client sends none ('auto' = detect)")
    beam_size: int = setting(5, "beam size of final passes when the client sends 0")
    interim_interval_ms: int = setting(400, "new audio between interims when the client sends 0 (max 500)")
    interim_max_duty: float = setting(1.0, "share of the time one stream's interims may keep a core busy "
                                      "(after a pass of d s the next waits d*(1/duty-1); 1 = back to back, "
                                      "the default: below 1, long utterances get interims less often than "
                                      "every 500 ms of speech)")
    interim_nice: int = setting(19, "CPU priority (nice) of interim passes, on their own copy of the model "
                                "(0 = same model and priority as finals)")
    interim_trim: bool = setting(True, "interim passes encode only the audio (+pad), not a 30 s window")
    interim_pad_s: float = setting(3.0, "silence the trimmed interim encoder sees after the audio")
    final_trim: bool = setting(True, "final passes encode only the audio (+pad); off = faster-whisper's 30 s window")
    final_pad_s: float = setting(3.0, "silence the trimmed final encoder sees after the audio")
    final_vad_filter: bool = setting(False, "run Silero VAD inside final passes (implies the 30 s window)")
    max_utterance_s: float = setting(30.0, "an utterance this long gets a final without force_eou")
    warmup: bool = setting(True, "run one pass of each kind before reporting SERVING")


def _load(s: Settings):
    from services.asr import models
    from services.asr.engine import EngineOptions, WhisperEngine

    engine = WhisperEngine(str(models.resolve(s.model)), EngineOptions(
        device=s.device, compute_type=s.compute_type, threads=s.threads, num_workers=s.num_workers,
        interim_trim=s.interim_trim, interim_pad_s=s.interim_pad_s,
        final_trim=s.final_trim, final_pad_s=s.final_pad_s,
        final_vad_filter=s.final_vad_filter, max_streams=s.max_streams, interim_nice=s.interim_nice))
    if s.warmup:
        engine.warmup()
    return engine


async def main() -> None:
    from services.asr.servicer import RecognizerServicer
    from services.asr.session import SessionLimits
    from services.asr.validate import Defaults

    s = load_settings(Settings, "ASR_", description=__doc__)
    limits = SessionLimits(Defaults(language=s.language, beam_size=s.beam_size,
                                    interim_interval_ms=s.interim_interval_ms), s.max_utterance_s,
                           s.interim_max_duty)

    def add(server: grpc.aio.Server, engine) -> None:
        asr_pb2_grpc.add_RecognizerServicer_to_server(
            RecognizerServicer(engine, limits, s.model, s.max_streams), server)

    await serve("asr", ["voice.v1.Recognizer"], s, s.model, lambda: _load(s), add)


if __name__ == "__main__":
    run(main)
