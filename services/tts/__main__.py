"""`python -m services.tts`: settings (flag, then TTS_* env, then default),
voice loading and the gRPC server."""
from __future__ import annotations

import dataclasses
import logging

from common.cores import host_cores
from common.config import ServiceSettings, load_settings, setting
from common.server import run, serve
from common.stubs import tts_pb2, tts_pb2_grpc
from services.tts import metrics
from services.tts.engine import TtsEngine
from services.tts.scheduler import Scheduler
from services.tts.servicer import TtsServicer
from services.tts.voices import default_voice_files, load_voices
from common.components import by_name

COMPONENT = by_name("tts")
log = logging.getLogger("tts")


@dataclasses.dataclass
class Settings(ServiceSettings):
    port: int = setting(COMPONENT.port, "gRPC port")
    metrics_port: int = setting(COMPONENT.metrics_port, "Prometheus /metrics port (0 = off)")
    # A second thread per synthesis cost 40 % more CPU per second of speech (0.193 against
    # 0.139 CPU s) for no first-audio gain measurable on 2 cores (docs/capacity-rechecks.md,
    # re-check 4): the cores go to the workers, i.e. to clauses of different streams.
    threads: int = setting(0, "onnxruntime threads per synthesis (0 = from the host: cores / workers, "
                              "at least 1; 1 on 2 cores)")
    voices_dir: str = setting("", "folder of extra piper voices (NAME.onnx + NAME.onnx.json); empty = none")
    default_voice: str = setting("", "voice used when a request names none (empty = en_US-joe-medium)")
    max_chars: int = setting(4000, "longest text accepted in one request, in characters")
    chunk_ms: int = setting(200, "longest audio chunk sent, in ms")
    # Clauses of all streams share these workers, urgent ones first (scheduler.py);
    # more workers than cores would only make every clause slower.
    workers: int = setting(0, "synthesis worker threads shared by all streams (0 = the CPUs this "
                              "process may use)")
    background_max_wait_s: float = setting(1.0, "a background clause queued this long goes before "
                                                 "urgent ones, so it is delayed, never starved")
    urgent_workers: int = setting(1, "workers kept for urgent clauses (an answer's first audio); "
                                     "background clauses use the others, at least one")


async def main() -> None:
    s = load_settings(Settings, COMPONENT.env_prefix, description=__doc__)
    label = s.default_voice or default_voice_files()[0].name[: -len(".onnx")]

    def load() -> TtsEngine:
        workers = s.workers or host_cores()
        threads = s.threads or max(1, host_cores() // workers)
        log.info("sized for %d cores: %d workers x %d threads per synthesis", host_cores(), workers, threads)
        voices = load_voices(s.voices_dir, threads=threads, device=s.device)
        scheduler = Scheduler(workers, s.background_max_wait_s, s.urgent_workers,
                              on_wait=metrics.observe_wait, on_depth=metrics.set_depth)
        engine = TtsEngine(voices, s.default_voice, max_chars=s.max_chars, chunk_ms=s.chunk_ms,
                           scheduler=scheduler)
        # Warm the voice (espeak init, onnx first run) so the first request is not the slow one.
        for _ in engine.voices[engine.default_voice].synthesize("Ready.", 1.0):
            pass
        return engine

    def add(server, engine) -> None:
        tts_pb2_grpc.add_SynthesizerServicer_to_server(TtsServicer(engine, label, s.max_streams), server)

    service_name = tts_pb2.DESCRIPTOR.services_by_name["Synthesizer"].full_name
    await serve("tts", [service_name], s, label, load, add)


if __name__ == "__main__":
    run(main)
