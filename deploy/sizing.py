"""How much CPU and memory each component gets when deployed, in one table.

docker-compose.yml (limits) and the Kubernetes manifests (requests and limits)
both follow it; tests/deploy checks that they do. Figures come from docs of
the models (MODELS.md: ~690 MB peak RSS for every model in one process) with
headroom for the gRPC server, several streams and the KV cache.

``threads`` is the inference thread count (<PREFIX>THREADS): it matches the
CPU limit, because more threads than the cgroup's CPUs only adds contention."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Size:
    cpu_request: str    # Kubernetes quantity; compose reserves memory only
    cpu_limit: str      # also compose's deploy.resources.limits.cpus
    mem_request: str    # Kubernetes quantity (Mi/Gi)
    mem_limit: str
    threads: int

    @property
    def mem_limit_bytes(self) -> int:
        return to_bytes(self.mem_limit)

    @property
    def mem_request_bytes(self) -> int:
        return to_bytes(self.mem_request)


def to_bytes(quantity: str) -> int:
    """Kubernetes binary quantity (512Mi, 2Gi) → bytes."""
    for suffix, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


SIZES: dict[str, Size] = {
    # Silero is 0.12 ms a frame: one core serves many streams.
    "vad": Size("250m", "1", "256Mi", "512Mi", threads=1),
    # Whisper base int8, twice (finals, and interims at low priority): ~490 MB
    # peak; decoding is the CPU-heaviest stage. One thread per pass: two passes
    # (num_workers) fill the two CPUs, and a lone pass is no faster with two.
    "asr": Size("1", "2", "640Mi", "2Gi", threads=1),
    # SmolLM2 Q4_1, four instances (each its own context and KV cache): measured
    # 776 MiB peak under 4 conversations (docs/capacity.md), 432 MiB with two.
    "llm": Size("1", "2", "1Gi", "2Gi", threads=2),
    # MiniLM int8 embeddings: ~5 ms a sentence.
    "rag": Size("250m", "1", "256Mi", "1Gi", threads=1),
    # Piper medium voice.
    "tts": Size("1", "2", "512Mi", "1536Mi", threads=2),
    # No model: WebSocket sessions, resampling, routing.
    "gateway": Size("250m", "1", "256Mi", "1Gi", threads=1),
}
