"""Which TrafficTrace a dataplane gets: a table of Kuma's matching cases, in both YAML forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.config import build_snapshot
from tests.config.helpers import FORMS, MESH, dataplane, load, trace

WEB = {"kuma.io/service": "web", "kuma.io/protocol": "http", "version": "v1"}
ADMIN = {"kuma.io/service": "admin", "kuma.io/protocol": "http"}

CASES: list[tuple[str, list[dict[str, Any]], str | None]] = [
    ("wildcard matches", [trace("all", {"kuma.io/service": "*"})], "all"),
    (
        "exact beats wildcard",
        [trace("a-all", {"kuma.io/service": "*"}), trace("z-web", {"kuma.io/service": "web"})],
        "z-web",
    ),
    (
        "more tags beat exact values",
        [
            trace("a-exact", {"kuma.io/service": "web"}),
            trace("b-two", {"kuma.io/service": "*", "version": "*"}),
        ],
        "b-two",
    ),
    (
        "same tag count: more exact values win",
        [
            trace("a", {"kuma.io/service": "*", "version": "*"}),
            trace("b", {"kuma.io/service": "*", "version": "v1"}),
        ],
        "b",
    ),
    ("wildcard needs the key present", [trace("needs-zone", {"kuma.io/service": "*", "zone": "*"})], None),
    ("value mismatch", [trace("other", {"kuma.io/service": "backend"})], None),
    (
        "best selector of a policy counts",
        [
            trace("a", {"kuma.io/service": "*"}, {"kuma.io/service": "web", "version": "v1"}),
            trace("b", {"kuma.io/service": "web", "version": "*"}),
        ],
        "a",
    ),
    ("tags of one inbound only", [trace("split", {"kuma.io/service": "admin", "version": "v1"})], None),
    ("second inbound matches", [trace("adm", {"kuma.io/service": "admin"})], "adm"),
    (
        "equal rank: alphabetically first",
        [trace("b", {"kuma.io/service": "*"}), trace("a", {"kuma.io/service": "*"})],
        "a",
    ),
    (
        "equal rank: newest creation time wins",
        [
            trace("a", {"kuma.io/service": "*"}, creationTime="2024-01-01T00:00:00Z"),
            trace("b", {"kuma.io/service": "*"}, creationTime="2024-06-01T00:00:00Z"),
        ],
        "b",
    ),
    (
        "creation time only breaks ties",
        [
            trace("a", {"kuma.io/service": "web"}, creationTime="2024-01-01T00:00:00Z"),
            trace("b", {"kuma.io/service": "*"}, creationTime="2025-01-01T00:00:00Z"),
        ],
        "a",
    ),
    ("no policy", [], None),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("case", "policies", "expected"), CASES, ids=[c[0] for c in CASES])
def test_matching(
    tmp_path: Path, form: str, case: str, policies: list[dict[str, Any]], expected: str | None
) -> None:
    result = load(tmp_path, [MESH, dataplane("web-01", WEB, ADMIN), *policies], form)
    assert result.ok, result.problems
    snap = build_snapshot(result.resources, "web-01")
    assert snap.traffic_trace == expected
    assert (snap.backend is None) is (expected is None)


@pytest.mark.parametrize("form", FORMS)
def test_policies_of_other_meshes_do_not_count(tmp_path: Path, form: str) -> None:
    other_mesh = dict(MESH, name="other")
    foreign = trace("aaa-foreign", {"kuma.io/service": "web"}, mesh="other")
    result = load(
        tmp_path,
        [MESH, other_mesh, dataplane("web-01", WEB), foreign, trace("zzz", {"kuma.io/service": "*"})],
        form,
    )
    assert result.ok, result.problems
    assert build_snapshot(result.resources, "web-01").traffic_trace == "zzz"


@pytest.mark.parametrize("form", FORMS)
def test_default_backend_when_conf_backend_empty(tmp_path: Path, form: str) -> None:
    result = load(tmp_path, [MESH, dataplane("web-01", WEB), trace("t", {"kuma.io/service": "*"})], form)
    snap = build_snapshot(result.resources, "web-01")
    assert snap.backend is not None and snap.backend.name == "jaeger"


@pytest.mark.parametrize("form", FORMS)
def test_explicit_backend(tmp_path: Path, form: str) -> None:
    result = load(
        tmp_path,
        [MESH, dataplane("web-01", WEB), trace("t", {"kuma.io/service": "*"}, backend="other")],
        form,
    )
    snap = build_snapshot(result.resources, "web-01")
    assert snap.backend is not None and snap.backend.name == "other"
    assert (
        snap.backend.sampling == 100.0
        and snap.backend.api_version == "httpJson"
        and snap.backend.shared_span_context
    )


@pytest.mark.parametrize("form", FORMS)
def test_no_match_means_no_tracing_even_with_default_backend(tmp_path: Path, form: str) -> None:
    result = load(
        tmp_path, [MESH, dataplane("web-01", WEB), trace("t", {"kuma.io/service": "backend"})], form
    )
    snap = build_snapshot(result.resources, "web-01")
    assert snap.traffic_trace is None and snap.backend is None


def test_match_without_any_backend_means_no_tracing(tmp_path: Path) -> None:
    mesh = {"type": "Mesh", "name": "default"}
    result = load(tmp_path, [mesh, dataplane("web-01", WEB), trace("t", {"kuma.io/service": "*"})])
    assert result.ok, result.problems
    snap = build_snapshot(result.resources, "web-01")
    assert snap.traffic_trace == "t" and snap.backend is None
