"""The cluster-wide Kubernetes objects as plain dicts: Redis, the namespace
and shared config, the ServiceMonitors, one PrometheusRule per observability
rule file, and the kustomize component that puts a canary in. Written by
deploy/generate.py."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from common.components import GATEWAY, Component
from deploy import release_controller
from deploy.k8s_workloads import (NAMESPACE, PART_OF, REDIS_IMAGE, REDIS_UID, REDIS_SECRET, labels, selector, image, service)

RULES_DIR = Path(__file__).resolve().parent.parent / "observability" / "prometheus" / "rules"


def redis_docs() -> list[dict[str, Any]]:
    lab = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/part-of": PART_OF,
           "app.kubernetes.io/component": "session-store"}
    probe = {"exec": {"command": ["sh", "-c", 'redis-cli --no-auth-warning -a "$REDIS_PASSWORD" ping | grep -q PONG']},
             "periodSeconds": 10, "timeoutSeconds": 3}
    sts = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "redis", "labels": lab},
        "spec": {
            "serviceName": "redis", "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "redis"}},
            "template": {"metadata": {"labels": lab}, "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": REDIS_UID, "runAsGroup": REDIS_UID,
                                    "fsGroup": REDIS_UID, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "redis", "image": REDIS_IMAGE, "imagePullPolicy": "IfNotPresent",
                    # Stored conversations are behind a password; without one Redis does not start.
                    "command": ["sh", "-c", '[ -n "$REDIS_PASSWORD" ] || { echo "redis: no password '
                                f'(Secret {REDIS_SECRET})" >&2; exit 1; }}; exec redis-server --appendonly yes '
                                '--save 60 1 --requirepass "$REDIS_PASSWORD"'],
                    "env": [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
                        "name": REDIS_SECRET, "key": "password"}}}],
                    "ports": [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}],
                    "readinessProbe": probe, "livenessProbe": probe,
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                  "limits": {"cpu": "500m", "memory": "256Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }],
            }},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    }
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis", "labels": lab},
           "spec": {"selector": {"app.kubernetes.io/name": "redis"},
                    "ports": [{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}]}}
    return [sts, svc]


def common_docs() -> list[dict[str, Any]]:
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/part-of": PART_OF}}}
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "voice-common", "labels": {"app.kubernetes.io/part-of": PART_OF}},
          # Empty = tracing off; point it at the cluster's OTLP/gRPC collector.
          "data": {"otlp_endpoint": ""}}
    return [ns, cm]


def monitoring_docs() -> list[dict[str, Any]]:
    """ServiceMonitors (Prometheus Operator): job = component name, as in
    observability/prometheus/prometheus.yml, so the same rules and dashboards apply."""
    relabel = [{"sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_name"],
                "targetLabel": "component"}]
    out = []
    for kind, port in (("speech", "metrics"), ("gateway", "http")):
        out.append({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": f"voice-{kind}", "labels": {"app.kubernetes.io/part-of": PART_OF}},
            "spec": {
                "jobLabel": "app.kubernetes.io/name",   # canary Services keep job=<component>
                "selector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF,
                                             "app.kubernetes.io/component": kind}},
                "endpoints": [{"port": port, "path": "/metrics", "interval": "15s",
                               "relabelings": relabel}],
            },
        })
    return out


def prometheus_rule_docs(rules_dir: Path = RULES_DIR) -> list[dict[str, Any]]:
    """One PrometheusRule per observability rule file, groups copied verbatim."""
    out = []
    for path in sorted(rules_dir.glob("*.yml")):
        groups = yaml.safe_load(path.read_text())["groups"]
        out.append({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "voice-" + path.stem.replace("_", "-"),
                         "labels": {"app.kubernetes.io/part-of": PART_OF},
                         "annotations": {"voice-assistant/source": f"observability/prometheus/rules/{path.name}"}},
            "spec": {"groups": groups},
        })
    return out


def canary_component(c: Component) -> dict[str, Any]:
    """kustomization.yaml of the canary component of one speech service."""
    env_name = f"GATEWAY_{c.name.upper()}_CANARY_ADDRS"
    address = f"{c.name}-canary:{c.port}"
    ops = [{"op": "add", "path": "/spec/template/spec/containers/0/env/-",
            "value": {"name": env_name, "value": address}}]
    patches = [{"target": {"kind": "Deployment", "name": GATEWAY.name},
                "patch": yaml.safe_dump(ops, sort_keys=False)}]
    probes = release_controller.canary_patch(c.name, address)
    if probes is not None:     # the release loop's quality probes play speech through it too
        patches.append({"target": probes["target"], "patch": yaml.safe_dump(probes["ops"], sort_keys=False)})
    return {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
        "resources": ["canary.yaml"],
        "patches": patches,
    }
