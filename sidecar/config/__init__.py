"""Kuma resources: load (Universal and Kubernetes YAML), validate, resolve one dataplane into a snapshot.

Pure: no sockets, no asyncio. The I/O layers use `load_config` and `build_snapshot` only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sidecar.config.load import load_raw
from sidecar.config.model import Dataplane, Resources
from sidecar.config.snapshot import Snapshot, SnapshotError, build_snapshot
from sidecar.config.validate import validate

__all__ = ["ConfigResult", "Snapshot", "SnapshotError", "build_snapshot", "load_config", "resolve"]


@dataclass(frozen=True, slots=True)
class ConfigResult:
    resources: Resources
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_config(paths: Iterable[str], extra_paths: Iterable[str] = ()) -> ConfigResult:
    """Load and validate every resource under `paths` (+ `extra_paths`, e.g. a --dataplane-file)."""
    raws, files, problems = load_raw([*paths, *extra_paths])
    resources, invalid = validate(raws, files)
    return ConfigResult(resources, problems + invalid)


def resolve(
    paths: Iterable[str], dataplane: str | None = None, dataplane_file: str | None = None
) -> tuple[Snapshot | None, list[str]]:
    """One call for the runtime: the snapshot of a dataplane (named, or the one in `dataplane_file`)."""
    result = load_config(paths, [dataplane_file] if dataplane_file else [])
    if not result.ok:
        return None, result.problems
    name = dataplane
    chosen: Dataplane | None = None
    if dataplane_file:
        own = [d for d in result.resources.dataplanes if d.source.file == dataplane_file]
        if len(own) != 1:
            return None, [f"{dataplane_file}: must contain exactly one Dataplane, found {len(own)}"]
        chosen, name = own[0], own[0].name
    try:
        return build_snapshot(result.resources, name or "", chosen), []
    except SnapshotError as exc:
        return None, [str(exc)]
