"""`sidecar migrate`: the printed MeshTraces, loaded in place of the TrafficTraces, resolve every
Dataplane to the same tracing (the round trip), in both output forms."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.cli import main
from sidecar.config import load_config, resolve_dataplane
from sidecar.config.migrate import convert, differences, same_tracing
from sidecar.config.model import Dataplane, Inbound, Resources, Source, TrafficTrace
from tests.config.helpers import MESH, dataplane, trace, write

ROOT = Path(__file__).resolve().parents[2]
FORMATS = ("universal", "kubernetes")


def migrate(capsys: pytest.CaptureFixture[str], paths: list[str], form: str) -> str:
    flags = [arg for p in paths for arg in ("--config", p)]
    assert main(["migrate", "--format", form, *flags]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def assert_round_trip(tmp: Path, original: list[str], without_traces: list[str], migrated: str) -> list[str]:
    """Every dataplane resolves alike before and after; the MeshTrace names that decided, in order."""
    out = tmp / "migrated.yaml"
    out.write_text(migrated)
    after_paths = [*without_traces, str(out)]
    after = load_config(after_paths)
    assert after.problems == []
    assert after.resources.traffic_traces == ()
    deciders = []
    for dp in load_config(original).resources.dataplanes:
        before = resolve_dataplane(original, dp.name).snapshot
        now = resolve_dataplane(after_paths, dp.name).snapshot
        assert before is not None and now is not None
        assert same_tracing(before.backend, now.backend), (dp.name, before.backend, now.backend)
        assert (now.policy == "MeshTrace") is (before.policy == "TrafficTrace"), dp.name
        deciders.append(now.mesh_traces[-1] if now.mesh_traces else "")
    return deciders


@pytest.mark.parametrize("form", FORMATS)
def test_shipped_config_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str) -> None:
    config = ROOT / "config"
    migrated = migrate(capsys, [str(config)], form)
    docs = [d for d in yaml.safe_load_all(migrated) if d]
    assert {d.get("kind", d.get("type")) for d in docs} == {"MeshTrace"}
    deciders = assert_round_trip(
        tmp_path,
        [str(config / "mesh.yaml"), str(config / "dataplanes.yaml"), str(config / "traffic-trace.yaml")],
        [str(config / "mesh.yaml"), str(config / "dataplanes.yaml")],
        migrated,
    )
    assert deciders == ["trace-all-traffic", "trace-all-traffic", "trace-db-api"]  # readable names


WEB = {"kuma.io/service": "web", "kuma.io/protocol": "http", "version": "v1", "zone": "eu"}
API = {"kuma.io/service": "api", "kuma.io/protocol": "http", "version": "v2"}
DB = {"kuma.io/service": "db", "kuma.io/protocol": "http"}
NONE_TRACED = {"kuma.io/service": "batch", "kuma.io/protocol": "tcp"}

CASES: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "wildcard and exact",
        [trace("all", {"kuma.io/service": "*"}), trace("web", {"kuma.io/service": "web"}, backend="other")],
    ),
    (
        "two tags outrank an exact service",  # MeshService would outrank MeshSubset: names must order them
        [
            trace("a-web", {"kuma.io/service": "web"}, backend="other"),
            trace("b-two", {"kuma.io/service": "*", "version": "*"}),
        ],
    ),
    (
        "equal rank: the newest, then the first name",
        [
            trace("b", {"version": "*"}, backend="other", creationTime="2026-01-02T00:00:00Z"),
            trace("a", {"version": "*"}, creationTime="2026-01-01T00:00:00Z"),
            trace("c", {"zone": "*"}),
            trace("d", {"zone": "*"}, backend="other"),
        ],
    ),
    (
        "several selectors, one without a backend",
        [
            trace("multi", {"kuma.io/service": "api"}, {"zone": "eu"}, backend="other"),
            trace("default-backend", {"kuma.io/service": "*"}),
        ],
    ),
]


def mesh_without_default() -> dict[str, Any]:
    mesh = yaml.safe_load(yaml.safe_dump(MESH))
    del mesh["tracing"]["defaultBackend"]
    return mesh


@pytest.mark.parametrize("form", FORMATS)
@pytest.mark.parametrize(("case", "traces"), CASES, ids=[c[0] for c in CASES])
def test_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str, case: str, traces: list[dict[str, Any]]
) -> None:
    base = [
        MESH,
        dataplane("web-01", WEB),
        dataplane("api-01", API),
        dataplane("db-01", DB),
        dataplane("batch-01", NONE_TRACED),
        dataplane("two-01", DB, API, port=10100),
    ]
    (tmp_path / "src").mkdir()
    base_file = write(tmp_path / "src", base, name="base.yaml")
    trace_file = write(tmp_path / "src", traces, name="traces.yaml")
    migrated = migrate(capsys, [str(base_file), str(trace_file)], form)
    assert_round_trip(tmp_path, [str(base_file), str(trace_file)], [str(base_file)], migrated)


def test_ranks_the_kinds_cannot_express_get_ordered_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path, [MESH, dataplane("web-01", WEB)], name="base.yaml")
    traces = write(tmp_path, CASES[1][1], name="traces.yaml")
    migrated = migrate(capsys, [str(base), str(traces)], "universal")
    names = [d["name"] for d in yaml.safe_load_all(migrated) if d]
    assert names == ["00-b-two", "01-a-web"]  # the strongest first: its name sorts first and wins
    assert "numbered so that Kuma's merge order keeps" in migrated


def test_a_trace_without_any_backend_becomes_empty_backends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path, [mesh_without_default(), dataplane("web-01", WEB)], name="base.yaml")
    traces = write(tmp_path, [trace("t", {"kuma.io/service": "web"})], name="traces.yaml")
    migrated = migrate(capsys, [str(base), str(traces)], "universal")
    [doc] = [d for d in yaml.safe_load_all(migrated) if d]
    assert doc["spec"]["default"] == {"backends": []}
    assert_round_trip(tmp_path, [str(base), str(traces)], [str(base)], migrated)


def test_nothing_to_migrate_and_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, [MESH, dataplane("web-01", WEB)])
    assert main(["migrate", "--config", str(path)]) == 0
    assert capsys.readouterr().out == "# no TrafficTrace to migrate\n"
    bad = write(tmp_path, [MESH, trace("t", {"kuma.io/service": "web"}, backend="nope")], name="bad.yaml")
    assert main(["migrate", "--config", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and 'conf.backend: tracing backend "nope" is not defined' in err


# ---- property: any set of TrafficTraces converts exactly ------------------------------------------------

_TAG_KEYS = ["kuma.io/service", "version", "zone"]
_VALUES = ["web", "api", "v1", "eu", "*"]


def _resources(
    dataplanes: list[dict[str, str]], traces: list[tuple[str, list[dict[str, str]], str | None, int | None]]
) -> Resources:
    mesh = load_config([str(ROOT / "config" / "mesh.yaml")]).resources.meshes["default"]
    dps = tuple(
        Dataplane(
            f"dp-{i}",
            "default",
            "127.0.0.1",
            (Inbound(10000 + i, 8080, "127.0.0.1", None, tags),),
            (),
            Source("f", 1),
        )
        for i, tags in enumerate(dataplanes)
    )
    tts = tuple(
        TrafficTrace(
            name,
            "default",
            tuple(selectors),
            backend,
            None if day is None else datetime(2026, 1, day, tzinfo=UTC),
            Source("f", 1),
        )
        for name, selectors, backend, day in traces
    )
    return Resources({"default": mesh}, tts, dps, ())


_selector = st.dictionaries(st.sampled_from(_TAG_KEYS), st.sampled_from(_VALUES), min_size=1, max_size=3)
_inbound_tags = st.dictionaries(
    st.sampled_from(_TAG_KEYS[1:]), st.sampled_from(_VALUES[:-1]), max_size=2
).map(lambda t: {"kuma.io/service": "web", **t}) | st.dictionaries(
    st.sampled_from(_TAG_KEYS[1:]), st.sampled_from(_VALUES[:-1]), max_size=2
).map(lambda t: {"kuma.io/service": "api", **t})
_traces = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.lists(_selector, min_size=1, max_size=2),
        st.sampled_from([None, "jaeger-collector", "zipkin-sampled"]),
        st.one_of(st.none(), st.integers(1, 3)),
    ),
    max_size=5,
    unique_by=lambda t: t[0],
)


@settings(max_examples=150, deadline=None)
@given(dataplanes=st.lists(_inbound_tags, min_size=1, max_size=4), traces=_traces)
def test_any_traffic_traces_convert_exactly(
    dataplanes: list[dict[str, str]], traces: list[tuple[str, list[dict[str, str]], str | None, int | None]]
) -> None:
    resources = _resources(dataplanes, traces)
    converted, _ = convert(resources)
    assert differences(resources, [c.trace for c in converted]) == []
