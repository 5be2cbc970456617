"""Which backend addresses a session uses. Each service has a stable list and an
optional canary list; a session is assigned stable or canary per service once,
at creation, from a hash of its id against the service's canary weight (read
from the release records, services/gateway/release_view.py, or the configured
canary_percent), and keeps those backends for its lifetime. The variants are
stored in the session record, so a resume on any gateway gets them back even
after the weight changed. Since the hash bucket is fixed, raising the weight
only adds sessions to the canary; none moves back.

Two exceptions send a canary session to stable: its release was withdrawn
(rolled back or aborted: the canary hurts users, resumed sessions leave it
too), or no canary replica serves (counted in
voice_gateway_canary_fallbacks_total; the session stays on stable for life).
Within a list, the same hash spreads sessions over the (serving) replicas;
while a replica's circuit is open its sessions' calls fail over to another
replica of the same variant (failover.py)."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import TypeVar

import grpc

from common.clock import MonotonicClock
from common.server import MAX_MESSAGE_BYTES
from services.gateway import metrics
from services.gateway.backends.deadlines import CHANNEL_KEEPALIVE
from services.gateway.backends.failover import Guard, Routed, RoutedLlm, RoutedRag, RoutedStreaming, RoutedTts
from services.gateway.backends.grpc_clients import GrpcAsr, GrpcLlm, GrpcRag, GrpcTts, GrpcVad
from services.gateway.backends.health import CanaryHealth
from services.gateway.backends.interfaces import AsrClient, LlmClient, RagClient, TtsClient, VadClient
from services.gateway.release_view import ReleaseView
from services.gateway.settings import GatewaySettings

R = TypeVar("R", bound=Routed)

SERVICES = ("vad", "asr", "llm", "rag", "tts")
_CLIENTS = {"vad": GrpcVad, "asr": GrpcAsr, "llm": GrpcLlm, "rag": GrpcRag, "tts": GrpcTts}


def _bucket(session_id: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{session_id}".encode()).digest()[:8], "big")


def in_canary(session_id: str, service: str, canary_percent: float) -> bool:
    """The session's fixed bucket (0-9999) falls below the weight."""
    return (_bucket(session_id, "canary:" + service) % 10000) < canary_percent * 100


def choose(session_id: str, service: str, stable: list[str], canary: list[str],
           canary_percent: float, decided: str | None = None) -> tuple[str, str]:
    """(address, variant) for one service of one session; deterministic in the
    id. ``decided`` is the variant stored with a resumed session: it is kept
    whatever the weight is now (while a canary list exists)."""
    if decided is None:
        use_canary = bool(canary) and in_canary(session_id, service, canary_percent)
    else:
        use_canary = decided == "canary" and bool(canary)
    pool = canary if use_canary else stable
    if not pool:
        raise ValueError(f"no {service} address configured")
    return pool[_bucket(session_id, "replica:" + service) % len(pool)], ("canary" if use_canary else "stable")


@dataclasses.dataclass
class SessionBackends:
    """One session's engines: each a failover wrapper (failover.py) over the
    gRPC clients of its variant's replicas."""
    vad: VadClient
    asr: AsrClient
    llm: LlmClient
    rag: RagClient
    tts: TtsClient
    variants: dict[str, str]


class BackendPool:
    """One gRPC channel per address for the whole process (channels reconnect by themselves)."""

    def __init__(self, settings: GatewaySettings, release: ReleaseView | None = None,
                 canary_health: CanaryHealth | None = None, faults=None, clock=None) -> None:
        self.settings = settings
        self.release = release or ReleaseView(settings.canary_percent)
        self.canary_health = canary_health or CanaryHealth()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.faults = faults        # a drill's FaultTable (services/gateway/faults), or None
        self.guard = Guard(clock or MonotonicClock(), settings.breaker_failures, settings.breaker_cooldown_s,
                           settings.retry_budget_ratio, on_open=_count_open, on_retry=_count_retry)

    def channel(self, address: str) -> grpc.aio.Channel:
        ch = self._channels.get(address)
        if ch is None:
            ch = grpc.aio.insecure_channel(address, options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # Reconnect quickly after a restarted service: sessions recover by themselves.
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000),
                *CHANNEL_KEEPALIVE,
            ])
            self._channels[address] = ch
        return ch

    def all_addresses(self) -> dict[str, list[str]]:
        s = self.settings
        return {svc: s.addrs(svc) + s.addrs(svc, canary=True) for svc in SERVICES}

    def canary_addresses(self) -> dict[str, list[str]]:
        return {svc: self.settings.addrs(svc, canary=True) for svc in SERVICES}

    def for_session(self, session_id: str, decided: dict[str, str] | None = None) -> SessionBackends:
        """``decided``: the variants stored with a resumed session (None or {} = a new one)."""
        s = self.settings
        routes: dict[str, tuple[str, list[str], str]] = {}
        variants: dict[str, str] = {}
        for svc in SERVICES:
            configured = s.addrs(svc, canary=True)
            serving = [a for a in configured if self.canary_health.serving(a)]
            want = (decided or {}).get(svc)
            if want is None:
                want = "canary" if configured and in_canary(session_id, svc, self.release.weight(svc)) else "stable"
            if want == "canary" and self.release.withdrawn(svc):
                want = "stable"
            if want == "canary" and configured and not serving:
                metrics.CANARY_FALLBACKS.labels(**metrics.base(), backend=svc).inc()
                want = "stable"
            addr, variant = choose(session_id, svc, s.addrs(svc), serving, 0.0, want)
            replicas = serving if variant == "canary" else s.addrs(svc)
            routes[svc] = (addr, replicas, variant)
            variants[svc] = variant

        def routed(kind: type[R], svc: str) -> R:
            addr, replicas, variant = routes[svc]
            return kind(svc, addr, replicas, self.guard, functools.partial(self.client, svc, variant=variant),
                        variant)
        return SessionBackends(vad=routed(RoutedStreaming, "vad"), asr=routed(RoutedStreaming, "asr"),
                               llm=routed(RoutedLlm, "llm"), rag=routed(RoutedRag, "rag"),
                               tts=routed(RoutedTts, "tts"), variants=variants)

    def client(self, service: str, address: str, variant: str = "stable"):
        """The plain gRPC client of one address (clients are cheap: the channel
        is shared); ``variant``: the pool it was chosen from."""
        s = self.settings
        args = (service, address, self.channel(address), s.backend_timeout_s)
        if service == "vad" and s.vad_idle_timeout_s > 0:   # 0: no progress asked (an older VAD)
            return GrpcVad(*args, s.vad_idle_timeout_s, self.faults, variant)
        if service == "vad":
            return GrpcVad(*args, s.backend_idle_timeout_s, self.faults, variant, progress=False)
        return _CLIENTS[service](*args, s.backend_idle_timeout_s, self.faults, variant)

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()


def _count_open(service: str, address: str) -> None:
    metrics.BREAKER_OPENS.labels(**metrics.base(), backend=service).inc()


def _count_retry(service: str) -> None:
    metrics.BACKEND_RETRIES.labels(**metrics.base(), backend=service).inc()
