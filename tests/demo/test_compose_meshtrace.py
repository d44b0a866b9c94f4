"""The compose demo's MeshTrace variant, checked without a Docker engine: the override mounts its
config in every sidecar, and every dataplane resolves to the same backend as with the TrafficTrace
config (the variant changes the policy form, not where spans go)."""

from __future__ import annotations

from pathlib import Path

import yaml

from sidecar.config import load_config, resolve_dataplane

DEMO = Path(__file__).resolve().parents[2] / "demo"


def test_override_mounts_the_meshtrace_config_in_every_sidecar() -> None:
    base = yaml.safe_load((DEMO / "docker-compose.yml").read_text())["services"]
    override = yaml.safe_load((DEMO / "docker-compose.meshtrace.yml").read_text())["services"]
    assert set(override) == {name for name in base if name.endswith("-sidecar")}
    for svc in override.values():
        assert svc["volumes"] == ["./config-meshtrace:/etc/sidecar:ro"]


def test_same_backends_as_the_traffic_trace_config() -> None:
    variant = load_config([str(DEMO / "config-meshtrace")])
    assert variant.ok, variant.problems
    assert variant.resources.traffic_traces == () and len(variant.resources.mesh_traces) == 2
    for dp in variant.resources.dataplanes:
        old = resolve_dataplane([str(DEMO / "config")], dp.name).snapshot
        new = resolve_dataplane([str(DEMO / "config-meshtrace")], dp.name).snapshot
        assert old is not None and new is not None and new.policy == "MeshTrace"
        assert old.backend is not None and new.backend is not None
        assert (new.backend.url, new.backend.api_version, new.backend.sampling) == (
            old.backend.url,
            old.backend.api_version,
            old.backend.sampling,
        )
