"""The gateway's backend interfaces are checked, not just declared: mypy
proves that the gRPC clients and the scripted fakes both implement every
Protocol of services/gateway/backends/interfaces.py (the claims are in
conformance.py). A fake that drifts from the real client (a renamed method, a
missing argument, a sync method where the interface awaits) fails here, before
turn-taking tests prove behaviour against an interface the product lacks.
The same run type-checks every service and common/ (mypy.ini)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Every service and the shared code: the gateway's interfaces and the claims
# of conformance.py, and every module beside them (a None that may reach an
# attribute, a tool call where text is expected, a session's engines typed as
# what they really are: the failover wrappers, not the bare gRPC clients).
CHECKED = ["services", "common"]


def mypy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini"),
                           "--no-incremental", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_the_services_type_check_and_the_gateways_clients_and_fakes_implement_its_interfaces():
    out = mypy(*CHECKED)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_check_catches_a_fake_that_drifted(tmp_path):
    """The check can fail: a client whose stream lacks ``flush`` is refused."""
    bad = tmp_path / "drifted.py"
    bad.write_text(
        "from services.gateway.backends.interfaces import AsrStream\n"
        "class Drifted:\n"
        "    async def send(self, pcm16k: bytes) -> None: ...\n"
        "    async def end_utterance(self, use_provisional: bool = False) -> None: ...\n"
        "    def results(self): ...\n"
        "    async def close(self) -> None: ...\n"
        "def claim(s: Drifted) -> None:\n"
        "    _s: AsrStream = s\n")
    out = mypy(str(bad))
    assert out.returncode == 1 and "flush" in out.stdout, out.stdout + out.stderr
