"""What the answer eval runs against: the real RAG and LLM services as
processes, and the real gateway app in this process on a free port.

The gateway is the product's own (create_app, the Planner, Response,
settings resolved like `python -m services.gateway`: GATEWAY_* variables
apply), so an answer is built exactly as a typed question in the browser is
answered. Only VAD, ASR and TTS are scripted fakes: a typed question with a
text reply never reaches them, and starting their models would only compete
with the LLM for the CPU the latency is measured on."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, AsyncIterator

import uvicorn

from common.clock import MonotonicClock
from common.config import load_settings
from services.gateway.app import create_app
from services.gateway.backends.routing import BackendPool
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.settings import GatewaySettings
from tests.procs import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the eval asks: a Realtime WebSocket URL and the RAG address
    (searched directly for recall@k and for the passages' text)."""
    ws_url: str
    rag_address: str


class EvalProvider(FakeProvider):
    """The gateway's backend provider: real gRPC clients for the LLM and RAG,
    scripted fakes for the speech services (see module doc). The provider
    interface the app calls (start, for_session, canary_addresses,
    release_status, health, close) is FakeProvider's, so it follows the app."""

    def __init__(self, settings: GatewaySettings, clock: MonotonicClock) -> None:
        self.pool, self.clock = BackendPool(settings), clock
        self.llm_address, self.rag_address = settings.addrs("llm")[0], settings.addrs("rag")[0]
        super().__init__(self._backends)

    def _backends(self, session_id: str) -> FakeBackends:
        real = self.pool.for_session(session_id)
        b = FakeBackends.create(self.clock)
        b.llm, b.rag = real.llm, real.rag
        return b

    async def health(self) -> dict[str, dict[str, str]]:
        return {"llm": {self.llm_address: "SERVING"}, "rag": {self.rag_address: "SERVING"}}

    async def close(self) -> None:
        await self.pool.close()


def gateway_settings(llm: str, rag: str, port: int) -> GatewaySettings:
    """The gateway's settings as `python -m services.gateway` resolves them
    (GATEWAY_* variables apply), on the given backends, without Redis."""
    s = load_settings(GatewaySettings, "GATEWAY_", [])
    # The speech services' addresses only have to parse: their clients are replaced by fakes.
    return dataclasses.replace(s, host="127.0.0.1", port=port, llm_addrs=llm, rag_addrs=rag,
                               vad_addrs=llm, asr_addrs=llm, tts_addrs=llm, llm_canary_addrs="",
                               rag_canary_addrs="", canary_percent=0.0, redis_url="", max_sessions=0,
                               api_keys="", api_keys_file="", otlp_endpoint="")


@contextlib.asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[str]:
    """``app`` served by uvicorn on this event loop; yields its Realtime URL
    and stops it on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           log_config=None, ws_ping_interval=None))
    task = asyncio.create_task(server.serve(), name="eval-gateway")
    try:
        while not server.started:
            if task.done():
                task.result()       # raises why it could not start
                raise RuntimeError("the in-process gateway stopped before it started")
            await asyncio.sleep(0.05)
        yield f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        server.should_exit = True
        await asyncio.wait([task], timeout=15)


@contextlib.asynccontextmanager
async def in_process_gateway(llm: str, rag: str) -> AsyncIterator[tuple[str, GatewaySettings]]:
    """The gateway app on the given LLM and RAG services; yields its Realtime
    URL and the settings it runs with."""
    port = free_port()
    settings = gateway_settings(llm, rag, port)
    clock = MonotonicClock()
    app = create_app(settings, backends=EvalProvider(settings, clock), clock=clock)
    async with serve(app, port) as url:
        yield url, settings


@contextlib.contextmanager
def services(llm_env: dict[str, str] | None = None, index_dir: Path | None = None):
    """The RAG service over docs/ (index in ``index_dir``, reused between runs)
    and the LLM service, started in parallel; yields (llm, rag) addresses."""
    index_dir = index_dir or ROOT / "artifacts" / "eval-answers" / "rag-index"
    rag = ServiceProcess("services.rag", "RAG_", {"RAG_DOCS_DIR": str(ROOT / "docs"),
                                                  "RAG_INDEX_DIR": str(index_dir)})
    llm = ServiceProcess("services.llm", "LLM_", dict(llm_env or {}))
    started: list[ServiceProcess] = []
    try:
        for p in (rag, llm):
            started.append(p.spawn())
        for p in started:
            p.wait_ready(300)
        yield llm.address, rag.address
    finally:
        for p in started:
            p.stop()
