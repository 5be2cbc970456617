"""The release control loop (`python -m release run`, docs/releases.md) as a
Kubernetes Deployment, so a canary release started with `python -m release
start` is judged, stepped and rolled back without anyone keeping a terminal
open.

- One replica, ``Recreate``: a second loop does no harm (writes are
  compare-and-set) but is useless; during an update the old one stops first.
- The gateway image: it holds the ``release`` package and the speech clips
  the quality probes play (``--probes``).
- Redis: the gateways' (``RELEASE_REDIS_URL``), its password from the same
  Secret the gateway mounts.
- Probes' addresses: the stable ASR, TTS and LLM Services here, and the
  RAG Service the LLM probe takes its passages from; each canary
  component adds ``GATEWAY_<SVC>_CANARY_ADDRS`` to this Deployment as it does
  to the gateway's (deploy/generate.py: canary_component).
- Liveness: the loop touches a heartbeat file before and after every tick;
  ``python -m release.alive`` fails once it is older than ``LIVENESS_MAX_AGE_S``
  (longer than a tick with probes: two passes of 179 utterances through an
  ASR took ~250 s on a busy 2-core host), and the kubelet restarts the pod."""
from __future__ import annotations

from typing import Any

NAME = "release-controller"
HEARTBEAT = "/tmp/release-heartbeat"
LIVENESS_MAX_AGE_S = 600
PROBED = ("asr", "tts", "llm")     # the services whose releases the quality probes judge
PASSAGES_FROM = "rag"     # the stable service the LLM probe retrieves its passages from


def labels(part_of: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": part_of,
            "app.kubernetes.io/component": "release"}


def deployment(image: str, uid: int, part_of: str, redis_secret: str, redis_secret_dir: str,
               stable_addrs: dict[str, str]) -> dict[str, Any]:
    """``stable_addrs``: service name -> in-cluster address of its stable pool."""
    env = [{"name": "RELEASE_REDIS_URL", "value": "redis://redis:6379/0"},
           {"name": "RELEASE_REDIS_PASSWORD_FILE", "value": f"{redis_secret_dir}/password"},
           {"name": "RELEASE_HEARTBEAT_FILE", "value": HEARTBEAT}]
    env += [{"name": f"GATEWAY_{svc.upper()}_ADDRS", "value": stable_addrs[svc]}
            for svc in (*PROBED, PASSAGES_FROM)]
    container = {
        "name": NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "release", "run", "--probes"],
        "env": env,
        # The loop idles between ticks; probes decode through the ASR
        # services, not here (the TTS round trip's WAV handling is all it does).
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                      "limits": {"cpu": "500m", "memory": "512Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "redis-password", "mountPath": redis_secret_dir, "readOnly": True}],
        "livenessProbe": {"exec": {"command": ["python", "-m", "release.alive", HEARTBEAT,
                                               str(LIVENESS_MAX_AGE_S)]},
                          "initialDelaySeconds": 60, "periodSeconds": 60, "timeoutSeconds": 10,
                          "failureThreshold": 2},
    }
    lab = labels(part_of)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "labels": lab},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {"metadata": {"labels": lab}, "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                                    "fsGroup": uid, "seccompProfile": {"type": "RuntimeDefault"}},
                "automountServiceAccountToken": False,
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {}},
                            {"name": "redis-password", "secret": {"secretName": redis_secret}}],
            }},
        },
    }


def canary_patch(service: str, address: str) -> dict[str, Any] | None:
    """The patch a canary component adds for the probes (None: not probed)."""
    if service not in PROBED:
        return None
    ops = [{"op": "add", "path": "/spec/template/spec/containers/0/env/-",
            "value": {"name": f"GATEWAY_{service.upper()}_CANARY_ADDRS", "value": address}}]
    return {"target": {"kind": "Deployment", "name": NAME}, "ops": ops}
