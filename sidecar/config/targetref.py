"""Which MeshTraces apply to a dataplane, in which order, and the one Backend their merged `default` gives.

Kuma's rules (its targetRef kind order, its policy sort and its merge of `default` confs):

- A MeshTrace applies when its `spec.targetRef` selects the dataplane: `Mesh` (or no targetRef) selects
  every dataplane of the mesh; `Dataplane` by `name` (and `namespace` when given), by `labels` matched
  against the Dataplane resource's own labels (not its inbound tags), or every dataplane with neither;
  `MeshSubset` when one inbound's tags carry every tag of `tags` (equal value, or `*`); `MeshService`
  when one inbound's `kuma.io/service` equals `name`.
- Every applying MeshTrace is merged, least specific first: by kind Mesh < Dataplane < MeshSubset <
  MeshService; between two Dataplane refs, one by name above one by labels, and one with `sectionName`
  above one without; then, when the policies carry the control plane's labels, a zone's above a
  global one and by role (system < producer < consumer < workload-owner); then by name *descending*,
  so that of two equal refs the alphabetically first name is merged last and wins. A consumer or
  workload-owner policy (`kuma.io/policy-role`) applies only to the dataplanes of its namespace
  (`k8s.kuma.io/namespace`).
- The `default` confs are merged in that order as a JSON merge patch (RFC 7396): mappings (`sampling`)
  field by field, lists (`backends`, `tags`) replaced whole.
- The merged `backends` decides: one backend traces to it, `[]` turns tracing off (trace headers are
  still propagated).
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.config.address import join_host_port
from sidecar.config.model import (
    SERVICE_TAG,
    Backend,
    CustomTag,
    Dataplane,
    MeshTrace,
    OpenTelemetryBackend,
    TargetRef,
)
from sidecar.config.otel_backend import select_otel_backend

#: Kuma's order of targetRef kinds (a higher number is more specific and merged later).
KIND_ORDER = {"Mesh": 1, "Dataplane": 2, "MeshSubset": 3, "MeshService": 5}
# Labels the control plane puts on a policy (they are there when resources come from `kumactl get -o
# yaml`): where it was created (a zone's policy merges after a global one) and its role (a policy in an
# application namespace applies only to the dataplanes of that namespace, and merges after system ones).
ORIGIN_LABEL, ROLE_LABEL, NAMESPACE_LABEL = "kuma.io/origin", "kuma.io/policy-role", "k8s.kuma.io/namespace"
ORIGIN_ORDER = {"global": 1, "": 2, "zone": 3}
ROLE_ORDER = {"system": 1, "producer": 2, "consumer": 3, "workload-owner": 4}
OTLP_TRACES_PATH = "v1/traces"  # joined to a MeshOpenTelemetryBackend's path for OTLP/HTTP


def _tags_match(selector: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    return all(key in tags and (value == "*" or tags[key] == value) for key, value in selector.items())


def selects(target: TargetRef, dataplane: Dataplane) -> bool:
    """Whether a targetRef selects the dataplane (the MeshTrace being of its mesh)."""
    kind = target.kind
    if kind == "Mesh":
        return True
    if kind == "Dataplane":
        if target.name is not None:
            if target.namespace is not None and target.namespace != dataplane.namespace:
                return False
            return target.name == dataplane.name
        if target.labels is not None:
            return _tags_match(target.labels, dataplane.labels) if target.labels else True
        return True
    if kind == "MeshSubset":
        return any(_tags_match(target.tags or {}, i.tags) for i in dataplane.inbound)
    if kind == "MeshService":
        return any(i.tags.get(SERVICE_TAG) == target.name for i in dataplane.inbound)
    return False


def _compare_dataplane_refs(a: TargetRef, b: TargetRef) -> int:
    if a.kind != "Dataplane" or b.kind != "Dataplane":
        return 0
    if a.name and b.labels is not None:
        return 1
    if a.labels is not None and b.name:
        return -1
    if a.section_name and not b.section_name:
        return 1
    if not a.section_name and b.section_name:
        return -1
    return 0


def compare(a: MeshTrace, b: MeshTrace) -> int:
    """Negative when `a` merges before `b` (is less specific)."""
    by_kind = KIND_ORDER[a.target.kind] - KIND_ORDER[b.target.kind]
    if by_kind:
        return by_kind
    by_ref = _compare_dataplane_refs(a.target, b.target)
    if by_ref:
        return by_ref
    by_origin = ORIGIN_ORDER.get(a.labels.get(ORIGIN_LABEL, ""), 0) - ORIGIN_ORDER.get(
        b.labels.get(ORIGIN_LABEL, ""), 0
    )
    if by_origin:
        return by_origin
    by_role = ROLE_ORDER.get(_role(a), 0) - ROLE_ORDER.get(_role(b), 0)
    if by_role:
        return by_role
    return (a.name < b.name) - (a.name > b.name)  # names descending


def _role(trace: MeshTrace) -> str:
    return trace.labels.get(ROLE_LABEL) or "system"


def in_scope(trace: MeshTrace, dataplane: Dataplane) -> bool:
    """A consumer or workload-owner policy applies only to dataplanes of its own namespace."""
    if _role(trace) not in ("consumer", "workload-owner"):
        return True
    namespace = trace.labels.get(NAMESPACE_LABEL)
    return namespace is not None and namespace == dataplane.labels.get(NAMESPACE_LABEL)


def applicable(dataplane: Dataplane, traces: Iterable[MeshTrace]) -> list[MeshTrace]:
    """The MeshTraces that select the dataplane, in merge order (the last one wins a conflict)."""
    chosen = [
        t
        for t in traces
        if t.mesh == dataplane.mesh and in_scope(t, dataplane) and selects(t.target, dataplane)
    ]
    return sorted(chosen, key=functools.cmp_to_key(compare))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: a mapping patches a mapping key by key (null removes a key); anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass(frozen=True, slots=True)
class Merged:
    """The merged `default` of the MeshTraces that apply, and which of them gave its `backends`."""

    conf: Mapping[str, Any]
    backends_from: str


def merge(traces: Sequence[MeshTrace]) -> Merged:
    conf: Any = {}
    backends_from = ""
    for trace in traces:
        conf = merge_patch(conf, trace.conf)
        if "backends" in trace.conf:
            backends_from = trace.name
    return Merged(conf, backends_from)


def _tag(entry: Mapping[str, Any]) -> CustomTag:
    if "literal" in entry:
        return CustomTag(entry["name"], literal=entry["literal"])
    header = entry["header"]
    return CustomTag(entry["name"], header=header["name"], default=header.get("default"))


def otlp_target(
    conf: Mapping[str, Any], mesh: str, otel: Sequence[OpenTelemetryBackend]
) -> tuple[str, str, str] | None:
    """(name, endpoint, protocol) of an OpenTelemetry backend: `host:port` is OTLP/gRPC, an http(s) URL
    OTLP/HTTP; a backendRef takes its MeshOpenTelemetryBackend's endpoint (https when its port is 443, the
    path joined with v1/traces, as Kuma builds it). None when the backendRef selects nothing."""
    endpoint = conf.get("endpoint")
    if endpoint:
        protocol = "http" if endpoint.startswith(("http://", "https://")) else "grpc"
        return "", endpoint, protocol
    ref = conf.get("backendRef") or {}
    found = select_otel_backend(ref.get("labels") or {}, mesh, otel)
    if found is None:
        return None
    host_port = join_host_port(found.address, found.port)
    if found.protocol == "grpc":
        return found.name, host_port, "grpc"
    scheme = "https" if found.port == 443 else "http"
    return found.name, f"{scheme}://{host_port}{posixpath.join(found.path or '/', OTLP_TRACES_PATH)}", "http"


def to_backend(merged: Merged, mesh: str, otel: Sequence[OpenTelemetryBackend]) -> Backend | None:
    """The tracing backend of a merged conf; None when `backends` is empty (tracing off)."""
    conf = merged.conf
    backends = conf.get("backends") or []
    if not backends:
        return None
    sampling = conf.get("sampling") or {}
    common: dict[str, Any] = {
        "sampling": float(sampling.get("overall", 100.0)),
        "client_sampling": float(sampling.get("client", 100.0)),
        "random_sampling": float(sampling.get("random", 100.0)),
        "tags": tuple(_tag(t) for t in conf.get("tags") or ()),
    }
    backend = backends[0]
    if backend["type"] == "OpenTelemetry":
        target = otlp_target(backend.get("openTelemetry") or {}, mesh, otel)
        if target is None:
            return None
        name, endpoint, protocol = target
        return Backend(
            name or merged.backends_from,
            "openTelemetry",
            endpoint=endpoint,
            protocol=protocol,
            **common,
        )
    zipkin = backend.get("zipkin") or {}
    return Backend(
        merged.backends_from,
        "zipkin",
        url=zipkin.get("url", ""),
        trace_id_128bit=bool(zipkin.get("traceId128bit", False)),
        api_version=zipkin.get("apiVersion", "httpJson"),
        shared_span_context=bool(zipkin.get("sharedSpanContext", True)),
        **common,
    )
