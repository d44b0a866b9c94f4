"""TrafficTraces (and the Mesh backends they use) as equivalent MeshTrace documents, for `sidecar migrate`.

Pure. Each selector of each TrafficTrace becomes one MeshTrace carrying the TrafficTrace's backend
inline (Zipkin settings spelled out, the backend's sampling as `overall`); a TrafficTrace whose backend
is empty and whose mesh has no default backend traces nothing, and becomes `backends: []`.

The two policies choose differently: one TrafficTrace applies, the one with the best selector rank
(number of tags, then exact values; then the newest, then the alphabetically first name), while every
MeshTrace that selects a dataplane is merged by kind and then by name. Since every converted MeshTrace
sets all it needs (`backends` and `sampling.overall`), the last one merged decides alone, so the
conversion is exact when the merge order puts each dataplane's winning selector last:

1. First the readable form: `{kuma.io/service: '*'}` as `Mesh`, `{kuma.io/service: NAME}` as
   `MeshService`, any other selector as `MeshSubset`, named after the TrafficTrace.
2. `migrate` then resolves every Dataplane of the config with the original and with the converted
   policies; if any resolves differently (ranks that the kinds cannot express), every selector becomes a
   `MeshSubset` named `<NN>-<TrafficTrace>`, where NN numbers them from the strongest down, so that
   the name order is the TrafficTrace precedence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sidecar.config.match import selector_rank
from sidecar.config.model import SERVICE_TAG, Backend, MeshTrace, Resources, TargetRef, TrafficTrace
from sidecar.config.snapshot import build_snapshot

FORMS = ("universal", "kubernetes")
NAMESPACE = "kuma-system"  # where Kuma keeps mesh-scoped policies on Kubernetes
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Converted:
    """One MeshTrace made from one selector of one TrafficTrace."""

    trace: MeshTrace
    origin: str  # "TrafficTrace/NAME selectors[i]"


def _percent(value: float) -> int | str:
    """A sampling percentage as MeshTrace writes it: an int, or a decimal string."""
    return int(value) if value == int(value) else format(Decimal(str(value)).normalize(), "f")


def _conf(backend: Backend | None) -> dict[str, Any]:
    if backend is None:
        return {"backends": []}
    zipkin = {
        "url": backend.url,
        "traceId128bit": backend.trace_id_128bit,
        "apiVersion": backend.api_version,
        "sharedSpanContext": backend.shared_span_context,
    }
    return {
        "backends": [{"type": "Zipkin", "zipkin": zipkin}],
        "sampling": {"overall": backend.sampling},
    }


def _natural_target(selector: Mapping[str, str]) -> TargetRef:
    if set(selector) == {SERVICE_TAG}:
        service = selector[SERVICE_TAG]
        return TargetRef("Mesh") if service == "*" else TargetRef("MeshService", name=service)
    return TargetRef("MeshSubset", tags=dict(selector))


def _strength(trace: TrafficTrace, selector: Mapping[str, str]) -> tuple[int, int, datetime, str]:
    """Sorts the strongest first: best rank, then the newest, then the alphabetically first name."""
    created = trace.creation_time or _EPOCH
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    rank = selector_rank(selector, selector) or (0, 0)  # a selector's rank does not depend on the tags
    return (-rank[0], -rank[1], _EPOCH - (created - _EPOCH), trace.name)


def _safe(name: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-") or "trace"


def _convert(resources: Resources, ordered: bool) -> list[Converted]:
    out: list[Converted] = []
    entries = [
        (tt, i, selector)
        for tt in sorted(resources.traffic_traces, key=lambda t: (t.mesh, t.name))
        for i, selector in enumerate(tt.selectors)
    ]
    if ordered:
        entries.sort(key=lambda e: (e[0].mesh, _strength(e[0], e[2])))
    width = max(2, len(str(len(entries))))
    for n, (tt, i, selector) in enumerate(entries):
        mesh = resources.meshes.get(tt.mesh)
        backend = mesh.backend(tt.backend or mesh.default_backend or "") if mesh else None
        if ordered:
            name, target = f"{n:0{width}d}-{_safe(tt.name)}", TargetRef("MeshSubset", tags=dict(selector))
        else:
            name = tt.name if len(tt.selectors) == 1 else f"{tt.name}-{i}"
            target = _natural_target(selector)
        trace = MeshTrace(name, tt.mesh, target, _conf(backend), tt.source)
        out.append(Converted(trace, f"TrafficTrace/{tt.name} selectors[{i}]"))
    return out


def differences(resources: Resources, converted: list[MeshTrace]) -> list[str]:
    """The dataplanes whose tracing the converted MeshTraces (in place of the TrafficTraces) change."""
    after = replace(resources, traffic_traces=(), mesh_traces=(*resources.mesh_traces, *converted))
    out = []
    for dataplane in resources.dataplanes:
        if dataplane.mesh not in resources.meshes:
            continue
        old = build_snapshot(resources, dataplane.name, dataplane).backend
        new = build_snapshot(after, dataplane.name, dataplane).backend
        if not same_tracing(old, new):
            out.append(dataplane.name)
    return out


def same_tracing(a: Backend | None, b: Backend | None) -> bool:
    """Whether two resolved backends trace alike (their names aside)."""
    if a is None or b is None:
        return a is b
    return replace(a, name="") == replace(b, name="")


def convert(resources: Resources) -> tuple[list[Converted], bool]:
    """The MeshTraces equivalent to the TrafficTraces of validated `resources`, and whether they had to
    be ordered by name (see the module's docstring)."""
    natural = _convert(resources, ordered=False)
    if not differences(resources, [c.trace for c in natural]):
        return natural, False
    return _convert(resources, ordered=True), True


def _target_json(target: TargetRef) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": target.kind}
    if target.name is not None:
        out["name"] = target.name
    if target.tags is not None:
        out["tags"] = dict(target.tags)
    return out


def _default_json(conf: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"backends": conf["backends"]}
    if "sampling" in conf:
        out["sampling"] = {k: _percent(v) for k, v in conf["sampling"].items()}
    return out


def document(trace: MeshTrace, form: str = "universal") -> dict[str, Any]:
    """A MeshTrace as a YAML-ready document in either form."""
    spec = {"targetRef": _target_json(trace.target), "default": _default_json(trace.conf)}
    if form == "kubernetes":
        return {
            "apiVersion": "kuma.io/v1alpha1",
            "kind": "MeshTrace",
            "metadata": {"name": trace.name, "namespace": NAMESPACE, "labels": {"kuma.io/mesh": trace.mesh}},
            "spec": spec,
        }
    return {"type": "MeshTrace", "name": trace.name, "mesh": trace.mesh, "spec": spec}
