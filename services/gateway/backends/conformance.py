"""Read by the type checker only (tests/unit/test_gateway_types.py runs mypy on
it): the gRPC clients and the scripted fakes both implement the interfaces of
interfaces.py. The Protocols are structural, so nothing at run time would
notice a fake that drifted from the real client (a renamed method, a missing
argument); turn-taking tests would then prove behaviour the product lacks.
Every assignment below is a claim mypy checks."""
from __future__ import annotations

from services.gateway.backends.grpc_clients import (
    GrpcAsr, GrpcAsrStream, GrpcLlm, GrpcRag, GrpcTts, GrpcVad, GrpcVadStream,
)
from services.gateway.backends.interfaces import (
    AsrClient, AsrStream, Backends, LlmClient, RagClient, TtsClient, VadClient, VadStream,
)
from services.gateway.backends.routing import SessionBackends
from services.gateway.fakes import (
    FakeAsr, FakeAsrStream, FakeBackends, FakeLlm, FakeRag, FakeTts, FakeVad, FakeVadStream,
)


def grpc_clients(vad: GrpcVad, asr: GrpcAsr, llm: GrpcLlm, rag: GrpcRag, tts: GrpcTts,
                 vad_stream: GrpcVadStream, asr_stream: GrpcAsrStream, session: SessionBackends) -> None:
    _vad: VadClient = vad
    _asr: AsrClient = asr
    _llm: LlmClient = llm
    _rag: RagClient = rag
    _tts: TtsClient = tts
    _vs: VadStream = vad_stream
    _as: AsrStream = asr_stream
    _b: Backends = session


def fakes(vad: FakeVad, asr: FakeAsr, llm: FakeLlm, rag: FakeRag, tts: FakeTts,
          vad_stream: FakeVadStream, asr_stream: FakeAsrStream, session: FakeBackends) -> None:
    _vad: VadClient = vad
    _asr: AsrClient = asr
    _llm: LlmClient = llm
    _rag: RagClient = rag
    _tts: TtsClient = tts
    _vs: VadStream = vad_stream
    _as: AsrStream = asr_stream
    _b: Backends = session
