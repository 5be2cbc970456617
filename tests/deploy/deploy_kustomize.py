"""Render a kustomization into a list of objects, with `kubectl kustomize` when
it is installed and otherwise with the small subset of kustomize the project's
kustomizations use (resources, components, namespace, images, JSON 6902
patches with a kind/name target). Where kubectl exists the tests also check
that this subset renders exactly what kustomize does, so the fallback stays
honest on machines without it."""
from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

# Kinds kustomize leaves without a namespace.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass"}
KNOWN_KEYS = {"apiVersion", "kind", "resources", "components", "namespace", "images", "patches"}


def kubectl() -> str | None:
    exe = shutil.which("kubectl")
    if not exe:
        return None
    ok = subprocess.run([exe, "kustomize", "--help"], capture_output=True, timeout=60)
    return exe if ok.returncode == 0 else None


def render_kubectl(path: Path) -> list[dict[str, Any]]:
    exe = kubectl()
    assert exe, "kubectl is not installed"
    out = subprocess.run([exe, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render(path: Path) -> list[dict[str, Any]]:
    """kubectl kustomize when available, else the built-in subset."""
    return render_kubectl(path) if kubectl() else render_builtin(path)


def render_builtin(path: Path) -> list[dict[str, Any]]:
    return _build(path, kind="Kustomization")


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _build(path: Path, kind: str, objs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    assert k.get("kind", "Kustomization") == kind, f"{path}: expected kind {kind}"
    unknown = set(k) - KNOWN_KEYS
    assert not unknown, f"{path}: the fallback renderer does not support {sorted(unknown)}"
    objs = [] if objs is None else objs
    for res in k.get("resources", []):
        p = (path / res).resolve()
        objs.extend(_build(p, "Kustomization") if p.is_dir() else _load(p))
    for comp in k.get("components", []):
        objs = _build((path / comp).resolve(), "Component", objs)
    for patch in k.get("patches", []):
        _patch(objs, patch, path)
    for img in k.get("images", []):
        _image(objs, img)
    if "namespace" in k:
        for o in objs:
            if o["kind"] not in CLUSTER_SCOPED:
                o.setdefault("metadata", {})["namespace"] = k["namespace"]
    return objs


def _patch(objs: list[dict[str, Any]], patch: dict[str, Any], base: Path) -> None:
    text = patch["patch"] if "patch" in patch else (base / patch["path"]).read_text()
    ops = yaml.safe_load(text)
    assert isinstance(ops, list), "only JSON 6902 patches (a list of operations) are supported"
    target = patch["target"]
    hits = [o for o in objs if all(o.get("kind") == v if key == "kind" else o["metadata"].get(key) == v
                                   for key, v in target.items())]
    assert hits, f"patch target {target} matches nothing"
    for o in hits:
        for op in ops:
            _apply(o, op)


def _pointer(path: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in path.lstrip("/").split("/")]


def _apply(doc: dict[str, Any], op: dict[str, Any]) -> None:
    *parents, last = _pointer(op["path"])
    node: Any = doc
    for t in parents:
        node = node[int(t)] if isinstance(node, list) else node[t]
    value = copy.deepcopy(op.get("value"))
    if op["op"] == "add":
        if isinstance(node, list):
            node.append(value) if last == "-" else node.insert(int(last), value)
        else:
            node[last] = value
    elif op["op"] == "replace":
        if isinstance(node, list):
            node[int(last)] = value
        else:
            assert last in node, f"replace of missing {op['path']}"
            node[last] = value
    elif op["op"] == "remove":
        del node[int(last) if isinstance(node, list) else last]
    else:
        raise AssertionError(f"unsupported patch op {op['op']}")


def _image(objs: list[dict[str, Any]], img: dict[str, Any]) -> None:
    for o in objs:
        spec = o.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            name, _, tag = c["image"].partition(":")
            if name == img["name"]:
                c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}"


def key(o: dict[str, Any]) -> tuple[str, str, str]:
    return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]


def by_key(objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for o in objs:
        assert key(o) not in out, f"duplicate object {key(o)}"
        out[key(o)] = o
    return out
