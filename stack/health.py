"""Readiness probes the supervisor and tests share: gRPC health and HTTP /healthz."""
from __future__ import annotations

import asyncio
import inspect
import time
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def grpc_serving(address: str, timeout: float = 1.0) -> bool:
    try:
        async with grpc.aio.insecure_channel(address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
            return resp.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.aio.AioRpcError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


async def wait_until(check, deadline_s: float, interval: float = 0.2) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        ok = check()
        if inspect.isawaitable(ok):  # a coroutine function, or a lambda returning one
            ok = await ok
        if ok:
            return True
        await asyncio.sleep(interval)
    return False
