"""gateway-restart: run the operator's restart command, and know when the
restart is done.

"Done" is a gateway that answers /healthz *and is not the process that was
there before*: many restart commands return before the old process has
exited (``pkill``, ``kubectl rollout restart``), and the old gateway then
answers /healthz for a while yet, so waiting for /healthz alone marked the
restart done at once (a fault time of 0.1 s in the report). A process is
told by ``process_start_time_seconds`` on its /metrics, the series the
dashboard's Restarts panel and the VoiceRestartLoop alert count.

Behind a load balancer over several gateways, a different start time can
come from another replica that never restarted; give a restart command that
waits for its rollout then (``kubectl rollout restart ... && kubectl
rollout status ...``)."""
from __future__ import annotations

import asyncio
import time

import httpx

START_SERIES = "process_start_time_seconds"


def start_time(metrics_text: str) -> float | None:
    """The process start time (unix seconds) in a Prometheus text exposition,
    or None when the series is missing (a platform without the process
    collector)."""
    for line in metrics_text.splitlines():
        name, _, rest = line.partition(" ")
        if name == START_SERIES:
            try:
                return float(rest.split()[0])
            except (IndexError, ValueError):
                return None
    return None


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


async def restart_with(command: str, http_url: str, timeout_s: float = 300, poll_s: float = 0.5,
                       transport: httpx.AsyncBaseTransport | None = None) -> None:
    """Run ``command``, then wait until a gateway started after it answers
    /healthz 200 (``transport``: for tests)."""
    async with httpx.AsyncClient(base_url=http_url, timeout=2, transport=transport) as c:
        before = await _started(c)
        proc = await asyncio.create_subprocess_shell(command)
        if await proc.wait() != 0:
            raise RuntimeError(f"the restart command failed: {command}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await _healthy(c):
                now = await _started(c)
                # Without a start time before (no process collector), /healthz is all there is.
                if before is None or (now is not None and now != before):
                    return
            await asyncio.sleep(poll_s)
    if before is not None:
        raise RuntimeError(f"no restarted gateway answered within {timeout_s:.0f} s of the restart command: "
                           f"the one answering still has {START_SERIES} {before:.0f} (did the command restart it?)")
    raise RuntimeError(f"the gateway did not answer /healthz within {timeout_s:.0f} s of the restart")
