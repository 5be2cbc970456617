"""Backend readiness for /healthz: every stable address must answer
grpc.health.v1 SERVING (a canary that does not only loses its sessions to
stable, see routing.py), and the canary probe that routing reads."""
from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def check(channel: grpc.aio.Channel, timeout: float = 1.0) -> str:
    """"SERVING", or what it said / why it did not answer."""
    try:
        resp = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


async def check_all(channels: dict[str, dict[str, grpc.aio.Channel]]) -> dict[str, dict[str, str]]:
    """{service: {address: status}} for every address, probed concurrently."""
    pairs = [(svc, addr, ch) for svc, chs in channels.items() for addr, ch in chs.items()]
    results = await asyncio.gather(*(check(ch) for _, _, ch in pairs))
    out: dict[str, dict[str, str]] = {}
    for (svc, addr, _), status in zip(pairs, results):
        out.setdefault(svc, {})[addr] = status
    return out


class CanaryHealth:
    """Which canary addresses serve, probed in the background (routing must
    not wait on a probe). An address counts as serving until a probe says
    otherwise, so a gateway that just started routes as configured."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}

    def serving(self, address: str) -> bool:
        return self.status.get(address, "SERVING") == "SERVING"

    async def refresh(self, channels: dict[str, grpc.aio.Channel], timeout: float = 1.0) -> None:
        results = await asyncio.gather(*(check(ch, timeout) for ch in channels.values()))
        self.status = dict(zip(channels, results))
