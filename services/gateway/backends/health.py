"""Backend readiness for /healthz: every configured address must answer
grpc.health.v1 SERVING."""
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
