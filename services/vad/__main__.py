"""`python -m services.vad`: settings (flag, then VAD_* env, then default),
model load and the gRPC server."""
from __future__ import annotations

import dataclasses

from common.config import ServiceSettings, load_settings, setting
from common.server import run, serve
from common.stubs import vad_pb2, vad_pb2_grpc
from services.vad.energy import EnergyParams
from services.vad.engine import VadEngine
from services.vad.servicer import VadServicer
from services.vad.turn_model import SmartTurnModel
from common.components import by_name

COMPONENT = by_name("vad")


@dataclasses.dataclass
class Settings(ServiceSettings):
    port: int = setting(COMPONENT.port, "gRPC port")
    metrics_port: int = setting(COMPONENT.metrics_port, "Prometheus /metrics port (0 = off)")
    # One 512-sample frame is far too small to split across threads; concurrent
    # streams use the cores instead.
    threads: int = setting(1, "onnxruntime intra-op threads of the shared model")
    max_streams: int = setting(32, "streams served at once; further ones get RESOURCE_EXHAUSTED")
    model_path: str = setting("", "silero VAD ONNX file (empty = silero_vad.onnx from the silero-vad package)")
    # The end-of-turn model scores each pause of streams that ask for it
    # (VadConfig.end_of_turn: the gateway's semantic_vad), ~0.1 s of one core each.
    turn_model: bool = setting(True, "load the Smart Turn end-of-turn model (off: stops carry no "
                               "turn_complete_probability)")
    # Silero's probability lets go of speech 110-320 ms after the sound stops
    # (services/vad/energy.py); the frames' level at the noise floor says so sooner.
    energy_end: bool = setting(True, "end speech where its energy falls to the noise floor, when the "
                               "utterance is 20 dB above it (off: silero's probability alone)")
    turn_model_path: str = setting("", "Smart Turn ONNX file (empty = smart-turn-v3.2-cpu.onnx from the "
                                   "pipecat-ai package)")


async def main() -> None:
    s = load_settings(Settings, COMPONENT.env_prefix, description=__doc__)
    label = s.model_path.rsplit("/", 1)[-1] if s.model_path else "silero_vad.onnx"

    def load() -> VadEngine:
        turn = SmartTurnModel(s.turn_model_path or None, threads=1, device=s.device) if s.turn_model else None
        return VadEngine(s.model_path or None, threads=s.threads, device=s.device, turn_model=turn,
                         energy=EnergyParams() if s.energy_end else None)

    def add(server, engine) -> None:
        vad_pb2_grpc.add_VoiceActivityServicer_to_server(VadServicer(engine, label, s.max_streams), server)

    service_name = vad_pb2.DESCRIPTOR.services_by_name["VoiceActivity"].full_name
    await serve("vad", [service_name], s, label, load, add)


if __name__ == "__main__":
    run(main)
