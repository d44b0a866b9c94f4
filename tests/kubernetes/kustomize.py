"""A small kustomize renderer for deploy/kubernetes, so the manifests are checked where kubectl is absent.

It implements exactly the features the example uses, as kustomize does them, and refuses any other:
- `resources`: YAML files (several documents each) and directories holding a kustomization.yaml;
- `namespace`: set on every namespaced object (not on a Namespace);
- `configMapGenerator` with `files:` (the key is the file's name) and
  `generatorOptions.disableNameSuffixHash: true` (no hash suffix to compute);
- `images`: `newName`/`newTag` for matching container and init container images;
- `patches` with a `path` to a JSON 6902 patch (`add`, `remove`, `move`) and a `target` selecting by
  `kind` and an equality `labelSelector`.
Where `kubectl` is installed, tests/kubernetes/test_manifests.py compares this output with
`kubectl kustomize`, object by object.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "configMapGenerator",
    "generatorOptions",
    "images",
    "patches",
}
CLUSTER_SCOPED = {"Namespace"}
NAMESPACED = {"ConfigMap", "Service", "Deployment"}

Obj = dict[str, Any]


class Unsupported(Exception):
    """The kustomization uses a feature this renderer does not implement."""


def render(directory: Path) -> list[Obj]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    if unknown:
        raise Unsupported(f"{directory}: {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += render(path)
        else:
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    objects += _generated_config_maps(directory, kustomization)
    for image in kustomization.get("images", []):
        for obj in objects:
            _set_image(obj, image)
    for patch in kustomization.get("patches", []):
        ops = yaml.safe_load((directory / patch["path"]).read_text())
        for obj in objects:
            if _selected(obj, patch.get("target", {})):
                for op in ops:
                    _apply(obj, op)
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            kind = obj["kind"]
            if kind in NAMESPACED:
                obj["metadata"]["namespace"] = namespace
            elif kind not in CLUSTER_SCOPED:
                raise Unsupported(f"namespace of kind {kind}")
    return objects


def _generated_config_maps(directory: Path, kustomization: Obj) -> list[Obj]:
    generators = kustomization.get("configMapGenerator", [])
    if generators and not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise Unsupported("configMapGenerator without disableNameSuffixHash")
    out = []
    for gen in generators:
        if set(gen) - {"name", "files"}:
            raise Unsupported(f"configMapGenerator fields {sorted(gen)}")
        data = {}
        for file in gen["files"]:
            if "=" in file:
                raise Unsupported("configMapGenerator key=path")
            data[Path(file).name] = (directory / file).read_text()
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    return out


def _containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _set_image(obj: Obj, image: Obj) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise Unsupported(f"images fields {sorted(image)}")
    for container in _containers(obj):
        ref = container["image"]
        name, _, tag = ref.partition(":")
        if "@" in ref or "/" in tag:
            raise Unsupported(f"image reference {ref}")
        if name == image["name"]:
            name = image.get("newName", name)
            tag = image.get("newTag", tag)
            container["image"] = f"{name}:{tag}" if tag else name


def _selected(obj: Obj, target: Obj) -> bool:
    if set(target) - {"kind", "labelSelector"}:
        raise Unsupported(f"patch target fields {sorted(target)}")
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    labels = obj["metadata"].get("labels", {})
    for term in filter(None, target.get("labelSelector", "").split(",")):
        key, sep, value = term.partition("=")
        if not sep or value.startswith("="):
            raise Unsupported(f"label selector {term}")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _parent(doc: Any, path: str) -> tuple[Any, str]:
    *parents, last = _pointer(path)
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc, last


def _remove(doc: Any, path: str) -> Any:
    parent, key = _parent(doc, path)
    return parent.pop(int(key)) if isinstance(parent, list) else parent.pop(key)


def _add(doc: Any, path: str, value: Any) -> None:
    parent, key = _parent(doc, path)
    if isinstance(parent, list):
        parent.insert(len(parent) if key == "-" else int(key), value)
    else:
        parent[key] = value


def _apply(obj: Obj, op: Obj) -> None:
    kind = op["op"]
    if kind == "add":
        _add(obj, op["path"], copy.deepcopy(op["value"]))
    elif kind == "remove":
        _remove(obj, op["path"])
    elif kind == "move":
        _add(obj, op["path"], _remove(obj, op["from"]))
    else:
        raise Unsupported(f"JSON 6902 op {kind}")
