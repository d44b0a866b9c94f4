"""YAML files and directories to raw documents with file and lines; Universal and Kubernetes forms unified.

Each document keeps the line of every field (PyYAML node marks), so a problem anywhere in it can name
`FILE:LINE`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sidecar.config.expand import expand_document
from sidecar.config.problems import Problem, did_you_mean, shown, where

KINDS = ("Mesh", "TrafficTrace", "MeshTrace", "MeshOpenTelemetryBackend", "Dataplane", "ExternalService")
MESH_LABEL = "kuma.io/mesh"  # Kubernetes: the mesh of a policy that has no top-level `mesh:`
FieldPath = tuple[str | int, ...]
Lines = Mapping[FieldPath, int]
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
    # The line of each field by its path from the document's root (mapping keys as text, list indexes).
    lines: Lines = field(default_factory=dict, compare=False, repr=False)
    labels: Any = None  # Universal: top-level `labels`; Kubernetes: `metadata.labels` (unchecked)
    namespace: str | None = None  # Kubernetes: `metadata.namespace`

    def line_of(self, path: FieldPath) -> int:
        """The line of the field at `path`, or of its nearest ancestor that exists (a missing field)."""
        for end in range(len(path), 0, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


def yaml_files(paths: Iterable[str]) -> tuple[list[Path], list[Problem]]:
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                problems.append(Problem(f"{raw}: no *.yaml or *.yml files in this directory", raw))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(f"{raw}: no such file or directory", raw))
    return files, problems


def _field_lines(node: yaml.Node, path: FieldPath, out: dict[FieldPath, int]) -> None:
    """The line of every field under `node`: a mapping entry's line is its key's."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            out.setdefault(sub, key.start_mark.line + 1)
            _field_lines(value, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _field_lines(item, (*path, i), out)


# One document: its line, its data, the line of each field, and its ${VAR} problems as (line, text).
Document = tuple[int, Any, Lines, list[tuple[int, str]]]


def _documents(path: Path, env: Mapping[str, str]) -> tuple[list[Document], list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(f"{path}: cannot read: {exc}", str(path))]
    docs: list[Document] = []
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            expanded = expand_document(node, env, str(path))  # sidecar/config/expand.py
            lines: dict[FieldPath, int] = {}
            _field_lines(node, (), lines)
            docs.append((node.start_mark.line + 1, loader.construct_document(node), lines, expanded))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        return docs, [
            Problem(f"{where(str(path), line)}: yaml: {exc.problem or exc.context}", str(path), line)
        ]
    except yaml.YAMLError as exc:
        return docs, [Problem(f"{path}: yaml: {exc}", str(path))]
    finally:
        loader.dispose()
    return docs, []


def _unify(data: Any, file: str, line: int, lines: Lines) -> tuple[RawResource | None, Problem | None]:
    """One document as a RawResource, or the problem that keeps it from being one (a document's
    problem: without a kind and name it belongs to no resource)."""

    def problem(text: str, path: FieldPath = ()) -> Problem:
        at = lines.get(path, line)
        return Problem(f"{where(file, at)}: {text}", file, at)

    if data is None:
        return None, None  # an empty document (e.g. a trailing ---)
    if not isinstance(data, dict):
        return None, problem(f"a resource must be a mapping, got {type(data).__name__}")
    if "kind" in data or "apiVersion" in data:
        kind = data.get("kind")
        meta = data.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
            return None, problem(f"{kind}/?: metadata.name: cannot be empty", ("metadata",))
        name = meta["name"]
        if data.get("apiVersion") != K8S_API_VERSION:
            got = data.get("apiVersion")
            return None, problem(
                f"{kind}/{name}: apiVersion: must be {K8S_API_VERSION}, got {shown(got)}", ("apiVersion",)
            )
        spec = data.get("spec", {})
        extra = sorted(str(k) for k in set(data) - {"apiVersion", "kind", "metadata", "mesh", "spec"})
        if extra:
            hint = did_you_mean(extra[0], ("apiVersion", "kind", "metadata", "mesh", "spec"))
            return None, problem(f"{kind}/{name}: {extra[0]}: unknown field{hint}", (extra[0],))
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            return None, problem(f"{kind}/{name}: spec: must be a mapping", ("spec",))
        labels = meta.get("labels")
        mesh = data.get("mesh")
        if mesh is None and isinstance(labels, dict) and isinstance(labels.get(MESH_LABEL), str):
            mesh = labels[MESH_LABEL]
        created = meta.get("creationTimestamp")
        namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
        return RawResource(
            str(kind), name, mesh, spec, file, line, "spec.", created, lines, labels, namespace
        ), None
    kind = data.get("type")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        return None, problem(f"{kind}/?: name: cannot be empty", ("name",))
    body = {k: v for k, v in data.items() if k not in _UNIVERSAL_META}
    return RawResource(
        str(kind),
        name,
        data.get("mesh"),
        body,
        file,
        line,
        "",
        data.get("creationTime"),
        lines,
        data.get("labels"),
    ), None


def _unknown_kind(resource: RawResource) -> Problem:
    field_ = "kind" if resource.prefix else "type"
    kind = resource.kind
    hint = did_you_mean(kind, KINDS)
    at = resource.line_of((field_,))
    mesh = resource.mesh if isinstance(resource.mesh, str) else ""
    return Problem(
        f"{where(resource.file, at)}: {kind}/{resource.name}: {field_}: "
        f"unknown kind {kind!r}; supported: {', '.join(KINDS)}{hint}",
        resource.file,
        at,
        kind,
        resource.name,
        mesh,
    )


def load_raw(
    paths: Iterable[str], env: Mapping[str, str] | None = None
) -> tuple[list[RawResource], int, list[Problem]]:
    """All documents under `paths` (files, or directories of *.yaml/*.yml), the file count, and problems.
    `${VAR}` in values expands from `env` (default: this process's environment)."""
    files, problems = yaml_files(paths)
    resources: list[RawResource] = []
    for path in files:
        docs, errors = _documents(path, os.environ if env is None else env)
        problems.extend(errors)
        for line, data, lines, expanded in docs:
            resource, problem = _unify(data, str(path), line, lines)
            # A ${VAR} problem belongs to its resource (so it stops only the sidecar it is about).
            for at, text in expanded:
                if resource is None:
                    problems.append(Problem(text, str(path), at))
                else:
                    mesh = resource.mesh if isinstance(resource.mesh, str) else ""
                    problems.append(Problem(text, str(path), at, resource.kind, resource.name, mesh))
            if problem:
                problems.append(problem)
            elif resource is not None:
                if resource.kind not in KINDS:
                    problems.append(_unknown_kind(resource))
                else:
                    resources.append(resource)
    return resources, len(files), problems
