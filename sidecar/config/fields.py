"""Checks of one resource's fields that collect problems (never raise), each with the field's line.

A message names the fix: the offending value, and for an unknown field the closest valid one or the list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from sidecar.config.load import FieldPath, RawResource
from sidecar.config.model import Mesh
from sidecar.config.problems import Problem, did_you_mean, shown, where

_SEGMENT = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]|([^.\[\]]+)')


def _segments(path: str) -> FieldPath:
    """`a.b[0]["k.x"]` -> ("a", "b", 0, "k.x"): a message's field path back to a lookup key."""
    out: list[str | int] = []
    for quoted, index, plain in _SEGMENT.findall(path):
        out.append(int(index) if index else (quoted or plain))
    return tuple(out)


class Checks:
    """Checks of one resource's fields; each problem gets the field's path (relative to the body) and line."""

    def __init__(self, raw: RawResource, out: list[Problem]) -> None:
        self.raw = raw
        self.out = out
        self.count = 0
        # The mesh a problem belongs to (a mesh-scoped resource without `mesh:` is in "default").
        self.mesh = raw.mesh if isinstance(raw.mesh, str) and raw.mesh else "default"

    def add(self, path: str, message: str, *, follows: bool = False, warning: bool = False) -> None:
        if not warning:
            self.count += 1
        prefix = "" if path == "mesh" else self.raw.prefix  # `mesh` is top-level in both forms
        full = f"{prefix}{path}"
        line = self.raw.line_of(_segments(full))
        raw = self.raw
        text = f"{where(raw.file, line)}: {raw.kind}/{raw.name}: {full}: {message}"
        self.out.append(
            Problem(
                text,
                raw.file,
                line,
                raw.kind,
                raw.name,
                self.mesh if raw.kind != "Mesh" else "",
                follows=follows,
                warning=warning,
            )
        )

    def warn(self, path: str, message: str) -> None:
        """A problem that does not make the resource invalid (a likely mistake, said once)."""
        self.add(path, message, warning=True)

    def mapping(self, value: Any, path: str, allowed: Iterable[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping, got {shown(value)}")
            return {}
        allowed = sorted(allowed)
        for key in value:
            if key not in allowed:
                hint = did_you_mean(key, allowed) or f"; valid fields: {', '.join(allowed)}"
                self.add(f"{path}.{key}" if path else str(key), f"unknown field{hint}")
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, f"must be a list, got {shown(value)}")
            return []
        return value

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.add(path, f"must be a boolean (true or false), got {shown(value)}")
            return default
        return value

    def port(self, value: Any, path: str, required: bool = True) -> int:
        if value is None and not required:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.add(path, f"port must be in the range [1, 65535], got {shown(value)}")
            return 0
        return value

    def tags(self, value: Any, path: str) -> dict[str, str]:
        tags = self.mapping(value, path, allowed=value.keys() if isinstance(value, dict) else ())
        out: dict[str, str] = {}
        for key, tag in tags.items():
            if not isinstance(key, str) or not key:
                self.add(path, "tag name must be non-empty")
            elif not isinstance(tag, str | int | float) or isinstance(tag, bool) or str(tag) == "":
                self.add(f'{path}["{key}"]', "tag value must be non-empty")
            else:
                out[key] = str(tag)
        return out

    def mesh_exists(self, mesh: str, meshes: Mapping[str, Mesh]) -> bool:
        if mesh in meshes:
            return True
        known = ", ".join(sorted(meshes)) or "none"
        message = f'mesh "{mesh}" does not exist (meshes: {known}){did_you_mean(mesh, meshes)}'
        self.add("mesh", message, follows=True)
        return False


def mesh_name(raw: RawResource, p: Checks) -> str:
    """The mesh of a mesh-scoped resource: `mesh` (Kubernetes: or the kuma.io/mesh label), else default."""
    if raw.mesh is None:
        return "default"
    if not isinstance(raw.mesh, str) or not raw.mesh:
        p.add("mesh", f"must be a non-empty string, got {shown(raw.mesh)}")
        return "default"
    return raw.mesh


def labels_of(raw: RawResource, p: Checks) -> dict[str, str]:
    """A resource's own labels (Universal `labels`, Kubernetes `metadata.labels`) as strings."""
    value = raw.labels
    if value is None:
        return {}
    if not isinstance(value, dict):
        Checks(replace(raw, prefix="metadata." if raw.prefix else ""), p.out).add(
            "labels", f"must be a mapping, got {shown(value)}"
        )
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def spec_view(raw: RawResource, p: Checks) -> tuple[Checks, Any]:
    """Checks whose paths start at `spec.` and the spec itself, in both forms."""
    spec = raw.body if raw.prefix else p.mapping(raw.body, "", ("spec",)).get("spec")
    return Checks(replace(raw, prefix="spec."), p.out), spec
