"""A new session's configuration: the settings' defaults, and retrieval on
by default only when the retrieval service has documents (asked once per
address every 30 s)."""
from __future__ import annotations

from typing import Any

from services.gateway.backends.types import BackendError
from services.gateway.session import SessionConfig, TurnDetection
from services.gateway.settings import GatewaySettings


def default_config(s: GatewaySettings, model: str | None = None) -> SessionConfig:
    return SessionConfig(
        model=model or "local", instructions=s.instructions, voice=s.voice,
        turn_detection=default_turn_detection(s), retrieval_enabled=s.retrieval, retrieval_k=s.rag_k)


def default_turn_detection(s: GatewaySettings) -> TurnDetection:
    return TurnDetection(threshold=s.vad_threshold, prefix_padding_ms=s.prefix_padding_ms,
                         silence_duration_ms=s.silence_duration_ms, min_interrupt_ms=s.min_interrupt_ms,
                         false_interruption_timeout_ms=s.false_interruption_timeout_ms,
                         preemptive_generation=s.preemptive_generation)


_DOCS_CACHE: dict[str, tuple[float, bool]] = {}
DOCS_CACHE_S = 30.0


async def rag_has_documents(rag: Any, clock: Any) -> bool | None:
    """Whether the retrieval service has any passage (cached per address for
    30 s); None when it cannot be asked (then the session default stands)."""
    hit = _DOCS_CACHE.get(rag.address)
    if hit and clock.now() - hit[0] < DOCS_CACHE_S:
        return hit[1]
    try:
        found = bool(await rag.search("hello", 1, 0.0))
    except BackendError:
        return None
    _DOCS_CACHE[rag.address] = (clock.now(), found)
    return found
