"""Start real service processes on free ports for integration tests, and stop
them the way production does (SIGTERM, drain)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from clients.clips import SPEECH, clips  # noqa: F401  (re-exported for the tests)
from stack import health

ROOT = Path(__file__).resolve().parent.parent


_EPHEMERAL_LOW = 32768   # Linux's default ip_local_port_range starts here
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _EPHEMERAL_LOW


def free_port() -> int:
    """A port free now and outside the kernel's ephemeral range.

    A port the kernel picked (bind to 0) comes from the ephemeral range, where
    every outgoing connection of the test run also takes its local port: in a
    fresh-clone CI run a gRPC client connection took such a port between the
    test choosing it and the service binding it ("Failed to bind to address").
    Ports below that range are never handed out to outgoing connections."""
    high = max(1025, _ephemeral_low() - 1)
    low = max(1024, high - 20000)
    for _ in range(200):
        port = random.randint(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:     # a crowded host: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """A real service process (``python -m module``) listening on a free port."""

    def __init__(self, module: str, env_prefix: str, env: dict[str, str] | None = None,
                 grpc_service: bool = True) -> None:
        self.module, self.prefix, self.grpc_service = module, env_prefix, grpc_service
        self.port, self.metrics_port = free_port(), free_port()
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = self._log_path()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 300) -> "ServiceProcess":
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> "ServiceProcess":
        """Start the process without waiting (so several models load in parallel)."""
        self.log_path = self._log_path()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ) | {
            "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
            f"{self.prefix}HOST": "127.0.0.1", f"{self.prefix}PORT": str(self.port),
            f"{self.prefix}METRICS_PORT": str(self.metrics_port),
        } | self.extra_env
        if getattr(self, "_log", None) is not None and not self._log.closed:
            self._log.close()            # a restart after a kill: the dead process's handle
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", self.module], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 300) -> "ServiceProcess":
        """Wait for SERVING; on any failure (even an exception from the probe)
        the process is stopped, so no test leaves a service running."""
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        try:
            rebinds = 0
            while time.monotonic() < deadline:
                if self.proc.poll() is not None and rebinds < 3 and self._lost_its_port():
                    rebinds += 1            # another process took the port first: new ports, again
                    self._log.close()
                    self.port, self.metrics_port = free_port(), free_port()
                    self.spawn()
                    continue
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.log()}")
                if self.ready():
                    return self
                time.sleep(0.2)
            raise RuntimeError(f"{self.module} not ready in {timeout} s:\n{self.log()}")
        except BaseException:
            self.stop()
            raise

    def _log_path(self) -> Path:
        return ROOT / "artifacts" / "logs" / f"{self.module.replace('.', '_')}-{self.port}.log"

    def _lost_its_port(self) -> bool:
        text = self.log()
        return "Failed to bind to address" in text or "Address already in use" in text

    def ready(self) -> bool:
        if self.grpc_service:
            # Callable from async tests too: the probe runs on its own loop in a thread.
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                return ex.submit(asyncio.run, health.grpc_serving(self.address)).result()
        return health.http_ok(f"http://{self.address}/healthz")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, grace: float = 15) -> int | None:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()


@contextlib.contextmanager
def running(module: str, env_prefix: str, env: dict[str, str] | None = None,
            grpc_service: bool = True) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(module, env_prefix, env, grpc_service).start()
    try:
        yield svc
    finally:
        svc.stop()
