"""`make run`'s supervisor really runs the assistant: every component comes up
and reports healthy, a component that dies is restarted, and Ctrl-C stops
every process it started (gateway first). Ports come from the environment, as
a user overriding them would set them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from stack import health
from common.components import COMPONENTS
from tests.procs import ROOT, free_port


def children_of(pid: int) -> dict[int, str]:
    """pid → command line of the direct children of ``pid``."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_supervisor_starts_restarts_and_stops_everything():
    env = dict(os.environ) | {"PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}", "PYTHONUNBUFFERED": "1"}
    for c in COMPONENTS:
        env[f"{c.env_prefix}PORT"] = str(free_port())
        if c.grpc:
            env[f"{c.env_prefix}METRICS_PORT"] = str(free_port())
    gw_port = env["GATEWAY_PORT"]
    proc = subprocess.Popen([sys.executable, "-m", "stack"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout
        for line in proc.stdout:
            lines.append(line)
            if "assistant ready" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(300), "no 'assistant ready' line:\n" + "".join(lines[-40:])
        assert any(f"http://127.0.0.1:{gw_port}/" in ln for ln in lines)
        assert health.http_ok(f"http://127.0.0.1:{gw_port}/healthz")
        # Logs are prefixed with the component's name.
        for name in ("vad", "asr", "llm", "rag", "tts", "gateway"):
            assert any(ln.lstrip().startswith(f"{name} |") for ln in lines), f"no {name} log lines"

        kids = children_of(proc.pid)
        # In the supervisor's session (one scheduling group, so the services'
        # nice values weigh against each other), each in its own process group.
        for pid in kids:
            assert os.getsid(pid) == os.getsid(proc.pid), f"{kids[pid]} has a session of its own"
            assert os.getpgid(pid) == pid, f"{kids[pid]} shares a process group"
        asr = [pid for pid, cmd in kids.items() if "services.asr" in cmd]
        assert len(asr) == 1, kids
        os.kill(asr[0], signal.SIGKILL)
        deadline = time.monotonic() + 120
        restarted = []
        while time.monotonic() < deadline and not restarted:
            time.sleep(0.5)
            restarted = [p for p, c in children_of(proc.pid).items() if "services.asr" in c and p != asr[0]]
        assert restarted, "asr was not restarted:\n" + "".join(lines[-20:])
        assert any("asr exited" in ln for ln in lines)
        # Healthy again once the new ASR loads its model.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not health.http_ok(f"http://127.0.0.1:{gw_port}/healthz"):
            time.sleep(0.5)
        assert health.http_ok(f"http://127.0.0.1:{gw_port}/healthz")

        kids = children_of(proc.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0
        time.sleep(0.5)
        assert not [p for p in kids if alive(p)], "children left running after Ctrl-C"
        text = "".join(lines)
        assert text.index("Finished server process") < text.index("vad stopped"), "gateway stops first"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
