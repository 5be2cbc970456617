"""The whole assistant started for a test run: the five speech services and
the gateway as real processes on free ports, wired together as `make run`
wires them. Used by the e2e, observability, browser and benchmark tiers."""
from __future__ import annotations

import dataclasses
import os
from typing import Iterator

from stack.components import GATEWAY, SPEECH_SERVICES
from tests.procs import ServiceProcess


@dataclasses.dataclass
class Stack:
    services: dict[str, ServiceProcess]
    gateway: ServiceProcess

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

    def restart_gateway(self) -> None:
        """Stop the gateway (SIGTERM) and start it again on the same port."""
        self.gateway.stop()
        self.gateway.start(timeout=120)

    def stop(self) -> None:
        self.gateway.stop()
        for s in self.services.values():
            s.stop()


def start_stack(service_env: dict[str, str] | None = None,
                gateway_env: dict[str, str] | None = None) -> Stack:
    """Start everything; ``service_env`` goes to every speech service (e.g. an
    OTLP endpoint), ``gateway_env`` to the gateway."""
    service_env = service_env or {}
    started: dict[str, ServiceProcess] = {}
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
        genv["GATEWAY_REDIS_URL"] = os.environ.get("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/0")
        genv |= {k.replace("SVC_", "GATEWAY_"): v for k, v in service_env.items()}
        genv |= gateway_env or {}
        gw = ServiceProcess(GATEWAY.module, GATEWAY.env_prefix, genv, grpc_service=False)
        gw.start(timeout=120)
        return Stack(started, gw)
    except Exception:
        for p in started.values():
            p.stop()
        raise


def stack_fixture() -> Iterator[Stack]:
    st = start_stack()
    try:
        yield st
    finally:
        st.stop()
