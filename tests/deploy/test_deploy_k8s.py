"""The Kubernetes manifests (deploy/k8s: kustomize base, canary and gpu
overlays, a canary component per speech service) pass the Kubernetes schema
(kubernetes-validate, offline, strict, oldest and newest supported versions)
and describe the system `make run` starts: a Deployment and Service per
component with its ports, environment names and values, native gRPC probes
on the gRPC port, requests and limits from deploy/sizing.py, an HPA per
speech service on CPU and one for the gateway on sessions per pod (below its
session limit, on the metric the prometheus-adapter rule serves), gateway
readiness that includes room for a session, PDBs, the gateway's Redis; canaries reachable only through
their own Service that the gateway's canary env names; ServiceMonitors on
every metrics port and PrometheusRules equal to observability's rules.
Nothing here ran on a real cluster."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy.configdoc import env_names
from deploy.sizing import SIZES
from common.components import COMPONENTS, GATEWAY, SPEECH_SERVICES, gateway_backend_env
from tests.deploy import deploy_kustomize as kz
from tests.deploy.deploy_helpers import ROOT

K8S = ROOT / "deploy" / "k8s"
TREES = {"base": K8S / "base", "canary": K8S / "overlays" / "canary", "gpu": K8S / "overlays" / "gpu"}
VERSIONS = ("1.28.0", "1.37.0")
CRD_GROUP = "monitoring.coreos.com/"
PREFIXES = {c.env_prefix: c for c in COMPONENTS}
_cache: dict[str, list[dict]] = {}


def rendered(tree: str) -> list[dict]:
    if tree not in _cache:
        _cache[tree] = kz.render(TREES[tree])
    return _cache[tree]


def objs(tree: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered(tree) if o["kind"] == kind}


def container(dep: dict) -> dict:
    [c] = dep["spec"]["template"]["spec"]["containers"]
    return c


def env_of(dep: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container(dep).get("env", [])}


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# ------------------------------------------------------------- rendering
def _component_overlay(root: Path, svc: str) -> Path:
    d = root / "overlays" / f"test-canary-{svc}"
    d.mkdir(parents=True)
    (d / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../../base"], "components": [f"../../components/canary-{svc}"]}))
    return d


@pytest.mark.skipif(kz.kubectl() is None, reason="kubectl not installed: fallback renderer used alone")
@pytest.mark.parametrize("tree", list(TREES))
def test_fallback_renderer_equals_kustomize(tree):
    """On machines without kubectl the tests use the fallback: it must render the same."""
    assert kz.by_key(kz.render_builtin(TREES[tree])) == kz.by_key(kz.render_kubectl(TREES[tree]))


@pytest.mark.parametrize("tree", list(TREES))
def test_every_object_passes_the_kubernetes_schema(tree):
    checked = 0
    for o in rendered(tree):
        if o["apiVersion"].startswith(CRD_GROUP):
            continue  # CRDs: no schema in kubernetes-validate; checked structurally below
        for v in VERSIONS:
            kubernetes_validate.validate(o, v, strict=True)
        checked += 1
    assert checked > 20


def test_schema_validation_is_real():
    dep = dict(objs("base", "Deployment")["asr"])
    bad = yaml.safe_load(yaml.safe_dump(dep))
    bad["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)
    bad = yaml.safe_load(yaml.safe_dump(dep))
    bad["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def test_everything_is_in_one_namespace():
    ns = objs("base", "Namespace")
    assert list(ns) == ["voice-assistant"]
    for o in rendered("base"):
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == "voice-assistant", kz.key(o)


# ------------------------------------------------------- agreement with make run
@pytest.mark.parametrize("c", COMPONENTS, ids=lambda c: c.name)
def test_deployment_and_service_match_make_run(c):
    dep, svc = objs("base", "Deployment")[c.name], objs("base", "Service")[c.name]
    ctr = container(dep)
    assert ctr["command"] == ["python", "-m", c.module]
    assert ctr["image"].startswith(f"voice-assistant/{c.name}:")
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert ports[("grpc" if c.grpc else "http")] == c.port
    if c.grpc:
        assert ports["metrics"] == c.metrics_port
    env = env_of(dep)
    for k, v in c.env(host="0.0.0.0").items():
        assert env.get(k) == v, f"{c.name}: {k}={env.get(k)!r}, make run sets {v!r}"
    assert selects(svc["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
    assert selects(dep["spec"]["selector"]["matchLabels"], dep["spec"]["template"]["metadata"]["labels"])
    svc_ports = {p["port"] for p in svc["spec"]["ports"]}
    assert c.port in svc_ports and (not c.grpc or c.metrics_port in svc_ports)


@pytest.mark.parametrize("c", SPEECH_SERVICES, ids=lambda c: c.name)
def test_speech_services_have_native_grpc_probes(c):
    ctr = container(objs("base", "Deployment")[c.name])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert ctr[probe]["grpc"]["port"] == c.port, f"{c.name} {probe}"
    # The model loads before SERVING: startup must allow minutes, liveness waits for it.
    start = ctr["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 120


def test_gateway_readiness_is_readyz_and_liveness_does_not_follow_backends_or_sessions():
    ctr = container(objs("base", "Deployment")[GATEWAY.name])
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"   # backends + room for a session
    assert "httpGet" not in ctr["livenessProbe"] or \
        ctr["livenessProbe"]["httpGet"]["path"] not in ("/healthz", "/readyz")



def test_the_gateways_at_their_most_admit_no_more_sessions_than_the_speech_services_serve():
    """docs/deployment.md, "Capacity and admission": every admitted session may
    hold a VAD and an ASR stream and an answer's LLM and TTS streams at once, so
    the gateway's maxReplicas x GATEWAY_MAX_SESSIONS stays within each of those
    services' maxReplicas x <PREFIX>MAX_STREAMS (the refusals stay a plain
    server_busy at the gateway, not RESOURCE_EXHAUSTED in a turn)."""
    from deploy.configdoc import fields

    hpas = objs("base", "HorizontalPodAutoscaler")
    limit = int(env_of(objs("base", "Deployment")[GATEWAY.name])["GATEWAY_MAX_SESSIONS"])
    sessions = hpas[GATEWAY.name]["spec"]["maxReplicas"] * limit
    for c in COMPONENTS:
        if c.name not in ("vad", "asr", "llm", "tts"):
            continue
        streams = next(f.default for f in fields(c) or () if f.env == f"{c.env_prefix}MAX_STREAMS")
        served = hpas[c.name]["spec"]["maxReplicas"] * streams
        assert sessions <= served, f"{sessions} sessions at most, {c.name} serves {served} streams"

def test_gateway_hpa_scales_on_sessions_per_pod_below_the_limit():
    hpa = objs("base", "HorizontalPodAutoscaler")[GATEWAY.name]["spec"]
    [metric] = hpa["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "voice_gateway_active_sessions"
    limit = int(env_of(objs("base", "Deployment")[GATEWAY.name])["GATEWAY_MAX_SESSIONS"])
    target = float(metric["pods"]["target"]["averageValue"])
    assert 0 < target < limit, "scale out before every pod is full (and refusing)"
    # the adapter rule serves exactly the metric the HPA asks for
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    [rule] = values["rules"]["custom"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"]
    assert rule["seriesQuery"].startswith("voice_gateway_active_sessions{")
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


@pytest.mark.parametrize("c", COMPONENTS, ids=lambda c: c.name)
def test_requests_and_limits_follow_the_sizing_table(c):
    res = container(objs("base", "Deployment")[c.name])["resources"]
    size = SIZES[c.name]
    assert res["requests"] == {"cpu": size.cpu_request, "memory": size.mem_request}
    assert res["limits"] == {"cpu": size.cpu_limit, "memory": size.mem_limit}


def test_every_container_has_requests_limits_and_runs_as_non_root():
    for tree in TREES:
        for o in rendered(tree):
            spec = o.get("spec", {}).get("template", {}).get("spec")
            if not spec:
                continue
            assert spec["securityContext"]["runAsNonRoot"] is True, kz.key(o)
            for ctr in spec["containers"]:
                assert ctr["resources"]["requests"] and ctr["resources"]["limits"], kz.key(o)
                assert ctr["securityContext"]["allowPrivilegeEscalation"] is False


def test_hpa_for_every_component_and_pdbs():
    hpas, pdbs, deps = objs("base", "HorizontalPodAutoscaler"), objs("base", "PodDisruptionBudget"), \
        objs("base", "Deployment")
    for c in COMPONENTS:
        ref = hpas[c.name]["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) == ("Deployment", c.name)
        assert 2 <= hpas[c.name]["spec"]["minReplicas"] < hpas[c.name]["spec"]["maxReplicas"]
        # The HPA owns the replica count: a fixed one would fight it on every apply.
        assert "replicas" not in deps[c.name]["spec"]
    for c in COMPONENTS:
        pdb = pdbs[c.name]["spec"]
        assert selects(pdb["selector"]["matchLabels"], deps[c.name]["spec"]["template"]["metadata"]["labels"])
        floor = hpas[c.name]["spec"]["minReplicas"]
        assert pdb["minAvailable"] < floor, f"{c.name}: the PDB would block every drain"


def test_gateway_env_points_at_services_that_exist():
    services = objs("base", "Service")
    env = env_of(objs("base", "Deployment")[GATEWAY.name])
    for key in gateway_backend_env():
        assert key in env
    for c in SPEECH_SERVICES:
        host, port = env[f"GATEWAY_{c.name.upper()}_ADDRS"].split(":")
        assert host == c.name and int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
    redis = env["GATEWAY_REDIS_URL"]
    assert redis.startswith("redis://redis:6379")
    assert "redis" in services and "redis" in objs("base", "StatefulSet")
    sts = objs("base", "StatefulSet")["redis"]
    assert sts["spec"]["volumeClaimTemplates"], "Redis keeps sessions on a volume"


def test_gateway_keys_come_from_a_mounted_secret():
    """Off loopback the gateway does not start without keys: every gateway pod
    reads them from the gateway-api-keys Secret (created by the operator)."""
    for tree in TREES:
        for name, dep in objs(tree, "Deployment").items():
            if not name.startswith(GATEWAY.name):
                continue
            c, pod = container(dep), dep["spec"]["template"]["spec"]
            env = env_of(dep)
            assert "GATEWAY_API_KEYS" not in env and "GATEWAY_ALLOW_INSECURE" not in env
            vol = next(v for v in pod["volumes"] if "secret" in v)
            mount = next(m for m in c["volumeMounts"] if m["name"] == vol["name"])
            assert vol["secret"]["secretName"] == "gateway-api-keys" and mount["readOnly"]
            assert env["GATEWAY_API_KEYS_FILE"].startswith(mount["mountPath"] + "/")


def test_redis_has_a_password_the_gateway_reads_from_a_mounted_secret():
    sts = objs("base", "StatefulSet")["redis"]
    redis = sts["spec"]["template"]["spec"]["containers"][0]
    [env] = [e for e in redis["env"] if e["name"] == "REDIS_PASSWORD"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "redis-password", "key": "password"}
    assert "--requirepass" in redis["command"][-1] and "exit 1" in redis["command"][-1]
    assert "REDIS_PASSWORD" in redis["readinessProbe"]["exec"]["command"][-1]
    dep = objs("base", "Deployment")[GATEWAY.name]
    pod, c = dep["spec"]["template"]["spec"], container(dep)
    vol = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "redis-password")
    mount = next(m for m in c["volumeMounts"] if m["name"] == vol["name"])
    assert env_of(dep)["GATEWAY_REDIS_PASSWORD_FILE"] == mount["mountPath"] + "/password"
    assert "@" not in env_of(dep)["GATEWAY_REDIS_URL"]      # never a password in the environment


@pytest.mark.parametrize("tree", list(TREES))
def test_every_env_name_is_a_setting_the_service_reads(tree):
    checked = 0
    for dep in objs(tree, "Deployment").values():
        for key in env_of(dep):
            prefix = next((p for p in PREFIXES if key.startswith(p)), None)
            known = env_names(PREFIXES[prefix]) if prefix else None
            if known is None:
                continue
            assert key in known, f"{dep['metadata']['name']}: {key} is not a setting"
            checked += 1
    assert checked


# ------------------------------------------------------------------- variants
@pytest.mark.parametrize("c", SPEECH_SERVICES, ids=lambda c: c.name)
def test_canary_component_of_each_speech_service(c, tmp_path):
    """base + components/canary-<svc>: a canary Deployment reachable only through
    <svc>-canary, which the gateway's GATEWAY_<SVC>_CANARY_ADDRS names."""
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay = _component_overlay(tmp_path / "k8s", c.name)
    out = kz.render(overlay)
    if kz.kubectl():
        assert kz.by_key(kz.render_builtin(overlay)) == kz.by_key(out)
    deps = {o["metadata"]["name"]: o for o in out if o["kind"] == "Deployment"}
    svcs = {o["metadata"]["name"]: o for o in out if o["kind"] == "Service"}
    canary, stable = deps[f"{c.name}-canary"], deps[c.name]
    assert env_of(canary)[f"{c.env_prefix}VARIANT"] == "canary"
    assert env_of(stable)[f"{c.env_prefix}VARIANT"] == "stable"
    assert container(canary)["command"] == container(stable)["command"]
    assert container(canary)["startupProbe"] == container(stable)["startupProbe"]
    canary_labels = canary["spec"]["template"]["metadata"]["labels"]
    stable_labels = stable["spec"]["template"]["metadata"]["labels"]
    assert selects(svcs[f"{c.name}-canary"]["spec"]["selector"], canary_labels)
    assert not selects(svcs[f"{c.name}-canary"]["spec"]["selector"], stable_labels)
    assert not selects(svcs[c.name]["spec"]["selector"], canary_labels), "stable traffic must not reach the canary"
    gw = env_of(deps[GATEWAY.name])
    assert gw[f"GATEWAY_{c.name.upper()}_CANARY_ADDRS"] == f"{c.name}-canary:{c.port}"
    # Scraped under the component's job, like stable (ServiceMonitor jobLabel).
    assert svcs[f"{c.name}-canary"]["metadata"]["labels"]["app.kubernetes.io/name"] == c.name
    pdb_names = {o["metadata"]["name"] for o in out if o["kind"] == "PodDisruptionBudget"}
    assert f"{c.name}-canary" not in pdb_names


def test_release_controller_runs_the_loop_on_the_gateways_redis():
    deps = objs("base", "Deployment")
    rel, gw = deps["release-controller"], deps[GATEWAY.name]
    c = container(rel)
    assert c["command"] == ["python", "-m", "release", "run", "--probes"]
    assert c["image"] == container(gw)["image"], "the gateway image holds the release package"
    assert rel["spec"]["replicas"] == 1 and rel["spec"]["strategy"]["type"] == "Recreate"
    env, gw_env = env_of(rel), env_of(gw)
    assert env["RELEASE_REDIS_URL"] == gw_env["GATEWAY_REDIS_URL"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert env["RELEASE_REDIS_PASSWORD_FILE"] == gw_env["GATEWAY_REDIS_PASSWORD_FILE"]
    assert env["RELEASE_REDIS_PASSWORD_FILE"].startswith(mounts["redis-password"] + "/")
    secrets = {v["name"]: v["secret"]["secretName"] for v in rel["spec"]["template"]["spec"]["volumes"]
               if "secret" in v}
    gw_secrets = {v["name"]: v["secret"]["secretName"] for v in gw["spec"]["template"]["spec"]["volumes"]
                  if "secret" in v}
    assert secrets == {"redis-password": gw_secrets["redis-password"]}   # not the API keys
    for svc in ("asr", "tts", "llm", "rag"):   # the LLM probe's passages come from the RAG
        assert env[f"GATEWAY_{svc.upper()}_ADDRS"] == gw_env[f"GATEWAY_{svc.upper()}_ADDRS"]
    probe = c["livenessProbe"]["exec"]["command"]
    assert probe[:3] == ["python", "-m", "release.alive"] and probe[3] == env["RELEASE_HEARTBEAT_FILE"]
    assert env["RELEASE_HEARTBEAT_FILE"].startswith(mounts["tmp"] + "/"), "the root filesystem is read-only"


@pytest.mark.parametrize("svc", ["asr", "tts", "llm"])
def test_canary_component_gives_the_release_probes_its_address(svc, tmp_path):
    shutil.copytree(K8S, tmp_path / "k8s")
    out = kz.render(_component_overlay(tmp_path / "k8s", svc))
    deps = {o["metadata"]["name"]: o for o in out if o["kind"] == "Deployment"}
    name = f"GATEWAY_{svc.upper()}_CANARY_ADDRS"
    assert env_of(deps["release-controller"])[name] == env_of(deps[GATEWAY.name])[name]


def test_canary_overlay_routes_a_share_to_a_new_llm_image():
    deps = objs("canary", "Deployment")
    gw = env_of(deps[GATEWAY.name])
    assert 0 < float(gw["GATEWAY_CANARY_PERCENT"]) < 100
    assert gw["GATEWAY_LLM_CANARY_ADDRS"] == "llm-canary:50053"
    assert container(deps["llm-canary"])["image"] != container(deps["llm"])["image"]


def test_gpu_overlay_moves_asr_llm_tts_only():
    base, gpu = objs("base", "Deployment"), objs("gpu", "Deployment")
    for name in ("asr", "llm", "tts"):
        ctr = container(gpu[name])
        prefix = name.upper() + "_"
        assert ctr["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert ctr["image"].endswith("-gpu")
        env = env_of(gpu[name])
        assert env[f"{prefix}DEVICE"] == "cuda" and env[f"{prefix}COMPUTE_TYPE"] == "float16"
        assert any(t["key"] == "nvidia.com/gpu" for t in gpu[name]["spec"]["template"]["spec"]["tolerations"])
    assert int(env_of(gpu["llm"])["LLM_N_GPU_LAYERS"]) != 0
    for name in ("vad", "rag", "gateway"):
        assert gpu[name] == base[name]


# ----------------------------------------------------------------- monitoring
def test_service_monitors_cover_every_metrics_port():
    monitors = objs("base", "ServiceMonitor")
    services = objs("base", "Service")
    covered = set()
    for m in monitors.values():
        spec = m["spec"]
        assert m["apiVersion"] == "monitoring.coreos.com/v1"
        # job = component name, as observability's prometheus.yml names the jobs.
        assert spec["jobLabel"] == "app.kubernetes.io/name"
        ports = {e["port"] for e in spec["endpoints"]}
        for s in services.values():
            if selects(spec["selector"]["matchLabels"], s["metadata"].get("labels", {})):
                names = {p["name"] for p in s["spec"]["ports"]}
                assert ports & names, f"{m['metadata']['name']} scrapes no port of {s['metadata']['name']}"
                covered.add(s["metadata"]["name"])
    assert {c.name for c in COMPONENTS} <= covered


def test_prometheus_rules_are_observabilitys_rules():
    rules = objs("base", "PrometheusRule")
    files = sorted((ROOT / "observability" / "prometheus" / "rules").glob("*.yml"))
    assert files, "observability has no rule files"
    assert len(rules) == len(files)
    for f in files:
        rule = rules["voice-" + f.stem.replace("_", "-")]
        assert rule["spec"]["groups"] == yaml.safe_load(f.read_text())["groups"]
        for g in rule["spec"]["groups"]:
            for r in g["rules"]:
                assert ("alert" in r) != ("record" in r) and r["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_prometheus_rule_groups_pass_promtool(tmp_path):
    for name, rule in objs("base", "PrometheusRule").items():
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def test_rag_index_is_writable_where_compose_keeps_it():
    """Under a read-only root the index directory must be a volume, at compose's path."""
    from tests.deploy.deploy_helpers import compose_config

    compose_rag = compose_config("cpu")["services"]["rag"]
    [path] = [v["target"] for v in compose_rag["volumes"] if v["source"] == "rag-index"]
    ctr = container(objs("base", "Deployment")["rag"])
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert path in {m["mountPath"] for m in ctr["volumeMounts"]}
