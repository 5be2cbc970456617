"""Invariant: gateway-restart's restart is done only when a gateway started
after the command answers /healthz; an old process still answering (the
command returned before it exited) is not the restart."""
from __future__ import annotations

import httpx
import pytest

from drills.restart import restart_with, start_time

METRICS = "# HELP process_start_time_seconds Start time\n# TYPE process_start_time_seconds gauge\n" \
          "process_start_time_seconds 1.7e+09\nprocess_cpu_seconds_total 3.0\n"


class FakeGateway:
    """Answers /healthz 200 throughout; its start time changes after
    ``old_polls`` /metrics reads that follow the first (the one before the
    command), or never (None)."""

    def __init__(self, old_polls: int | None, collector: bool = True) -> None:
        self.old_polls, self.collector = old_polls, collector
        self.metrics_reads = 0
        self.health_reads = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            self.health_reads += 1
            return httpx.Response(200, json={"status": "ok"})
        self.metrics_reads += 1
        if not self.collector:
            return httpx.Response(200, text="voice_turns_total 3\n")
        restarted = self.old_polls is not None and self.metrics_reads > 1 + self.old_polls
        return httpx.Response(200, text=METRICS.replace("1.7e+09", "1.8e+09" if restarted else "1.7e+09"))


def test_start_time_is_read_from_the_exposition():
    assert start_time(METRICS) == 1.7e9
    assert start_time("voice_turns_total 3\n") is None
    assert start_time("process_start_time_seconds_other 5\n") is None


async def test_an_old_process_still_answering_is_not_the_restart():
    gw = FakeGateway(old_polls=3)
    await restart_with("true", "http://gw", timeout_s=10, poll_s=0.01, transport=httpx.MockTransport(gw.handler))
    assert gw.metrics_reads == 1 + 3 + 1       # before, three old answers, the new process
    assert gw.health_reads == 4


async def test_a_command_that_restarts_nothing_times_out_and_says_so():
    gw = FakeGateway(old_polls=None)
    with pytest.raises(RuntimeError, match="still has process_start_time_seconds"):
        await restart_with("true", "http://gw", timeout_s=0.2, poll_s=0.01,
                           transport=httpx.MockTransport(gw.handler))


async def test_without_a_start_time_healthz_is_enough():
    gw = FakeGateway(old_polls=None, collector=False)
    await restart_with("true", "http://gw", timeout_s=10, poll_s=0.01, transport=httpx.MockTransport(gw.handler))
    assert gw.health_reads == 1


async def test_a_failing_command_is_an_error():
    gw = FakeGateway(old_polls=0)
    with pytest.raises(RuntimeError, match="restart command failed: false"):
        await restart_with("false", "http://gw", transport=httpx.MockTransport(gw.handler))
