"""The supervisor's readiness wait must really wait: a check that returns a
coroutine (a lambda around an async probe) is awaited, not taken as truthy."""
from __future__ import annotations

from stack import health


async def test_wait_until_awaits_lambda_returning_coroutine():
    calls = []

    async def probe() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert await health.wait_until(lambda: probe(), 2.0, interval=0.001)
    assert len(calls) == 3


async def test_wait_until_gives_up_when_never_ready():
    async def never() -> bool:
        return False

    assert not await health.wait_until(lambda: never(), 0.05, interval=0.001)


async def test_grpc_serving_false_when_nothing_listens():
    from tests.procs import free_port

    assert not await health.grpc_serving(f"127.0.0.1:{free_port()}", timeout=0.5)
