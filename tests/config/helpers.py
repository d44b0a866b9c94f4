"""Write resources in either YAML form, so every case runs against Universal and Kubernetes documents."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from sidecar.config import ConfigResult, load_config

FORMS = ("universal", "kubernetes")

MESH: dict[str, Any] = {
    "type": "Mesh",
    "name": "default",
    "tracing": {
        "defaultBackend": "jaeger",
        "backends": [
            {
                "name": "jaeger",
                "type": "zipkin",
                "sampling": 100.0,
                "conf": {"url": "http://jaeger:9411/api/v2/spans"},
            },
            {"name": "other", "type": "zipkin", "conf": {"url": "http://other:9411/api/v2/spans"}},
        ],
    },
}


def dataplane(
    name: str, *inbound_tags: dict[str, str], mesh: str = "default", port: int = 10001
) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "name": name,
        "mesh": mesh,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {"port": port + i, "servicePort": 8080 + i, "tags": tags}
                for i, tags in enumerate(inbound_tags)
            ],
        },
    }


def trace(name: str, *selectors: dict[str, str], backend: str | None = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "TrafficTrace", "name": name, "mesh": "default"}
    doc["selectors"] = [{"match": s} for s in selectors]
    if backend is not None:
        doc["conf"] = {"backend": backend}
    doc.update(extra)
    return doc


# Kinds whose body is under `spec:` in both forms; on Kubernetes their mesh is the kuma.io/mesh label.
SPEC_KINDS = ("MeshTrace", "MeshOpenTelemetryBackend")


def to_kubernetes(doc: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(doc)
    kind = body.pop("type")
    own = body.pop("labels", {})
    labels: Any = {"a": "b", **own} if isinstance(own, dict) else own  # anything else as written
    meta: dict[str, Any] = {"name": body.pop("name"), "namespace": "kuma-system", "labels": labels}
    if "creationTime" in body:
        meta["creationTimestamp"] = body.pop("creationTime")
    out: dict[str, Any] = {"apiVersion": "kuma.io/v1alpha1", "kind": kind, "metadata": meta}
    if kind in SPEC_KINDS:
        if isinstance(labels, dict):
            labels["kuma.io/mesh"] = body.pop("mesh", "default")
        else:
            out["mesh"] = body.pop("mesh", "default")
        out["spec"] = body.pop("spec", {})
        return out
    if "mesh" in body:
        out["mesh"] = body.pop("mesh")
    out["spec"] = body
    return out


ZIPKIN = {"type": "Zipkin", "zipkin": {"url": "http://jaeger:9411/api/v2/spans"}}


def meshtrace(
    name: str,
    target: dict[str, Any] | None = None,
    backends: list[dict[str, Any]] | None = None,
    mesh: str = "default",
    **default: Any,
) -> dict[str, Any]:
    """A Universal MeshTrace; `backends` defaults to one Zipkin backend, `default` adds sampling/tags."""
    spec: dict[str, Any] = {}
    if target is not None:
        spec["targetRef"] = target
    spec["default"] = {"backends": [ZIPKIN] if backends is None else backends, **default}
    return {"type": "MeshTrace", "name": name, "mesh": mesh, "spec": spec}


def otel_backend(name: str, labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "type": "MeshOpenTelemetryBackend",
        "name": name,
        "mesh": "default",
        "labels": labels,
        "spec": spec,
    }


def write(tmp: Path, docs: list[dict[str, Any]], form: str = "universal", name: str = "res.yaml") -> Path:
    if form == "kubernetes":
        docs = [to_kubernetes(d) for d in docs]
    path = tmp / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def load(tmp: Path, docs: list[dict[str, Any]], form: str = "universal") -> ConfigResult:
    return load_config([str(write(tmp, docs, form))])


def field_prefix(form: str) -> str:
    return "spec." if form == "kubernetes" else ""


# `FILE:LINE: KIND/NAME: FIELD.PATH: message`, the problem line format (the CLI contract, plus :LINE).
PROBLEM = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+): (?P<resource>[^ :]+/[^ :]+): (?P<field>[^ ]+): (?P<message>.*)$"
)


def last_key(field: str) -> str:
    """The key a field path ends with: `a.b[0]["k.x"]` -> `k.x`, `a.b[0]` -> `b`."""
    keys = re.findall(r'\["([^"]+)"\]|([^.\[\]]+)', field)
    return [quoted or plain for quoted, plain in keys if quoted or plain][-1]


def find_problem(
    problems: list[str], file: Path, resource: str, field: str, message: str, line_has: str | None = None
) -> re.Match[str]:
    """The problem for `field` of `resource` in `file` containing `message`; its line must be the line
    of that field in the file, checked against the text (`line_has`: what that line shows instead, for
    a missing field: its nearest ancestor's line)."""
    for problem in problems:
        m = PROBLEM.match(problem)
        if (
            m
            and (m["file"], m["resource"], m["field"]) == (str(file), resource, field)
            and message in m["message"]
        ):
            text = file.read_text().splitlines()[int(m["line"]) - 1]
            assert (line_has or last_key(field)) in text, (problem, text)
            return m
    raise AssertionError(f"no {resource} {field} problem with {message!r} in {problems}")
