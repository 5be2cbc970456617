"""Invariant: gateway-restart's restart is done only when a gateway started
after the command answers /healthz; an old process still answering (the
command returned before it exited) is not the restart, and neither is a new
one not yet healthy."""
from __future__ import annotations

import httpx
import pytest

from drills.restart import restart_with, start_time

METRICS = "# HELP process_start_time_seconds Start time\n# TYPE process_start_time_seconds gauge\n" \
          "process_start_time_seconds {t}\nprocess_cpu_seconds_total 3.0\n"


class FakeGateway:
    """/metrics gives the old start time for ``old_polls`` reads after the
    first (the one before the command), then a new one (never, with None);
    the first ``metrics_errors`` reads fail. /healthz answers 503 for the
    first ``unhealthy`` reads after the restart, then 200."""

    def __init__(self, old_polls: int | None, collector: bool = True, metrics_errors: int = 0,
                 unhealthy: int = 0) -> None:
        self.old_polls, self.collector = old_polls, collector
        self.metrics_errors, self.unhealthy = metrics_errors, unhealthy
        self.metrics_reads = self.health_reads = 0
        self.restarted = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            self.health_reads += 1
            sick = self.restarted and self.unhealthy > 0
            self.unhealthy -= sick
            return httpx.Response(503 if sick else 200, json={"status": "ok"})
        self.metrics_reads += 1
        if self.metrics_reads <= self.metrics_errors:
            return httpx.Response(500, text="busy")
        if not self.collector:
            return httpx.Response(200, text="voice_turns_total 3\n")
        reads = self.metrics_reads - self.metrics_errors
        self.restarted = self.old_polls is not None and reads > 1 + self.old_polls
        return httpx.Response(200, text=METRICS.format(t="1.8e+09" if self.restarted else "1.7e+09"))


async def _restart(gw: FakeGateway, command: str = "true", timeout_s: float = 10) -> None:
    await restart_with(command, "http://gw", timeout_s=timeout_s, poll_s=0.01,
                       transport=httpx.MockTransport(gw.handler))


def test_start_time_is_read_from_the_exposition():
    assert start_time(METRICS.format(t="1.7e+09")) == 1.7e9
    assert start_time("voice_turns_total 3\n") is None
    assert start_time("process_start_time_seconds_other 5\n") is None


async def test_an_old_process_still_answering_is_not_the_restart():
    gw = FakeGateway(old_polls=3)
    await _restart(gw)
    assert gw.metrics_reads == 1 + 3 + 1       # before, three old answers, the new process
    assert gw.health_reads == 1                # asked only of the new one


async def test_a_new_process_not_yet_healthy_is_waited_for():
    gw = FakeGateway(old_polls=0, unhealthy=2)
    await _restart(gw)
    assert gw.health_reads == 3


async def test_a_failed_first_read_is_retried_not_taken_for_no_start_time():
    gw = FakeGateway(old_polls=2, metrics_errors=1)
    await _restart(gw)
    assert gw.metrics_reads == 1 + 1 + 2 + 1   # the failed read, before, two old answers, the new one


async def test_a_command_that_restarts_nothing_times_out_and_says_so():
    with pytest.raises(RuntimeError, match="still has process_start_time_seconds"):
        await _restart(FakeGateway(old_polls=None), timeout_s=0.2)


async def test_a_restarted_gateway_never_healthy_is_named():
    with pytest.raises(RuntimeError, match=r"restarted gateway \(process_start_time_seconds 1800000000\) did not"):
        await _restart(FakeGateway(old_polls=0, unhealthy=10 ** 6), timeout_s=0.2)


async def test_without_a_start_time_healthz_is_enough():
    gw = FakeGateway(old_polls=None, collector=False)
    await _restart(gw)
    assert gw.health_reads == 1 and gw.metrics_reads == 3    # the before-read tried three times


async def test_a_failing_command_is_an_error():
    with pytest.raises(RuntimeError, match="restart command failed: false"):
        await _restart(FakeGateway(old_polls=0), command="false")
