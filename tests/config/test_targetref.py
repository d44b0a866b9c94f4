"""Which MeshTraces apply to a dataplane (every targetRef kind), their merge order, the merge, the
precedence over TrafficTrace, `backends: []`, and the Backend each backend form resolves to."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.config import resolve_dataplane
from sidecar.config.model import Backend, CustomTag, MeshTrace, Source, TargetRef
from sidecar.config.snapshot import Snapshot
from sidecar.config.targetref import compare, merge_patch
from tests.config.helpers import FORMS, MESH, dataplane, meshtrace, otel_backend, trace, write

WEB = {"kuma.io/service": "web", "kuma.io/protocol": "http", "version": "v1"}
OTHER = {"kuma.io/service": "other", "kuma.io/protocol": "http"}


def web_01(**labels: str) -> dict[str, Any]:
    doc = dataplane("web-01", WEB)
    if labels:
        doc["labels"] = labels
    return doc


def resolve(tmp: Path, docs: list[dict[str, Any]], form: str = "universal", name: str = "web-01") -> Snapshot:
    resolution = resolve_dataplane([str(write(tmp, docs, form))], name)
    assert resolution.snapshot is not None, resolution.problems
    assert resolution.warnings == []
    return resolution.snapshot


SELECTS: list[tuple[str, dict[str, Any] | None, dict[str, str], bool]] = [
    ("no targetRef is the mesh", None, {}, True),
    ("Mesh", {"kind": "Mesh"}, {}, True),
    ("Dataplane by name", {"kind": "Dataplane", "name": "web-01"}, {}, True),
    ("Dataplane by another name", {"kind": "Dataplane", "name": "web-02"}, {}, False),
    ("Dataplane by its labels", {"kind": "Dataplane", "labels": {"app": "web"}}, {"app": "web"}, True),
    ("Dataplane labels are not inbound tags", {"kind": "Dataplane", "labels": {"version": "v1"}}, {}, False),
    ("Dataplane by other labels", {"kind": "Dataplane", "labels": {"app": "web"}}, {"app": "api"}, False),
    ("Dataplane with neither: every one", {"kind": "Dataplane"}, {}, True),
    ("MeshSubset by inbound tags", {"kind": "MeshSubset", "tags": {"version": "v1"}}, {}, True),
    ("MeshSubset wildcard", {"kind": "MeshSubset", "tags": {"version": "*"}}, {}, True),
    ("MeshSubset other value", {"kind": "MeshSubset", "tags": {"version": "v2"}}, {}, False),
    ("MeshSubset tag absent", {"kind": "MeshSubset", "tags": {"zone": "*"}}, {}, False),
    ("MeshSubset tags are not labels", {"kind": "MeshSubset", "tags": {"app": "web"}}, {"app": "web"}, False),
    ("MeshService by name", {"kind": "MeshService", "name": "web"}, {}, True),
    ("MeshService other", {"kind": "MeshService", "name": "other"}, {}, False),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("case", "target", "labels", "selected"), SELECTS, ids=[c[0] for c in SELECTS])
def test_each_targetref_kind(
    tmp_path: Path,
    form: str,
    case: str,
    target: dict[str, Any] | None,
    labels: dict[str, str],
    selected: bool,
) -> None:
    snap = resolve(tmp_path, [MESH, web_01(**labels), meshtrace("mt", target)], form)
    assert snap.mesh_traces == (("mt",) if selected else ())
    assert snap.policy == ("MeshTrace" if selected else None)
    assert (snap.backend is not None) is selected


def test_dataplane_by_name_and_namespace_on_kubernetes(tmp_path: Path) -> None:
    docs = [
        MESH,
        web_01(),
        meshtrace("yes", {"kind": "Dataplane", "name": "web-01", "namespace": "kuma-system"}),
    ]
    docs.append(meshtrace("no", {"kind": "Dataplane", "name": "web-01", "namespace": "shop"}))
    assert resolve(tmp_path, docs, "kubernetes").mesh_traces == ("yes",)


def test_a_meshtrace_of_another_mesh_does_not_apply(tmp_path: Path) -> None:
    other_mesh = {"type": "Mesh", "name": "other"}
    assert resolve(tmp_path, [MESH, other_mesh, web_01(), meshtrace("mt", mesh="other")]).policy is None


def url(name: str) -> list[dict[str, Any]]:
    return [{"type": "Zipkin", "zipkin": {"url": f"http://{name}:9411/api/v2/spans"}}]


ORDER: list[tuple[str, list[dict[str, Any]], list[str]]] = [
    (
        "by kind: Mesh < Dataplane < MeshSubset < MeshService",
        [
            meshtrace("a-service", {"kind": "MeshService", "name": "web"}, url("a-service")),
            meshtrace("b-subset", {"kind": "MeshSubset", "tags": {"version": "v1"}}, url("b-subset")),
            meshtrace("c-dataplane", {"kind": "Dataplane", "name": "web-01"}, url("c-dataplane")),
            meshtrace("d-mesh", {"kind": "Mesh"}, url("d-mesh")),
        ],
        ["d-mesh", "c-dataplane", "b-subset", "a-service"],
    ),
    (
        "equal kinds by name descending: the alphabetically first wins",
        [meshtrace(n, {"kind": "Mesh"}, url(n)) for n in ("beta", "alpha", "gamma")],
        ["gamma", "beta", "alpha"],
    ),
    (
        "a Dataplane ref by name above one by labels",
        [
            meshtrace("a-labels", {"kind": "Dataplane", "labels": {"app": "web"}}, url("a-labels")),
            meshtrace("z-name", {"kind": "Dataplane", "name": "web-01"}, url("z-name")),
        ],
        ["a-labels", "z-name"],
    ),
    (
        "kind before name",
        [
            meshtrace("a-mesh", {"kind": "Mesh"}, url("a-mesh")),
            meshtrace("z-service", {"kind": "MeshService", "name": "web"}, url("z-service")),
        ],
        ["a-mesh", "z-service"],
    ),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("case", "traces", "order"), ORDER, ids=[c[0] for c in ORDER])
def test_merge_order(
    tmp_path: Path, form: str, case: str, traces: list[dict[str, Any]], order: list[str]
) -> None:
    snap = resolve(tmp_path, [MESH, web_01(app="web"), *traces], form)
    assert list(snap.mesh_traces) == order
    assert snap.backend is not None and snap.backend.url == f"http://{order[-1]}:9411/api/v2/spans"
    assert snap.backend.name == order[-1]


def ref(kind: str, section: str | None = None, **fields: Any) -> TargetRef:
    return TargetRef(kind, section_name=section, **fields)


def test_a_dataplane_ref_with_section_name_sorts_above_one_without() -> None:
    # MeshTrace rejects sectionName (it is not an inbound policy); the order still follows Kuma's.
    def mt(name: str, target: TargetRef) -> MeshTrace:
        return MeshTrace(name, "default", target, {}, Source("f", 1))

    with_section = mt("a", ref("Dataplane", "http", name="web-01"))
    without = mt("z", ref("Dataplane", name="web-01"))
    assert compare(with_section, without) > 0 and compare(without, with_section) < 0


KINDS = [
    ref("Mesh"),
    ref("Dataplane", labels={"a": "b"}),
    ref("Dataplane", name="x"),
    ref("MeshSubset", tags={"a": "b"}),
    ref("MeshService", name="web"),
]


@given(
    st.lists(
        st.tuples(st.sampled_from(range(len(KINDS))), st.text("abc", min_size=1, max_size=3)), max_size=8
    )
)
def test_merge_order_is_total_and_kind_first(items: list[tuple[int, str]]) -> None:
    traces = [MeshTrace(name, "default", KINDS[k], {}, Source("f", 1)) for k, name in items]
    ordered = sorted(traces, key=functools.cmp_to_key(compare))
    ranks = [KINDS.index(t.target) for t in ordered]
    assert ranks == sorted(ranks)  # least specific first, whatever the names
    for a, b in itertools.pairwise(ordered):
        if a.target == b.target:
            assert a.name >= b.name  # equal refs: names descending, the first name merged last
    backwards = list(reversed(traces))
    if len({(KINDS.index(t.target), t.name) for t in traces}) == len(
        traces
    ):  # no two alike: the input order is moot
        assert sorted(backwards, key=functools.cmp_to_key(compare)) == ordered


@pytest.mark.parametrize(
    ("target", "patch", "merged"),
    [
        ({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 4}}, {"a": 1, "b": {"c": 4, "d": 3}}),
        ({"l": [1, 2]}, {"l": [3]}, {"l": [3]}),  # lists are replaced
        ({"l": [1, 2]}, {"l": []}, {"l": []}),
        ({"a": 1}, {"a": None}, {}),  # null removes
        ({"a": {"b": 1}}, {"a": 5}, {"a": 5}),
        ({}, {"a": {"b": None}}, {"a": {}}),
    ],
)
def test_json_merge_patch(target: Any, patch: Any, merged: Any) -> None:
    assert merge_patch(target, patch) == merged


@pytest.mark.parametrize("form", FORMS)
def test_defaults_merge_objects_by_field_and_replace_lists(tmp_path: Path, form: str) -> None:
    docs = [
        MESH,
        web_01(),
        meshtrace(
            "mesh-wide",
            {"kind": "Mesh"},
            sampling={"overall": 50, "random": "10"},
            tags=[{"name": "team", "literal": "core"}, {"name": "zone", "literal": "eu"}],
        ),
        meshtrace(
            "web",
            {"kind": "MeshService", "name": "web"},
            url("web"),
            sampling={"client": "20.5"},
            tags=[{"name": "env", "header": {"name": "X-Env", "default": "prod"}}],
        ),
    ]
    backend = resolve(tmp_path, docs, form).backend
    assert backend is not None
    assert (backend.sampling, backend.client_sampling, backend.random_sampling) == (50.0, 20.5, 10.0)
    assert backend.tags == (CustomTag("env", header="x-env", default="prod"),)
    assert backend.url == "http://web:9411/api/v2/spans"


@pytest.mark.parametrize("form", FORMS)
def test_empty_backends_turn_tracing_off(tmp_path: Path, form: str) -> None:
    docs = [
        MESH,
        web_01(),
        meshtrace("all", {"kind": "Mesh"}),
        meshtrace("web", {"kind": "MeshService", "name": "web"}, []),
    ]
    snap = resolve(tmp_path, docs, form)
    assert (snap.policy, snap.mesh_traces, snap.backend) == ("MeshTrace", ("all", "web"), None)
    # ...while a less specific []-policy is overridden by a more specific backend.
    docs[-1] = meshtrace("web", {"kind": "MeshService", "name": "web"})
    docs[-2] = meshtrace("all", {"kind": "Mesh"}, [])
    assert resolve(tmp_path, docs, form).backend is not None


@pytest.mark.parametrize("form", FORMS)
def test_meshtrace_takes_precedence_over_traffic_trace(tmp_path: Path, form: str) -> None:
    docs = [
        MESH,
        web_01(),
        dataplane("other-01", OTHER, port=10101),
        trace("tt", {"kuma.io/service": "*"}),
        meshtrace("mt", {"kind": "MeshService", "name": "web"}),
    ]
    web = resolve(tmp_path, docs, form)
    assert (web.policy, web.traffic_trace, web.ignored_traffic_trace) == ("MeshTrace", None, "tt")
    assert web.to_json()["ignoredTrafficTrace"] == "tt"
    other = resolve(tmp_path, docs, form, "other-01")  # no MeshTrace selects it: TrafficTrace rules
    assert (other.policy, other.traffic_trace, other.mesh_traces) == ("TrafficTrace", "tt", ())
    assert other.backend is not None and other.backend.url == "http://jaeger:9411/api/v2/spans"
    assert "ignoredTrafficTrace" not in other.to_json()


def otel(conf: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "OpenTelemetry", "openTelemetry": conf}]


REF = {"kind": "MeshOpenTelemetryBackend", "labels": {"otel": "main"}}
BACKENDS: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]] = [
    (
        "gRPC endpoint",
        otel({"endpoint": "otel:4317"}),
        [],
        {"name": "mt", "endpoint": "otel:4317", "protocol": "grpc"},
    ),
    (
        "HTTP endpoint",
        otel({"endpoint": "http://otel:4318/v1/traces"}),
        [],
        {"endpoint": "http://otel:4318/v1/traces", "protocol": "http"},
    ),
    (
        "backendRef, gRPC (default port)",
        otel({"backendRef": REF}),
        [otel_backend("collector", {"otel": "main"}, endpoint={"address": "otel"})],
        {"name": "collector", "endpoint": "otel:4317", "protocol": "grpc"},
    ),
    (
        "backendRef, HTTP with a path",
        otel({"backendRef": REF}),
        [
            otel_backend(
                "collector",
                {"otel": "main"},
                protocol="http",
                endpoint={"address": "otel", "port": 4318, "path": "/otlp"},
            )
        ],
        {"endpoint": "http://otel:4318/otlp/v1/traces", "protocol": "http"},
    ),
    (
        "backendRef, HTTP on 443 is https",
        otel({"backendRef": REF}),
        [
            otel_backend(
                "collector", {"otel": "main"}, protocol="http", endpoint={"address": "otel", "port": 443}
            )
        ],
        {"endpoint": "https://otel:443/v1/traces", "protocol": "http"},
    ),
    (
        "backendRef: the oldest match",
        otel({"backendRef": REF}),
        [
            {
                **otel_backend("a-new", {"otel": "main"}, endpoint={"address": "new"}),
                "creationTime": "2026-02-01T00:00:00Z",
            },
            {
                **otel_backend("b-old", {"otel": "main"}, endpoint={"address": "old"}),
                "creationTime": "2026-01-01T00:00:00Z",
            },
            otel_backend("c-other", {"otel": "other"}, endpoint={"address": "other"}),
        ],
        {"name": "b-old", "endpoint": "old:4317"},
    ),
    (
        "Zipkin with its defaults",
        url("jaeger"),
        [],
        {"type": "zipkin", "traceId128bit": False, "apiVersion": "httpJson", "sharedSpanContext": True},
    ),
    (
        "Zipkin with every field",
        [
            {
                "type": "Zipkin",
                "zipkin": {
                    "url": "http://j:9411/s",
                    "traceId128bit": True,
                    "apiVersion": "httpProto",
                    "sharedSpanContext": False,
                },
            }
        ],
        [],
        {
            "url": "http://j:9411/s",
            "traceId128bit": True,
            "apiVersion": "httpProto",
            "sharedSpanContext": False,
        },
    ),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("case", "backends", "extra", "expected"), BACKENDS, ids=[c[0] for c in BACKENDS])
def test_backend_forms(
    tmp_path: Path,
    form: str,
    case: str,
    backends: list[dict[str, Any]],
    extra: list[dict[str, Any]],
    expected: dict[str, Any],
) -> None:
    snap = resolve(tmp_path, [MESH, web_01(), *extra, meshtrace("mt", None, backends)], form)
    doc = snap.to_json()["backend"]
    assert {k: doc[k] for k in expected} == expected
    assert doc["sampling"] == {"overall": 100.0, "client": 100.0, "random": 100.0}
    assert doc["tags"] == []
    assert doc["type"] == ("zipkin" if backends[0]["type"] == "Zipkin" else "openTelemetry")


def test_inspect_document_of_a_meshtrace(tmp_path: Path) -> None:
    docs = [
        MESH,
        web_01(),
        meshtrace("mt", tags=[{"name": "env", "header": {"name": "x-env"}}], sampling={"overall": 80}),
    ]
    doc = resolve(tmp_path, docs).to_json()
    assert list(doc) == [
        "mesh",
        "dataplane",
        "trafficTrace",
        "backend",
        "inbound",
        "outbound",
        "policy",
        "meshTraces",
        "ignoredTrafficTrace",
    ]
    assert (doc["policy"], doc["meshTraces"], doc["trafficTrace"], doc["ignoredTrafficTrace"]) == (
        "MeshTrace",
        ["mt"],
        None,
        None,
    )
    assert doc["backend"] == {
        "name": "mt",
        "type": "zipkin",
        "sampling": {"overall": 80.0, "client": 100.0, "random": 100.0},
        "url": "http://jaeger:9411/api/v2/spans",
        "traceId128bit": False,
        "apiVersion": "httpJson",
        "sharedSpanContext": True,
        "tags": [{"name": "env", "header": {"name": "x-env"}}],
    }


def test_backend_json_keeps_the_traffic_trace_shape() -> None:
    doc = Backend("b", "zipkin", 50.0, url="http://j:9411/s").to_json()
    assert doc["sampling"] == 50.0 and "tags" not in doc


def labelled(name: str, **labels: str) -> dict[str, Any]:
    doc = meshtrace(name, {"kind": "Mesh"}, url(name))
    doc["labels"] = labels
    return doc


CONTROL_PLANE_LABELS: list[tuple[str, list[dict[str, Any]], list[str]]] = [
    (
        "a zone's policy merges after a global one, then names",
        [
            labelled("a-global", **{"kuma.io/origin": "global"}),
            labelled("z-zone", **{"kuma.io/origin": "zone"}),
        ],
        ["a-global", "z-zone"],
    ),
    (
        "no origin label sits between global and zone",
        [
            labelled("a-zone", **{"kuma.io/origin": "zone"}),
            labelled("b-none"),
            labelled("c-global", **{"kuma.io/origin": "global"}),
        ],
        ["c-global", "b-none", "a-zone"],
    ),
    (
        "roles: system < producer < consumer < workload-owner",
        [
            labelled("a-owner", **{"kuma.io/policy-role": "workload-owner", "k8s.kuma.io/namespace": "shop"}),
            labelled("b-producer", **{"kuma.io/policy-role": "producer"}),
            labelled("c-system", **{"kuma.io/policy-role": "system"}),
        ],
        ["c-system", "b-producer", "a-owner"],
    ),
    (
        "a workload-owner policy of another namespace does not apply",
        [
            labelled(
                "a-other", **{"kuma.io/policy-role": "workload-owner", "k8s.kuma.io/namespace": "other"}
            ),
            labelled("b-consumer", **{"kuma.io/policy-role": "consumer"}),  # no namespace label: none
            labelled("c-mesh"),
        ],
        ["c-mesh"],
    ),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    ("case", "traces", "order"), CONTROL_PLANE_LABELS, ids=[c[0] for c in CONTROL_PLANE_LABELS]
)
def test_control_plane_labels_order_and_scope(
    tmp_path: Path, form: str, case: str, traces: list[dict[str, Any]], order: list[str]
) -> None:
    snap = resolve(tmp_path, [MESH, web_01(**{"k8s.kuma.io/namespace": "shop"}), *traces], form)
    assert list(snap.mesh_traces) == order
