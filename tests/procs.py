"""Start real service processes on free ports for integration tests, and stop
them the way production does (SIGTERM, drain)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from stack import health

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clips() -> list[tuple[Path, str]]:
    """(wav path, reference text) for every project clip."""
    return [(w, w.with_suffix(".txt").read_text().strip()) for w in sorted(SPEECH.glob("*.wav"))]


class ServiceProcess:
    """A real service process (``python -m module``) listening on a free port."""

    def __init__(self, module: str, env_prefix: str, env: dict[str, str] | None = None,
                 grpc_service: bool = True) -> None:
        self.module, self.prefix, self.grpc_service = module, env_prefix, grpc_service
        self.port, self.metrics_port = free_port(), free_port()
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = ROOT / "artifacts" / "logs" / f"{module.replace('.', '_')}-{self.port}.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 300) -> "ServiceProcess":
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> "ServiceProcess":
        """Start the process without waiting (so several models load in parallel)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ) | {
            "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
            f"{self.prefix}HOST": "127.0.0.1", f"{self.prefix}PORT": str(self.port),
            f"{self.prefix}METRICS_PORT": str(self.metrics_port),
        } | self.extra_env
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
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.log()}")
                if self.ready():
                    return self
                time.sleep(0.2)
            raise RuntimeError(f"{self.module} not ready in {timeout} s:\n{self.log()}")
        except BaseException:
            self.stop()
            raise

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
