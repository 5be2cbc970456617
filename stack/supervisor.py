"""Run every component as a child process with prefixed logs; restart one that
dies (with backoff); on Ctrl-C or SIGTERM stop all, gateway first, so
in-flight conversations drain before the services under them go."""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from stack import health
from common.components import COMPONENTS, GATEWAY, REDIS_URL, Component, gateway_backend_env

log = logging.getLogger("stack")
ROOT = Path(__file__).resolve().parent.parent
COLORS = ["36", "32", "33", "35", "34", "31", "37"]
# A child gets a process group of its own, so a terminal's Ctrl-C reaches only
# the supervisor, which stops the children in order (gateway first). Not a
# session of its own: on Linux (CONFIG_SCHED_AUTOGROUP) a new session is a new
# scheduling group, where a thread's nice value weighs only against the threads
# of its own process, so the ASR's nice-19 interims and the LLM's nice-5 answer
# tails would take an equal share of the cores with the other services' urgent
# work (docs/capacity-rechecks.md, re-check 25). The price: the stack is one
# group against the rest of the machine (a browser, a build) instead of one
# per service. No terminal input: a background group reading it would stop.
OWN_GROUP: dict = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], color: str) -> None:
        self.name, self.argv, self.env, self.color = name, argv, env, color
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = False
        self._pump: asyncio.Task | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, **OWN_GROUP)
        self._pump = asyncio.create_task(self._prefix_output(), name=f"pump-{self.name}")

    async def _prefix_output(self) -> None:
        assert self.proc and self.proc.stdout
        tty = sys.stdout.isatty()
        tag = f"\033[{self.color}m{self.name:>8} |\033[0m" if tty else f"{self.name:>8} |"
        async for line in self.proc.stdout:
            sys.stdout.write(f"{tag} {line.decode(errors='replace').rstrip()}\n")
            sys.stdout.flush()

    async def stop(self, grace: float) -> None:
        self.stopping = True
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except asyncio.TimeoutError:
                log.warning("%s did not stop in %.0f s: killing", self.name, grace)
                self.proc.kill()
                await self.proc.wait()
        if self._pump:
            await asyncio.wait([self._pump], timeout=1.0)


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}:{ROOT / 'gen'}"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")
    # Each child gets its share of the CPU; users override per service.
    return env | {k: v for k, v in extra.items() if k not in os.environ}


async def _redis_answers(url: str) -> bool:
    try:
        import redis.asyncio as aioredis

        r = aioredis.from_url(url, socket_connect_timeout=0.5)
        try:
            return bool(await r.ping())
        finally:
            await r.aclose()
    except Exception:
        return False


class Supervisor:
    def __init__(self, prometheus: bool = False, only: list[str] | None = None) -> None:
        self.children: dict[str, Child] = {}
        self.prometheus = prometheus
        self.only = only
        self._stop = asyncio.Event()
        self._watchers: list[asyncio.Task] = []

    def _components(self) -> list[Component]:
        env = dict(os.environ)
        return [c.resolved(env) for c in COMPONENTS if not self.only or c.name in self.only]

    def _speech_addresses(self) -> tuple[Component, ...]:
        env = dict(os.environ)
        return tuple(c.resolved(env) for c in COMPONENTS if c.grpc)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # SIGHUP: the terminal closed; stop in order, as for Ctrl-C.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self._start_all()
            if not self._stop.is_set():
                port = GATEWAY.resolved(dict(os.environ)).port
                print(f"\n  assistant ready: open http://127.0.0.1:{port}/ "
                      f"(Realtime API at ws://127.0.0.1:{port}/v1/realtime). Ctrl-C stops.\n",
                      flush=True)
            await self._stop.wait()
        finally:
            await self._stop_all()
        return 0

    async def _start_all(self) -> None:
        redis_url = os.environ.get("GATEWAY_REDIS_URL", REDIS_URL)
        if not await _redis_answers(redis_url):
            await self._start_redis(redis_url)
        speech = [c for c in self._components() if c.grpc]
        for i, c in enumerate(speech):
            await self._spawn(c.name, [_python(), "-m", c.module], c.env(), COLORS[i % len(COLORS)])
        for c in speech:
            ok = await health.wait_until(lambda c=c: health.grpc_serving(c.address), 600)
            if not ok:
                raise SystemExit(f"{c.name} did not report SERVING on {c.address}")
            log.info("%s SERVING on %s", c.name, c.address)
        gateways = [c for c in self._components() if c.name == "gateway"]
        if gateways:
            gw = gateways[0]
            await self._spawn("gateway", [_python(), "-m", gw.module],
                              gw.env() | gateway_backend_env(self._speech_addresses()), "37")
            url = f"http://127.0.0.1:{gw.port}/healthz"
            if not await health.wait_until(lambda: health.http_ok(url), 120):
                raise SystemExit(f"gateway did not become healthy at {url}")
        if self.prometheus:
            await self._start_prometheus()

    async def _spawn(self, name: str, argv: list[str], env: dict[str, str], color: str) -> None:
        child = Child(name, argv, child_env(env), color)
        await child.start()
        self.children[name] = child
        self._watchers.append(asyncio.create_task(self._watch(child), name=f"watch-{name}"))

    async def _watch(self, child: Child) -> None:
        """Restart a child that dies on its own, with backoff up to 30 s."""
        backoff = 1.0
        while True:
            assert child.proc
            rc = await child.proc.wait()
            if child.stopping or self._stop.is_set():
                return
            log.error("%s exited with %s; restarting in %.0f s", child.name, rc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            await child.start()

    async def _start_redis(self, url: str) -> None:
        exe = shutil.which("redis-server")
        if not exe:
            raise SystemExit("no Redis answers at %s and redis-server is not installed "
                             "(scripts/install.sh installs it)" % url)
        port = url.rsplit(":", 1)[-1].split("/")[0]
        await self._spawn("redis", [exe, "--port", port, "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no"], {}, "31")
        if not await health.wait_until(lambda: _redis_answers(url), 10):
            raise SystemExit(f"redis-server did not answer at {url}")

    async def _start_prometheus(self) -> None:
        exe = shutil.which("prometheus")
        cfg = ROOT / "observability" / "prometheus" / "prometheus.yml"
        if not exe or not cfg.exists():
            log.warning("prometheus not installed or %s missing: not started", cfg)
            return
        data = ROOT / "var" / "prometheus"
        data.mkdir(parents=True, exist_ok=True)
        await self._spawn("prom", [exe, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                                   "--web.listen-address=127.0.0.1:9090",
                                   # trace-id exemplars on latency histograms link graphs to traces
                                   "--enable-feature=exemplar-storage"], {}, "34")
        log.info("Prometheus on http://127.0.0.1:9090")

    async def _stop_all(self) -> None:
        for w in self._watchers:
            w.cancel()
        order = ["gateway"] + [c.name for c in COMPONENTS if c.grpc] + ["prom", "redis"]
        for name in order:
            if name in self.children:
                await self.children[name].stop(15.0)
