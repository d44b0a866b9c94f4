"""Kuma resources: load (Universal and Kubernetes YAML), validate, resolve one dataplane into a snapshot.

Pure: no sockets, no asyncio. The I/O layers use `load_config` and `resolve_dataplane` only.

A broken resource that is not the dataplane's own does not stop it: `resolve_dataplane` skips it with a
warning when the dataplane's Dataplane, its Mesh and the tracing policies of that mesh (TrafficTrace,
MeshTrace, MeshOpenTelemetryBackend) are valid (they decide what the sidecar does); a problem that
belongs to no resource (unreadable file, YAML syntax) could hide any of those, so it still stops it.
`load_config` (and `sidecar validate`) report every problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sidecar.config.load import load_raw
from sidecar.config.model import SERVICE_TAG, Dataplane, Resources
from sidecar.config.problems import Problem, did_you_mean
from sidecar.config.snapshot import Snapshot, SnapshotError, build_snapshot
from sidecar.config.validate import validate

__all__ = [
    "ConfigResult",
    "Problem",
    "Resolution",
    "Snapshot",
    "SnapshotError",
    "build_snapshot",
    "load_config",
    "resolve",
    "resolve_dataplane",
]


# Kinds whose every resource of the dataplane's mesh may decide its tracing: one of them broken stops it.
POLICY_KINDS = frozenset({"TrafficTrace", "MeshTrace", "MeshOpenTelemetryBackend"})


@dataclass(frozen=True, slots=True)
class ConfigResult:
    resources: Resources
    issues: list[Problem] = field(default_factory=list)
    notices: list[Problem] = field(default_factory=list)  # warnings: the resources are valid all the same

    @property
    def problems(self) -> list[str]:
        return [p.text for p in self.issues]

    @property
    def ok(self) -> bool:
        return not self.issues


@dataclass(frozen=True, slots=True)
class Resolution:
    snapshot: Snapshot | None
    problems: list[str]  # why there is no snapshot (empty when there is one)
    warnings: list[str] = field(default_factory=list)  # one per broken resource skipped


def load_config(paths: Iterable[str], extra_paths: Iterable[str] = ()) -> ConfigResult:
    """Load and validate every resource under `paths` (+ `extra_paths`, e.g. a --dataplane-file)."""
    raws, files, problems = load_raw([*paths, *extra_paths])
    resources, invalid = validate(raws, files)
    if problems:  # a file that did not load may hold what the others miss: say that once
        invalid = [p for p in invalid if not p.follows]
    errors = [p for p in invalid if not p.warning]
    return ConfigResult(resources, problems + errors, [p for p in invalid if p.warning])


def _choose(result: ConfigResult, name: str | None, dataplane_file: str | None) -> Dataplane | str:
    """The dataplane to serve, or why there is none."""
    dataplanes = result.resources.dataplanes
    if dataplane_file:
        own = [d for d in dataplanes if d.source.file == dataplane_file]
        if len(own) != 1:
            return f"{dataplane_file}: must contain exactly one Dataplane, found {len(own)}"
        return own[0]
    chosen = next((d for d in dataplanes if d.name == name), None)
    if chosen is None:
        names = sorted({d.name for d in dataplanes})
        # A service name given for a Dataplane name is the usual mistake: name the Dataplanes serving it.
        serving = sorted({d.name for d in dataplanes for i in d.inbound if i.tags.get(SERVICE_TAG) == name})
        hint = (
            f'; "{name}" is the {SERVICE_TAG} of Dataplane {", ".join(serving)}: did you mean "{serving[0]}"?'
            if serving
            else did_you_mean(name, names)
        )
        return f'dataplane "{name}" not found (known: {", ".join(names) or "none"}){hint}'
    return chosen


def _skip(resources: Resources, broken: set[tuple[str, str, str]]) -> Resources:
    def keep(kind: str, name: str, mesh: str) -> bool:
        return (kind, name, mesh) not in broken

    return replace(
        resources,
        meshes={n: m for n, m in resources.meshes.items() if keep("Mesh", n, "")},
        traffic_traces=tuple(t for t in resources.traffic_traces if keep("TrafficTrace", t.name, t.mesh)),
        mesh_traces=tuple(t for t in resources.mesh_traces if keep("MeshTrace", t.name, t.mesh)),
        otel_backends=tuple(
            b for b in resources.otel_backends if keep("MeshOpenTelemetryBackend", b.name, b.mesh)
        ),
        dataplanes=tuple(d for d in resources.dataplanes if keep("Dataplane", d.name, d.mesh)),
        external_services=tuple(
            e for e in resources.external_services if keep("ExternalService", e.name, e.mesh)
        ),
    )


def _warning(resource: tuple[str, str, str], problems: list[Problem]) -> str:
    kind, name, _ = resource
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return (
        f"skipping {kind}/{name}, it is invalid and not this dataplane's: {first.text}{more}; "
        "`sidecar validate` lists every problem"
    )


def resolve_dataplane(
    paths: Iterable[str], dataplane: str | None = None, dataplane_file: str | None = None
) -> Resolution:
    """The snapshot of a dataplane (named, or the one in `dataplane_file`), skipping broken resources
    that are not its own."""
    result = load_config(paths, [dataplane_file] if dataplane_file else [])
    chosen = _choose(result, dataplane, dataplane_file)
    if isinstance(chosen, str):
        if any(p.resource is None for p in result.issues):  # an unreadable file may hold it: say only that
            return Resolution(None, result.problems)
        return Resolution(None, [*result.problems, chosen])
    ours = {("Dataplane", chosen.name, chosen.mesh), ("Mesh", chosen.mesh, "")}
    broken: dict[tuple[str, str, str], list[Problem]] = {}
    for problem in result.issues:
        resource = problem.resource
        own_trace = resource is not None and resource[0] in POLICY_KINDS and resource[2] == chosen.mesh
        mine = resource is None or resource in ours or own_trace
        if mine:  # the whole list, so the user sees what may have caused it
            return Resolution(None, result.problems)
        assert resource is not None
        broken.setdefault(resource, []).append(problem)
    try:
        snapshot = build_snapshot(_skip(result.resources, set(broken)), chosen.name, chosen)
    except SnapshotError as exc:
        return Resolution(None, [str(exc)])
    in_file_order = sorted(broken.items(), key=lambda item: (item[1][0].file, item[1][0].line or 0))
    notices = [
        n.text
        for n in result.notices
        if n.resource in ours or (n.kind == "TrafficTrace" and n.mesh == chosen.mesh)
    ]
    return Resolution(snapshot, [], [_warning(r, p) for r, p in in_file_order] + notices)


def resolve(
    paths: Iterable[str], dataplane: str | None = None, dataplane_file: str | None = None
) -> tuple[Snapshot | None, list[str]]:
    """`resolve_dataplane` without the warnings."""
    resolution = resolve_dataplane(paths, dataplane, dataplane_file)
    return resolution.snapshot, resolution.problems
