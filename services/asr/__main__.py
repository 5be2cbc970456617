"""`python -m services.asr`: the streaming speech recognition service
(faster-whisper) on its gRPC port. Settings: flag, then ASR_* env, then default.

Thread counts default to 0 = from the host's cores (common/cores.py), resolved
once at start by ``resolve_sizes`` and logged, so one image runs well on the
2-core laptop and on a 16-core server without retuning."""
from __future__ import annotations

import dataclasses
import logging

import grpc

from common.config import ServiceSettings, load_settings, setting
from common.cores import host_cores
from common.server import run, serve
from common.stubs import asr_pb2_grpc
from common.components import by_name

_COMPONENT = by_name("asr")
log = logging.getLogger("asr")


@dataclasses.dataclass
class Settings(ServiceSettings):
    port: int = setting(_COMPONENT.port, "gRPC port")
    metrics_port: int = setting(_COMPONENT.metrics_port, "Prometheus /metrics port (0 = off)")
    model: str = setting("base", "Whisper model: 'base', 'tiny.en' or a CTranslate2 Whisper directory")
    # One thread per pass: a lone final is as fast as with two (Whisper base's decoder steps are
    # too small to split), and an interim and a final then run side by side on two cores.
    threads: int = setting(0, "CPU threads per model pass (0 = from the host's cores: cores / "
                           "num_workers, at least 1; 1 on 2 cores)")
    num_workers: int = setting(0, "concurrent model passes of the finals' model (0 = from the host: "
                               "one per core, at least 2; 2 on a GPU)")
    interim_workers: int = setting(0, "interim passes at once, across all streams (0 = from the host: "
                                   "1 per 4 cores, at least 1; num_workers - 1 on a GPU); more "
                                   "streams wanting interims take turns, oldest first")
    interim_batch: int = setting(0, "streams one interim pass may decode together as a batch (0 = from "
                                 "the host: 1 on a CPU, where a batch arrives ~3x later for ~15 % "
                                 "less CPU; 8 on a GPU)")
    language: str = setting("en", "language when the client sends none ('auto' = detect)")
    beam_size: int = setting(5, "beam size of final passes when the client sends 0")
    interim_interval_ms: int = setting(400, "new audio between interims when the client sends 0 (max 500)")
    interim_max_duty: float = setting(1.0, "share of the time one stream's interims may keep a core busy "
                                      "(after a pass of d s the next waits d*(1/duty-1); 1 = back to back, "
                                      "the default: below 1, long utterances get interims less often than "
                                      "every 500 ms of speech)")
    interim_nice: int = setting(19, "nice steps below the service's own CPU priority for interim passes, "
                                "on their own copy of the model (0 = same model and priority as finals)")
    interim_model: str = setting("", "Whisper model of interim passes ('' = the finals' model; e.g. "
                                 "'tiny.en': cheaper interims, at tiny.en's accuracy; finals are always "
                                 "ASR_MODEL's)")
    interim_trim: bool = setting(True, "interim passes encode only the audio (+pad), not a 30 s window")
    interim_pad_s: float = setting(3.0, "silence the trimmed interim encoder sees after the audio")
    final_trim: bool = setting(True, "final passes encode only the audio (+pad); off = faster-whisper's 30 s window")
    final_pad_s: float = setting(3.0, "silence the trimmed final encoder sees after the audio")
    final_vad_filter: bool = setting(False, "run Silero VAD inside final passes (implies the 30 s window)")
    max_utterance_s: float = setting(30.0, "an utterance this long gets a final without force_eou")
    warmup: bool = setting(True, "run one pass of each kind before reporting SERVING")


@dataclasses.dataclass(frozen=True)
class Sizes:
    threads: int
    num_workers: int
    interim_workers: int
    interim_batch: int


def resolve_sizes(s: Settings, cores: int) -> Sizes:
    """Settings of 0 from ``cores``. Every pass gets one thread on small hosts
    (Whisper base's decoder steps are too small to split) and the cores go to
    passes of different streams instead. Interims keep to a quarter of the
    cores: they are background work, and under load they take turns
    (interims.py) rather than crowding out finals, the LLM and TTS."""
    gpu = s.device != "cpu"
    workers = s.num_workers or (2 if gpu else max(2, cores))
    threads = s.threads or max(1, cores // workers)
    interims = s.interim_workers or (max(1, workers - 1) if gpu else max(1, cores // 4))
    if gpu or s.interim_nice <= 0:
        # Interims share the finals' model: leave a worker free for a final.
        interims = min(interims, max(1, workers - 1))
    return Sizes(threads, workers, interims, s.interim_batch or (8 if gpu else 1))


def _load(s: Settings, sizes: Sizes):
    from services.asr import models
    from services.asr.engine import EngineOptions, WhisperEngine

    engine = WhisperEngine(str(models.resolve(s.model)), EngineOptions(
        device=s.device, compute_type=s.compute_type, threads=sizes.threads,
        num_workers=sizes.num_workers, interim_workers=sizes.interim_workers,
        interim_trim=s.interim_trim, interim_pad_s=s.interim_pad_s,
        final_trim=s.final_trim, final_pad_s=s.final_pad_s,
        final_vad_filter=s.final_vad_filter, max_streams=s.max_streams, interim_nice=s.interim_nice,
        interim_model_path=str(models.resolve(s.interim_model)) if s.interim_model else ""))
    if s.warmup:
        engine.warmup()
    return engine


async def main() -> None:
    from services.asr.batching import InterimBatcher
    from services.asr.interims import InterimScheduler
    from services.asr.metrics import PrometheusObserver
    from services.asr.servicer import RecognizerServicer
    from services.asr.session import SessionLimits
    from services.asr.validate import Defaults, InvalidRequest, check_defaults

    s = load_settings(Settings, "ASR_", description=__doc__)
    cores = host_cores()
    sizes = resolve_sizes(s, cores)
    observer = PrometheusObserver()
    interims = InterimScheduler(sizes.interim_workers, observer=observer, max_batch=sizes.interim_batch)
    defaults = Defaults(language=s.language, beam_size=s.beam_size,
                        interim_interval_ms=s.interim_interval_ms)
    try:
        check_defaults(defaults)
    except InvalidRequest as exc:
        raise SystemExit(f"asr: {exc}") from None
    limits = SessionLimits(defaults, s.max_utterance_s, s.interim_max_duty)

    def add(server: grpc.aio.Server, engine) -> None:
        batcher = InterimBatcher(engine, observer=observer) if sizes.interim_batch > 1 else None
        asr_pb2_grpc.add_RecognizerServicer_to_server(
            RecognizerServicer(engine, limits, s.model, s.max_streams, interims, batcher), server)

    def load():
        # Here, not above: serve() sets up logging before it loads the model.
        log.info("sized for %d cores: %d threads per pass x %d workers, %d interim passes at once "
                 "of up to %d streams each (settings threads=%d num_workers=%d interim_workers=%d "
                 "interim_batch=%d; 0 = from the host)", cores, sizes.threads, sizes.num_workers,
                 sizes.interim_workers, sizes.interim_batch, s.threads, s.num_workers,
                 s.interim_workers, s.interim_batch)
        return _load(s, sizes)

    await serve("asr", ["voice.v1.Recognizer"], s, s.model, load, add)


if __name__ == "__main__":
    run(main)
