"""The whole assistant started for a test run: the five speech services and
the gateway as real processes on free ports, wired together as `make run`
wires them. Used by the e2e, observability, browser and benchmark tiers."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from typing import Iterator

import redis

from common.components import GATEWAY, SPEECH_SERVICES
from tests.procs import ServiceProcess, free_port


def start_redis() -> tuple[subprocess.Popen, str]:
    """A Redis of the stack's own on a free port: sessions survive a gateway
    restart without depending on (or touching) a system Redis."""
    exe = shutil.which("redis-server")
    if not exe:
        raise RuntimeError("redis-server is not installed: run scripts/install.sh --dev")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis.from_url(url, socket_connect_timeout=0.2).ping():
                return proc, url
        except redis.RedisError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@dataclasses.dataclass
class Stack:
    services: dict[str, ServiceProcess]
    gateway: ServiceProcess
    redis: subprocess.Popen | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.gateway.address}/v1/realtime"

    @property
    def http_url(self) -> str:
        return f"http://{self.gateway.address}"

    def metrics_targets(self) -> dict[str, str]:
        """component name → host:port serving /metrics."""
        t = {n: f"127.0.0.1:{s.metrics_port}" for n, s in self.services.items()}
        t["gateway"] = self.gateway.address
        return t

    def log_tails(self, chars: int = 1500) -> str:
        """The end of every process's log: what a failed test prints to say why."""
        procs = {**self.services, "gateway": self.gateway}
        return "\n".join(f"--- {name} log (last {chars} chars) ---\n{p.log()[-chars:]}" for name, p in procs.items())

    def restart_gateway(self) -> None:
        """Stop the gateway (SIGTERM) and start it again on the same port."""
        self.gateway.stop()
        self.gateway.start(timeout=120)

    def stop(self) -> None:
        self.gateway.stop()
        for s in self.services.values():
            s.stop()
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(10)


def start_stack(service_env: dict[str, str] | None = None,
                gateway_env: dict[str, str] | None = None, canary: tuple[str, ...] = ()) -> Stack:
    """Start everything; ``service_env`` goes to every speech service (e.g. an
    OTLP endpoint), ``gateway_env`` to the gateway. ``canary``: services whose
    gateway canary pool is the service itself (routing, samples and the
    judge are exercised without a second model; a drill's fault scoped to
    the canary tells them apart)."""
    service_env = service_env or {}
    started: dict[str, ServiceProcess] = {}
    redis_proc = None
    try:
        procs = {}
        for c in SPEECH_SERVICES:
            env = {k.replace("SVC_", c.env_prefix): v for k, v in service_env.items()}
            procs[c.name] = ServiceProcess(c.module, c.env_prefix, env)
        for name, p in procs.items():  # spawn all, then wait, so models load in parallel
            started[name] = p.spawn()
        for p in procs.values():
            p.wait_ready()
        genv = {f"GATEWAY_{n.upper()}_ADDRS": p.address for n, p in started.items()}
        if "GATEWAY_REDIS_URL" in os.environ:
            genv["GATEWAY_REDIS_URL"] = os.environ["GATEWAY_REDIS_URL"]
        else:
            redis_proc, genv["GATEWAY_REDIS_URL"] = start_redis()
        genv |= {k.replace("SVC_", "GATEWAY_"): v for k, v in service_env.items()}
        # Test stacks open sessions freely (a test's session may still be closing
        # when the next opens); the admission tests set their own limit.
        genv["GATEWAY_MAX_SESSIONS"] = "0"
        genv |= {f"GATEWAY_{n.upper()}_CANARY_ADDRS": started[n].address for n in canary}
        genv |= gateway_env or {}
        gw = ServiceProcess(GATEWAY.module, GATEWAY.env_prefix, genv, grpc_service=False)
        gw.start(timeout=120)
        return Stack(started, gw, redis_proc)
    except Exception:
        for p in started.values():
            p.stop()
        if redis_proc is not None:
            redis_proc.kill()
        raise


def stack_fixture() -> Iterator[Stack]:
    st = start_stack()
    try:
        yield st
    finally:
        st.stop()
