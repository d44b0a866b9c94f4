"""YAML files and directories to raw documents with file and line; Universal and Kubernetes forms unified."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sidecar.config.expand import expand_document

KINDS = ("Mesh", "TrafficTrace", "Dataplane", "ExternalService")
K8S_API_VERSION = "kuma.io/v1alpha1"
_UNIVERSAL_META = {"type", "name", "mesh", "creationTime", "modificationTime", "labels"}


@dataclass(frozen=True, slots=True)
class RawResource:
    """One document, whatever its form: `body` holds the kind's fields, `prefix` their path in the file."""

    kind: str
    name: str
    mesh: str | None
    body: dict[str, Any]
    file: str
    line: int
    prefix: str  # "" (Universal) or "spec." (Kubernetes)
    creation_time: Any = None


def yaml_files(paths: Iterable[str]) -> tuple[list[Path], list[str]]:
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                problems.append(f"{raw}: no *.yaml or *.yml files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{raw}: no such file or directory")
    return files, problems


def _documents(path: Path, env: Mapping[str, str]) -> tuple[list[tuple[int, Any]], list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path}: cannot read: {exc}"]
    docs: list[tuple[int, Any]] = []
    expanded: list[str] = []  # ${VAR} problems (sidecar/config/expand.py)
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            expanded += expand_document(node, env, str(path))
            docs.append((node.start_mark.line + 1, loader.construct_document(node)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        return docs, [*expanded, f"{path}{line}: yaml: {exc.problem or exc.context}"]
    except yaml.YAMLError as exc:
        return docs, [*expanded, f"{path}: yaml: {exc}"]
    finally:
        loader.dispose()
    return docs, expanded


def _unify(data: Any, file: str, line: int) -> tuple[RawResource | None, str | None]:
    where = f"{file}:{line}"
    if data is None:
        return None, None  # an empty document (e.g. a trailing ---)
    if not isinstance(data, dict):
        return None, f"{where}: a resource must be a mapping, got {type(data).__name__}"
    if "kind" in data or "apiVersion" in data:
        kind = data.get("kind")
        meta = data.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
            return None, f"{where}: {kind}/?: metadata.name: cannot be empty"
        name = meta["name"]
        if data.get("apiVersion") != K8S_API_VERSION:
            return None, f"{where}: {kind}/{name}: apiVersion: must be {K8S_API_VERSION}"
        spec = data.get("spec", {})
        extra = set(data) - {"apiVersion", "kind", "metadata", "mesh", "spec"}
        if extra:
            return None, f"{where}: {kind}/{name}: {sorted(extra)[0]}: unknown field"
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            return None, f"{where}: {kind}/{name}: spec: must be a mapping"
        mesh = data.get("mesh")
        created = meta.get("creationTimestamp")
        return RawResource(str(kind), name, mesh, spec, file, line, "spec.", created), None
    kind = data.get("type")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        return None, f"{where}: {kind}/?: name: cannot be empty"
    body = {k: v for k, v in data.items() if k not in _UNIVERSAL_META}
    return RawResource(
        str(kind), name, data.get("mesh"), body, file, line, "", data.get("creationTime")
    ), None


def load_raw(
    paths: Iterable[str], env: Mapping[str, str] | None = None
) -> tuple[list[RawResource], int, list[str]]:
    """All documents under `paths` (files, or directories of *.yaml/*.yml), the file count, and problems.
    `${VAR}` in values expands from `env` (default: this process's environment)."""
    files, problems = yaml_files(paths)
    resources: list[RawResource] = []
    for path in files:
        docs, errors = _documents(path, os.environ if env is None else env)
        problems.extend(errors)
        for line, data in docs:
            resource, problem = _unify(data, str(path), line)
            if problem:
                problems.append(problem)
            elif resource is not None:
                if resource.kind not in KINDS:
                    problems.append(
                        f"{path}: {resource.kind}/{resource.name}: {'kind' if resource.prefix else 'type'}: "
                        f"unknown kind {resource.kind!r}; supported: {', '.join(KINDS)}"
                    )
                else:
                    resources.append(resource)
    return resources, len(files), problems
