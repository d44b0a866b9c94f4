"""A broken resource that is not the dataplane's own does not stop it (sidecar/config/__init__.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.config import load_config, resolve_dataplane
from tests.config.helpers import FORMS, MESH, dataplane, trace, write

WEB = {"kuma.io/service": "web", "kuma.io/protocol": "http"}
BACKEND = {"kuma.io/service": "backend", "kuma.io/protocol": "http"}


def web_with_outbound() -> dict[str, Any]:
    doc = dataplane("web-01", WEB)
    doc["networking"]["outbound"] = [{"port": 20000, "tags": {"kuma.io/service": "backend"}}]
    return doc


def broken_dataplane(name: str) -> dict[str, Any]:
    doc = dataplane(name, BACKEND, port=10021)
    doc["networking"]["inbound"][0]["port"] = 0
    return doc


@pytest.mark.parametrize("form", FORMS)
def test_an_invalid_unrelated_dataplane_is_skipped_with_one_warning(tmp_path: Path, form: str) -> None:
    docs = [
        MESH,
        trace("all", {"kuma.io/service": "*"}),
        web_with_outbound(),
        dataplane("backend-01", BACKEND, port=10011),
        broken_dataplane("backend-02"),
    ]
    path = write(tmp_path, docs, form)
    resolution = resolve_dataplane([str(path)], "web-01")
    assert resolution.snapshot is not None and resolution.problems == []
    assert resolution.snapshot.outbound[0].endpoints == ("127.0.0.1:10011",)  # backend-02 is not used
    [warning] = resolution.warnings
    assert warning.startswith("skipping Dataplane/backend-02, it is invalid and not this dataplane's: ")
    assert "networking.inbound[0].port: port must be in the range [1, 65535], got 0" in warning
    assert load_config([str(path)]).problems != []  # `validate` still reports it


def test_one_warning_per_skipped_resource_even_with_several_problems(tmp_path: Path) -> None:
    other = broken_dataplane("other-01")
    other["networking"]["address"] = ""
    # A MeshTrace of another mesh (that does not exist): not this dataplane's, so skipped.
    docs = [MESH, dataplane("web-01", WEB), other, {"type": "MeshTrace", "name": "new", "mesh": "other"}]
    resolution = resolve_dataplane([str(write(tmp_path, docs))], "web-01")
    assert resolution.snapshot is not None
    assert [w.split(",")[0] for w in resolution.warnings] == [
        "skipping Dataplane/other-01",
        "skipping MeshTrace/new",
    ]
    assert "(and 1 more)" in resolution.warnings[0]


def test_an_invalid_mesh_of_another_mesh_is_skipped(tmp_path: Path) -> None:
    docs = [
        MESH,
        {"type": "Mesh", "name": "other", "tracing": {"defaultBackend": "x"}},
        dataplane("web-01", WEB),
    ]
    resolution = resolve_dataplane([str(write(tmp_path, docs))], "web-01")
    assert resolution.snapshot is not None and len(resolution.warnings) == 1


@pytest.mark.parametrize(
    ("case", "docs"),
    [
        ("own dataplane", [MESH, broken_dataplane("web-01")]),
        ("own mesh", [dict(MESH, tracing={"defaultBackend": "nope"}), dataplane("web-01", WEB)]),
        ("a traffic trace of the mesh", [MESH, dataplane("web-01", WEB), trace("t", {"app": ""})]),
        ("own name used twice", [MESH, dataplane("web-01", WEB), dataplane("web-01", WEB, port=20001)]),
    ],
)
def test_a_problem_of_its_own_stops_it_with_every_problem(
    tmp_path: Path, case: str, docs: list[dict[str, Any]]
) -> None:
    path = write(tmp_path, [*docs, broken_dataplane("unrelated-01")])
    resolution = resolve_dataplane([str(path)], "web-01")
    assert resolution.snapshot is None
    assert resolution.problems == load_config([str(path)]).problems  # the whole list, as `validate` has it
    assert any("unrelated-01" in p for p in resolution.problems)


def test_a_yaml_syntax_error_anywhere_stops_it(tmp_path: Path) -> None:
    write(tmp_path, [MESH, dataplane("web-01", WEB)])
    (tmp_path / "broken.yaml").write_text("type: Dataplane\nname: [\n")
    resolution = resolve_dataplane([str(tmp_path)], "web-01")
    assert resolution.snapshot is None and any(": yaml: " in p for p in resolution.problems)


def test_unknown_dataplane_suggests_the_close_name(tmp_path: Path) -> None:
    path = write(
        tmp_path, [MESH, dataplane("frontend-01", WEB), dataplane("backend-01", BACKEND, port=10011)]
    )
    resolution = resolve_dataplane([str(path)], "fronted-01")
    assert resolution.problems == [
        'dataplane "fronted-01" not found (known: backend-01, frontend-01); did you mean "frontend-01"?'
    ]
