"""Which backend addresses a session uses. Each service has a stable list and an
optional canary list; a session is assigned stable or canary per service once,
at creation, from a hash of its id (so the choice is reproducible and a resumed
session lands on the same variant), and keeps those backends for its lifetime.
Within a list, the same hash spreads sessions over the replicas."""
from __future__ import annotations

import dataclasses
import hashlib

import grpc

from common.server import MAX_MESSAGE_BYTES
from services.gateway.backends.grpc_clients import GrpcAsr, GrpcLlm, GrpcRag, GrpcTts, GrpcVad
from services.gateway.settings import GatewaySettings

SERVICES = ("vad", "asr", "llm", "rag", "tts")
_CLIENTS = {"vad": GrpcVad, "asr": GrpcAsr, "llm": GrpcLlm, "rag": GrpcRag, "tts": GrpcTts}


def _bucket(session_id: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{session_id}".encode()).digest()[:8], "big")


def choose(session_id: str, service: str, stable: list[str], canary: list[str],
           canary_percent: float) -> tuple[str, str]:
    """(address, variant) for one service of one session; deterministic in the id."""
    use_canary = bool(canary) and (_bucket(session_id, "canary:" + service) % 10000) < canary_percent * 100
    pool = canary if use_canary else stable
    if not pool:
        raise ValueError(f"no {service} address configured")
    return pool[_bucket(session_id, "replica:" + service) % len(pool)], ("canary" if use_canary else "stable")


@dataclasses.dataclass
class SessionBackends:
    vad: GrpcVad
    asr: GrpcAsr
    llm: GrpcLlm
    rag: GrpcRag
    tts: GrpcTts
    variants: dict[str, str]


class BackendPool:
    """One gRPC channel per address for the whole process (channels reconnect by themselves)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        ch = self._channels.get(address)
        if ch is None:
            ch = grpc.aio.insecure_channel(address, options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # Reconnect quickly after a restarted service: sessions recover by themselves.
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ])
            self._channels[address] = ch
        return ch

    def all_addresses(self) -> dict[str, list[str]]:
        s = self.settings
        return {svc: s.addrs(svc) + s.addrs(svc, canary=True) for svc in SERVICES}

    def for_session(self, session_id: str) -> SessionBackends:
        s = self.settings
        clients, variants = {}, {}
        for svc in SERVICES:
            addr, variant = choose(session_id, svc, s.addrs(svc), s.addrs(svc, canary=True),
                                   s.canary_percent)
            clients[svc] = _CLIENTS[svc](svc, addr, self.channel(addr), s.backend_timeout_s)
            variants[svc] = variant
        return SessionBackends(variants=variants, **clients)

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
