"""Access to the generated protobuf/gRPC modules (``make proto`` writes them
to ``gen/``, which is on the path via the venv's .pth file and PYTHONPATH)."""
from __future__ import annotations

import sys
from pathlib import Path

_GEN = Path(__file__).resolve().parent.parent / "gen"
if _GEN.is_dir() and str(_GEN) not in sys.path:
    sys.path.insert(0, str(_GEN))

from voice.v1 import (  # noqa: E402
    asr_pb2, asr_pb2_grpc, common_pb2, llm_pb2, llm_pb2_grpc, rag_pb2, rag_pb2_grpc,
    tts_pb2, tts_pb2_grpc, vad_pb2, vad_pb2_grpc,
)

__all__ = [
    "asr_pb2", "asr_pb2_grpc", "common_pb2", "llm_pb2", "llm_pb2_grpc", "rag_pb2",
    "rag_pb2_grpc", "tts_pb2", "tts_pb2_grpc", "vad_pb2", "vad_pb2_grpc",
]
