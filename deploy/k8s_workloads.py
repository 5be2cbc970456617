"""The Kubernetes workloads of each component, as plain dicts: its
Deployment (stable or canary), Service, HPA (the gateway's on sessions per
pod) and PodDisruptionBudget, with the names and limits they share.
deploy/generate.py writes them; deploy/k8s_cluster.py holds the rest."""
from __future__ import annotations

from typing import Any

from common.components import GATEWAY, SPEECH_SERVICES, Component, gateway_backend_env
from deploy.sizing import SIZES

NAMESPACE = "voice-assistant"
PART_OF = "voice-assistant"
IMAGE_PREFIX = "voice-assistant"
VERSION = "0.1.0"
UID = 10001                  # the image's non-root user (Dockerfile)
REDIS_IMAGE = "redis:7.4.1-alpine"
REDIS_UID = 999              # the redis user of the official image
HPA_MAX = {"vad": 4, "asr": 6, "llm": 6, "rag": 4, "tts": 6, "gateway": 8}
# The gateway scales on open sessions per pod (a custom metric served by
# prometheus-adapter), not CPU: the speech stages saturate long before the
# gateway's CPU does, and the session limit is what admission enforces.
SESSIONS_METRIC = "voice_gateway_active_sessions"
RAG_INDEX_DIR = "/var/lib/voice/rag"   # the Dockerfile creates it, owned by the service user
API_KEYS_SECRET = "gateway-api-keys"      # created by the operator, never committed
API_KEYS_DIR = "/etc/voice/api-keys"
REDIS_SECRET = "redis-password"           # key "password"; created by the operator too
REDIS_SECRET_DIR = "/etc/voice/redis"


# ------------------------------------------------------------------ helpers
def labels(c: Component, track: str | None = None) -> dict[str, str]:
    out = {"app.kubernetes.io/name": c.name,
           "app.kubernetes.io/part-of": PART_OF,
           "app.kubernetes.io/component": "speech" if c.grpc else "gateway"}
    if track:
        out["track"] = track
    return out


def selector(c: Component, track: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": c.name, "track": track}


def image(c: Component) -> str:
    return f"{IMAGE_PREFIX}/{c.name}:{VERSION}"


def env_list(pairs: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in pairs.items()]


def component_env(c: Component, variant: str) -> list[dict[str, Any]]:
    """The same names `make run` passes (Component.env), listening on all interfaces."""
    size = SIZES[c.name]
    env = env_list(c.env(host="0.0.0.0"))
    if c.grpc:
        env += env_list({f"{c.env_prefix}THREADS": str(size.threads)})
    else:
        env += env_list(k8s_backend_env())
        # Explicit, next to the HPA whose target is 3/4 of it: change both together.
        env += env_list({"GATEWAY_MAX_SESSIONS": str(gateway_max_sessions())})
        # Off loopback the gateway does not start without keys (docs/security.md);
        # they come from the Secret mounted by volumes().
        env += env_list({"GATEWAY_API_KEYS_FILE": f"{API_KEYS_DIR}/keys",
                         "GATEWAY_REDIS_PASSWORD_FILE": f"{REDIS_SECRET_DIR}/password"})
    env += env_list({f"{c.env_prefix}VARIANT": variant})
    if c.name == "rag":
        env += env_list({name: RAG_INDEX_DIR for name in rag_index_settings()})
    # One ConfigMap key turns tracing on for every component at once.
    env.append({"name": f"{c.env_prefix}OTLP_ENDPOINT",
                "valueFrom": {"configMapKeyRef": {"name": "voice-common", "key": "otlp_endpoint"}}})
    return env


def rag_index_settings() -> list[str]:
    """RAG's index path settings (RAG_INDEX_*), once services/rag defines them."""
    from deploy.configdoc import fields
    from common.components import by_name

    return [f.env for f in fields(by_name("rag")) or () if "INDEX" in f.env and f.type == "str"]


def k8s_backend_env() -> dict[str, str]:
    """gateway_backend_env() with in-cluster Service names instead of 127.0.0.1."""
    out = {}
    for key in gateway_backend_env():
        if key == "GATEWAY_REDIS_URL":
            out[key] = "redis://redis:6379/0"
        else:
            name = key.removeprefix("GATEWAY_").removesuffix("_ADDRS").lower()
            out[key] = f"{name}:{next(s.port for s in SPEECH_SERVICES if s.name == name)}"
    return out


def grpc_probe(port: int, **kw: Any) -> dict[str, Any]:
    return {"grpc": {"port": port}, **kw}


def container(c: Component, variant: str) -> dict[str, Any]:
    size = SIZES[c.name]
    ports = [{"name": "grpc" if c.grpc else "http", "containerPort": c.port, "protocol": "TCP"}]
    if c.grpc:
        ports.append({"name": "metrics", "containerPort": c.metrics_port, "protocol": "TCP"})
    spec: dict[str, Any] = {
        "name": c.name,
        "image": image(c),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", c.module],
        "ports": ports,
        "env": component_env(c, variant),
        "resources": {
            "requests": {"cpu": size.cpu_request, "memory": size.mem_request},
            "limits": {"cpu": size.cpu_limit, "memory": size.mem_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": v["name"], "mountPath": path, **({"readOnly": True} if "secret" in v else {})}
                         for v, path in volumes(c)],
        # Endpoints are removed asynchronously: keep serving a moment after
        # SIGTERM is due so no new stream lands on a closing server.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
    }
    if c.grpc:
        # Native gRPC probes (grpc.health.v1, service ""). The server says
        # NOT_SERVING while the model loads, so startup allows 5 minutes and
        # liveness only begins once startup has passed.
        spec["startupProbe"] = grpc_probe(c.port, periodSeconds=5, failureThreshold=60, timeoutSeconds=3)
        spec["readinessProbe"] = grpc_probe(c.port, periodSeconds=5, failureThreshold=2, timeoutSeconds=3)
        spec["livenessProbe"] = grpc_probe(c.port, periodSeconds=10, failureThreshold=3, timeoutSeconds=3)
    else:
        # /readyz is /healthz (the backends) and room for one more session: a
        # full gateway leaves the Service's endpoints until a session ends.
        # Backends are right for readiness, wrong for liveness (a restarted
        # gateway would not bring a dead ASR back, and drops every session).
        spec["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "http"},
                                  "periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 3}
        spec["livenessProbe"] = {"tcpSocket": {"port": "http"},
                                 "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 3}
    return spec


def volumes(c: Component) -> list[tuple[dict[str, Any], str]]:
    """(volume, mount path): the only writable places under a read-only root,
    and the gateway's API keys (read-only, from a Secret the operator creates:
    kubectl -n voice-assistant create secret generic gateway-api-keys --from-literal=keys=...)."""
    out = [({"name": "tmp", "emptyDir": {}}, "/tmp")]
    if not c.grpc:
        out.append(({"name": "api-keys", "secret": {"secretName": API_KEYS_SECRET}}, API_KEYS_DIR))
        out.append(({"name": "redis-password", "secret": {"secretName": REDIS_SECRET}}, REDIS_SECRET_DIR))
    if c.name == "rag":
        # Per pod, like compose's rag-index volume: with an HPA, replicas cannot
        # share one ReadWriteOnce claim, and each builds the same index.
        out.append(({"name": "rag-index", "emptyDir": {}}, RAG_INDEX_DIR))
    return out


def pod_spec(c: Component, variant: str) -> dict[str, Any]:
    return {
        "terminationGracePeriodSeconds": 30,   # > preStop 5 s + DRAIN_SECONDS 10 s
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                            "fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container(c, variant)],
        "volumes": [v for v, _ in volumes(c)],
        # Spread replicas over hosts: losing one host must not take a whole stage.
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(c, track_of(variant))}}],
    }


def track_of(variant: str) -> str:
    return "canary" if variant == "canary" else "stable"


def deployment(c: Component, variant: str = "stable", replicas: int | None = None) -> dict[str, Any]:
    track = track_of(variant)
    name = c.name if track == "stable" else f"{c.name}-canary"
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(c, track)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": labels(c, track)}, "spec": pod_spec(c, variant)},
    }
    if replicas is not None:  # left out where an HPA owns the count
        spec = {"replicas": replicas, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels(c, track)}, "spec": spec}


def service(c: Component, track: str = "stable") -> dict[str, Any]:
    name = c.name if track == "stable" else f"{c.name}-canary"
    ports = [{"name": "grpc" if c.grpc else "http", "port": c.port,
              "targetPort": "grpc" if c.grpc else "http", "protocol": "TCP"}]
    if c.grpc:
        ports.append({"name": "metrics", "port": c.metrics_port, "targetPort": "metrics", "protocol": "TCP"})
    spec: dict[str, Any] = {"selector": selector(c, track), "ports": ports}
    if c.grpc:
        # Headless: DNS returns every ready pod, so a gRPC client can balance
        # per call (round_robin) instead of pinning one HTTP/2 connection.
        spec = {"clusterIP": "None", **spec}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels(c, track)}, "spec": spec}


def gateway_max_sessions() -> int:
    """GATEWAY_MAX_SESSIONS's default: the gateway HPA's target follows it."""
    from deploy.configdoc import fields

    return next(f.default for f in fields(GATEWAY) or () if f.env == "GATEWAY_MAX_SESSIONS")


def sessions_target() -> int:
    """Average sessions per pod the HPA keeps: 3/4 of the limit, so a new pod
    (no model to load: seconds) is ready before the others are full."""
    return max(1, gateway_max_sessions() * 3 // 4)


def _hpa(c: Component, metrics: list[dict[str, Any]], behavior: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": c.name, "labels": labels(c)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": c.name},
            "minReplicas": 2, "maxReplicas": HPA_MAX[c.name],
            "metrics": metrics, "behavior": behavior,
        },
    }


def hpa(c: Component) -> dict[str, Any]:
    if not c.grpc:
        return gateway_hpa(c)
    return _hpa(
        c,
        # Inference is CPU-bound on CPU nodes: utilisation tracks load well.
        [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        # Model load takes up to minutes: scale down slowly so a brief
        # lull does not throw away warm replicas.
        {"scaleDown": {"stabilizationWindowSeconds": 300,
                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]}})


def gateway_hpa(c: Component) -> dict[str, Any]:
    return _hpa(
        c,
        # Without prometheus-adapter the metric is missing: the HPA then
        # holds minReplicas and scales nothing (docs/deployment.md).
        [{"type": "Pods", "pods": {
            "metric": {"name": SESSIONS_METRIC},
            "target": {"type": "AverageValue", "averageValue": str(sessions_target())}}}],
        # Removing a gateway pod ends its conversations (clients resume
        # elsewhere from Redis): scale down rarely and one pod at a time.
        {"scaleDown": {"stabilizationWindowSeconds": 600,
                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}})


def prometheus_adapter_values() -> dict[str, Any]:
    """Helm values (prometheus-community/prometheus-adapter) exposing the
    sessions gauge as a per-pod custom metric under its own name. The
    ServiceMonitor's targets carry namespace and pod labels."""
    return {"rules": {"custom": [{
        "seriesQuery": f'{SESSIONS_METRIC}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{SESSIONS_METRIC}$", "as": SESSIONS_METRIC},
        "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    }]}}


def pdb(c: Component) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": c.name, "labels": labels(c)},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector(c, "stable")}}}


def component_docs(c: Component) -> list[dict[str, Any]]:
    return [deployment(c), service(c), hpa(c), pdb(c)]
