"""gateway-restart: run the operator's restart command, and know when the
restart is done.

"Done" is a gateway that answers /healthz *and is not the process that was
there before*: many restart commands return before the old process has
exited (``pkill``, ``kubectl rollout restart``), and the old gateway then
answers /healthz for a while yet, so waiting for /healthz alone marked the
restart done at once (a fault time of 0.1 s in the report). A process is
told by ``process_start_time_seconds`` on its /metrics, the series the
dashboard's Restarts panel and the VoiceComponentRestarting alert count.

Behind a load balancer over several gateways, a different start time can
come from another replica that never restarted; give a restart command that
waits for its rollout then (``kubectl rollout restart ... && kubectl
rollout status ...``)."""
from __future__ import annotations

import asyncio
import logging
import time

import httpx

from loadtests.probes import parse

START_SERIES = "process_start_time_seconds"
log = logging.getLogger("drills.restart")


def start_time(metrics_text: str) -> float | None:
    """The process start time (unix seconds) in a Prometheus text exposition,
    or None when the series is missing (a platform without the process
    collector) or the text does not parse."""
    try:
        series = parse(metrics_text)
    except ValueError:
        return None
    return next((v for (name, _), v in series.items() if name == START_SERIES), None)


async def _started(c: httpx.AsyncClient) -> float | None:
    try:
        r = await c.get("/metrics")
    except httpx.HTTPError:
        return None
    return start_time(r.text) if r.status_code == 200 else None


async def _healthy(c: httpx.AsyncClient) -> bool:
    try:
        return (await c.get("/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def _started_before(c: httpx.AsyncClient, tries: int, poll_s: float) -> float | None:
    # One failed read would quietly turn the wait into /healthz alone (the
    # restart done at once): retry, and say so when it comes to that.
    for i in range(tries):
        if (t := await _started(c)) is not None:
            return t
        if i + 1 < tries:
            await asyncio.sleep(poll_s)
    log.warning("no %s on the gateway's /metrics: the restart counts as done at the first /healthz 200, "
                "which the old process may still give", START_SERIES)
    return None


async def restart_with(command: str, http_url: str, timeout_s: float = 300, poll_s: float = 0.5,
                       transport: httpx.AsyncBaseTransport | None = None, before_tries: int = 3) -> None:
    """Run ``command``, then wait until a gateway started after it answers
    /healthz 200 (``transport``: for tests). The start time is read first:
    once it has changed, the port is the new process's, so its /healthz 200
    is the new gateway's (the old one may still have answered /healthz a
    moment before)."""
    async with httpx.AsyncClient(base_url=http_url, timeout=2, transport=transport) as c:
        before = await _started_before(c, before_tries, poll_s)
        proc = await asyncio.create_subprocess_shell(command)
        if await proc.wait() != 0:
            raise RuntimeError(f"the restart command failed: {command}")
        deadline = time.monotonic() + timeout_s
        now: float | None = None
        while time.monotonic() < deadline:
            now = await _started(c) if before is not None else None
            # Without a start time before (no process collector), /healthz is all there is.
            if (before is None or (now is not None and now != before)) and await _healthy(c):
                return
            await asyncio.sleep(poll_s)
    if before is None:
        raise RuntimeError(f"the gateway did not answer /healthz within {timeout_s:.0f} s of the restart")
    if now == before:
        raise RuntimeError(f"no restarted gateway answered within {timeout_s:.0f} s of the restart command: "
                           f"the one answering still has {START_SERIES} {before:.0f} (did the command restart it?)")
    if now is None:
        raise RuntimeError(f"no gateway's /metrics gave {START_SERIES} within {timeout_s:.0f} s of the restart "
                           "command (is it up?)")
    raise RuntimeError(f"the restarted gateway ({START_SERIES} {now:.0f}) did not answer /healthz 200 within "
                       f"{timeout_s:.0f} s of the restart command")
