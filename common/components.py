"""Every component of the platform, its port, its metrics port and the
environment it is configured with: what `make run` starts (stack/), and what
every service reads its default ports from (so services do not depend on the
supervisor that starts them). deploy/ tests compare compose and the
Kubernetes manifests against this table so they cannot drift apart."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Component:
    name: str
    module: str            # started as `python -m <module>`
    port: int
    metrics_port: int      # Prometheus /metrics (the gateway serves it on its own port)
    env_prefix: str
    grpc: bool = True      # health checked with grpc.health.v1

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def resolved(self, environ: dict[str, str]) -> "Component":
        """This component with the ports a user overrode in the environment
        (``VAD_PORT=6001 make run``), so the supervisor probes where it listens."""
        port = int(environ.get(f"{self.env_prefix}PORT", self.port))
        metrics_port = int(environ.get(f"{self.env_prefix}METRICS_PORT", self.metrics_port))
        return dataclasses.replace(self, port=port, metrics_port=port if not self.grpc else metrics_port)

    def env(self, host: str = "127.0.0.1") -> dict[str, str]:
        """Settings the supervisor passes; the same names are set in compose/k8s."""
        e = {f"{self.env_prefix}HOST": host, f"{self.env_prefix}PORT": str(self.port)}
        if self.grpc:
            e[f"{self.env_prefix}METRICS_PORT"] = str(self.metrics_port)
        return e


SPEECH_SERVICES: tuple[Component, ...] = (
    Component("vad", "services.vad", 50051, 9101, "VAD_"),
    Component("asr", "services.asr", 50052, 9102, "ASR_"),
    Component("llm", "services.llm", 50053, 9103, "LLM_"),
    Component("rag", "services.rag", 50054, 9104, "RAG_"),
    Component("tts", "services.tts", 50055, 9105, "TTS_"),
)
GATEWAY = Component("gateway", "services.gateway", 8000, 8000, "GATEWAY_", grpc=False)
COMPONENTS: tuple[Component, ...] = SPEECH_SERVICES + (GATEWAY,)
REDIS_URL = "redis://127.0.0.1:6379/0"


def gateway_backend_env(services: tuple[Component, ...] = SPEECH_SERVICES) -> dict[str, str]:
    """How the gateway finds the speech services: one address list per service."""
    return {f"GATEWAY_{c.name.upper()}_ADDRS": c.address for c in services} | {
        "GATEWAY_REDIS_URL": REDIS_URL,
    }


def by_name(name: str) -> Component:
    for c in COMPONENTS:
        if c.name == name:
            return c
    raise KeyError(name)
