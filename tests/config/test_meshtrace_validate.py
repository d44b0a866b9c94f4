"""Every MeshTrace and MeshOpenTelemetryBackend validation message (Kuma's words), in both YAML forms,
with the FILE:LINE of the field, and all of them in one pass."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.config import load_config, resolve_dataplane
from tests.config.helpers import (
    FORMS,
    MESH,
    PROBLEM,
    ZIPKIN,
    dataplane,
    find_problem,
    load,
    meshtrace,
    otel_backend,
    write,
)

WEB = {"kuma.io/service": "web", "kuma.io/protocol": "http"}
OTEL = {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "otel:4317"}}
REF = {"kind": "MeshOpenTelemetryBackend", "labels": {"otel": "main"}}


def backend(kind: str, conf: Any) -> list[dict[str, Any]]:
    return [{"type": kind, kind[0].lower() + kind[1:]: conf}]


def with_spec(**changes: Any) -> dict[str, Any]:
    doc = meshtrace("mt")
    doc["spec"].update(copy.deepcopy(changes))
    return doc


def with_default(**changes: Any) -> dict[str, Any]:
    doc = meshtrace("mt")
    doc["spec"]["default"].update(copy.deepcopy(changes))
    return doc


def without_backends() -> dict[str, Any]:
    doc = meshtrace("mt", sampling={"overall": 50})
    del doc["spec"]["default"]["backends"]
    return doc


# description, the MeshTrace, field, message fragment, what the problem's line shows (None: the field's key)
BAD: list[tuple[str, dict[str, Any], str, str, str | None]] = [
    ("backends missing", without_backends(), "spec.default.backends", "must be defined", "default"),
    ("default missing", with_spec(default=None), "spec.default.backends", "must be defined", "default"),
    (
        "two backends",
        with_default(backends=[ZIPKIN, ZIPKIN]),
        "spec.default.backends",
        "must have zero or one backend defined, got 2",
        None,
    ),
    (
        "overall over 100",
        with_default(sampling={"overall": 101}),
        "spec.default.sampling.overall",
        "must be between 0 and 100, got 101",
        None,
    ),
    (
        "client negative",
        with_default(sampling={"client": "-0.5"}),
        "spec.default.sampling.client",
        'must be between 0 and 100, got "-0.5"',
        None,
    ),
    (
        "random not a number",
        with_default(sampling={"random": "half"}),
        "spec.default.sampling.random",
        'string is not a number: "half"',
        None,
    ),
    (
        "a YAML float",
        with_default(sampling={"overall": 0.5}),
        "spec.default.sampling.overall",
        "must be an int or a decimal string",
        None,
    ),
    (
        "unknown targetRef kind",
        with_spec(targetRef={"kind": "Meshservice", "name": "web"}),
        "spec.targetRef.kind",
        'value "Meshservice" is not supported; supported: Mesh, Dataplane, MeshSubset, MeshService; '
        'did you mean "MeshService"?',
        None,
    ),
    (
        "targetRef kind missing",
        with_spec(targetRef={"name": "x"}),
        "spec.targetRef.kind",
        "must be defined",
        "targetRef",
    ),
    (
        "name with kind Mesh",
        with_spec(targetRef={"kind": "Mesh", "name": "x"}),
        "spec.targetRef.name",
        "must not be set with kind Mesh",
        None,
    ),
    (
        "Dataplane by labels and name",
        with_spec(targetRef={"kind": "Dataplane", "name": "web-01", "labels": {"app": "web"}}),
        "spec.targetRef.labels",
        "either labels or name and namespace must be specified",
        None,
    ),
    (
        "Dataplane sectionName",
        with_spec(targetRef={"kind": "Dataplane", "name": "web-01", "sectionName": "http"}),
        "spec.targetRef.sectionName",
        "can only be used with inbound policies",
        None,
    ),
    (
        "MeshService without name",
        with_spec(targetRef={"kind": "MeshService"}),
        "spec.targetRef",
        "name or labels must be set when kind is MeshService",
        None,
    ),
    (
        "MeshService by labels",
        with_spec(targetRef={"kind": "MeshService", "name": "web", "labels": {"app": "web"}}),
        "spec.targetRef.labels",
        "selecting MeshService resources by labels is not supported; use name",
        None,
    ),
    (
        "MeshSubset empty tag value",
        with_spec(targetRef={"kind": "MeshSubset", "tags": {"version": ""}}),
        'spec.targetRef.tags["version"]',
        "tag value must be non-empty",
        None,
    ),
    (
        "tag with header and literal",
        with_default(tags=[{"name": "env", "literal": "x", "header": {"name": "x-env"}}]),
        "spec.default.tags[0]",
        "tag must have only one type defined: header, literal",
        "name: env",
    ),
    (
        "tag with neither",
        with_default(tags=[{"name": "env"}]),
        "spec.default.tags[0]",
        "tag must have only one type defined: header, literal",
        "name: env",
    ),
    (
        "tag without name",
        with_default(tags=[{"name": "", "literal": "x"}]),
        "spec.default.tags[0].name",
        "must not be empty",
        None,
    ),
    (
        "header tag without header name",
        with_default(tags=[{"name": "env", "header": {"default": "prod"}}]),
        "spec.default.tags[0].header.name",
        "must not be empty",
        "header",
    ),
    (
        "unknown backend type",
        with_default(backends=[{"type": "zipkin", "zipkin": {"url": "http://j:9411/api/v2/spans"}}]),
        "spec.default.backends[0].type",
        'unknown backend type "zipkin". Available backends: Zipkin, OpenTelemetry, Datadog; did you mean "Zipkin"?',
        None,
    ),
    (
        "zipkin settings missing",
        with_default(backends=[{"type": "Zipkin"}]),
        "spec.default.backends[0].zipkin",
        "must be defined",
        "type",
    ),
    (
        "zipkin url empty",
        with_default(backends=backend("Zipkin", {"url": ""})),
        "spec.default.backends[0].zipkin.url",
        "must not be empty",
        None,
    ),
    (
        "zipkin url invalid",
        with_default(backends=backend("Zipkin", {"url": "jaeger spans"})),
        "spec.default.backends[0].zipkin.url",
        'must be a valid url, got "jaeger spans"',
        None,
    ),
    (
        "zipkin url without port",
        with_default(backends=backend("Zipkin", {"url": "http://jaeger/api/v2/spans"})),
        "spec.default.backends[0].zipkin.url",
        "port must be defined",
        None,
    ),
    (
        "zipkin apiVersion",
        with_default(backends=backend("Zipkin", {"url": "http://j:9411/s", "apiVersion": "httpjson"})),
        "spec.default.backends[0].zipkin.apiVersion",
        'must be one of: httpJson, httpProto, got "httpjson"; did you mean "httpJson"?',
        None,
    ),
    (
        "zipkin boolean",
        with_default(backends=backend("Zipkin", {"url": "http://j:9411/s", "traceId128bit": "yes"})),
        "spec.default.backends[0].zipkin.traceId128bit",
        "must be a boolean",
        None,
    ),
    (
        "openTelemetry settings missing",
        with_default(backends=[{"type": "OpenTelemetry"}]),
        "spec.default.backends[0].openTelemetry",
        "must be defined",
        "type",
    ),
    (
        "openTelemetry endpoint and backendRef",
        with_default(backends=backend("OpenTelemetry", {"endpoint": "otel:4317", "backendRef": REF})),
        "spec.default.backends[0].openTelemetry",
        "openTelemetry must have only one type defined: endpoint, backendRef",
        None,
    ),
    (
        "openTelemetry neither",
        with_default(backends=backend("OpenTelemetry", {})),
        "spec.default.backends[0].openTelemetry",
        "openTelemetry must have exactly one defined: endpoint, backendRef",
        None,
    ),
    (
        "openTelemetry endpoint without port",
        with_default(backends=backend("OpenTelemetry", {"endpoint": "otel"})),
        "spec.default.backends[0].openTelemetry.endpoint",
        "must be in host:port format",
        None,
    ),
    (
        "openTelemetry endpoint a path",
        with_default(backends=backend("OpenTelemetry", {"endpoint": "otel:4317/v1/traces"})),
        "spec.default.backends[0].openTelemetry.endpoint",
        "must be in host:port format, not a URL",
        None,
    ),
    (
        "openTelemetry URL without port",
        with_default(backends=backend("OpenTelemetry", {"endpoint": "http://otel/v1/traces"})),
        "spec.default.backends[0].openTelemetry.endpoint",
        "port must be defined",
        None,
    ),
    (
        "backendRef kind",
        with_default(backends=backend("OpenTelemetry", {"backendRef": {**REF, "kind": "MeshTrace"}})),
        "spec.default.backends[0].openTelemetry.backendRef.kind",
        'must be one of: MeshOpenTelemetryBackend, got "MeshTrace"',
        None,
    ),
    (
        "backendRef without labels",
        with_default(backends=backend("OpenTelemetry", {"backendRef": {"kind": "MeshOpenTelemetryBackend"}})),
        "spec.default.backends[0].openTelemetry.backendRef",
        "backendRef must have exactly one defined: labels",
        None,
    ),
    (
        "backendRef selects nothing",
        with_default(backends=backend("OpenTelemetry", {"backendRef": {**REF, "labels": {"otel": "mian"}}})),
        "spec.default.backends[0].openTelemetry.backendRef.labels",
        'selects no MeshOpenTelemetryBackend in mesh "default" (collector): otel=mian',
        None,
    ),
    (
        "datadog refused",
        with_default(backends=backend("Datadog", {"url": "http://agent:8126"})),
        "spec.default.backends[0].type",
        'backend type "Datadog" is not supported by this sidecar; use Zipkin or OpenTelemetry',
        None,
    ),
    (
        "datadog settings missing",
        with_default(backends=[{"type": "Datadog"}]),
        "spec.default.backends[0].datadog",
        "must be defined",
        "type",
    ),
    (
        "datadog scheme",
        with_default(backends=backend("Datadog", {"url": "https://agent:8126"})),
        "spec.default.backends[0].datadog.url",
        "scheme must be http",
        None,
    ),
    (
        "unknown field",
        with_default(sampeling={"overall": 50}),
        "spec.default.sampeling",
        'unknown field; did you mean "sampling"?',
        None,
    ),
]


def collector(**spec: Any) -> dict[str, Any]:
    return otel_backend("collector", {"otel": "main"}, endpoint={"address": "otel", "port": 4317}, **spec)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("case", "doc", "field", "message", "line_has"), BAD, ids=[c[0] for c in BAD])
def test_each_meshtrace_problem(
    tmp_path: Path, form: str, case: str, doc: dict[str, Any], field: str, message: str, line_has: str | None
) -> None:
    result = load(tmp_path, [MESH, collector(), dataplane("web-01", WEB), doc], form)
    find_problem(result.problems, tmp_path / "res.yaml", "MeshTrace/mt", field, message, line_has)
    assert len(result.problems) == 1, result.problems


BAD_BACKENDS: list[tuple[str, dict[str, Any], str, str, str | None]] = [
    (
        "protocol",
        collector(protocol="grpcs"),
        "spec.protocol",
        'protocol must be one of: grpc, http, got "grpcs"; did you mean "grpc"?',
        None,
    ),
    (
        "path with grpc",
        otel_backend("collector", {}, endpoint={"address": "otel", "path": "/otlp"}),
        "spec.endpoint.path",
        "must not be set when protocol is grpc",
        None,
    ),
    (
        "path without slash",
        otel_backend("collector", {}, protocol="http", endpoint={"address": "otel", "path": "otlp"}),
        "spec.endpoint.path",
        "must start with /",
        None,
    ),
    (
        "path with a query",
        otel_backend("collector", {}, protocol="http", endpoint={"address": "otel", "path": "/o?x=1"}),
        "spec.endpoint.path",
        "must not contain query or fragment",
        None,
    ),
    (
        "bad address",
        otel_backend("collector", {}, endpoint={"address": "otel collector"}),
        "spec.endpoint.address",
        "address has to be a valid IP or hostname",
        None,
    ),
    (
        "no address",
        otel_backend("collector", {}, endpoint={"port": 4317}),
        "spec.endpoint.address",
        "must be defined",
        "endpoint",
    ),
    (
        "bad port",
        otel_backend("collector", {}, endpoint={"address": "otel", "port": 70000}),
        "spec.endpoint.port",
        "port must be in the range [1, 65535]",
        None,
    ),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    ("case", "doc", "field", "message", "line_has"), BAD_BACKENDS, ids=[c[0] for c in BAD_BACKENDS]
)
def test_each_otel_backend_problem(
    tmp_path: Path, form: str, case: str, doc: dict[str, Any], field: str, message: str, line_has: str | None
) -> None:
    result = load(tmp_path, [MESH, doc], form)
    find_problem(
        result.problems, tmp_path / "res.yaml", "MeshOpenTelemetryBackend/collector", field, message, line_has
    )
    assert len(result.problems) == 1, result.problems


@pytest.mark.parametrize("form", FORMS)
def test_valid_meshtraces_have_no_problem(tmp_path: Path, form: str) -> None:
    docs = [
        MESH,
        collector(),
        dataplane("web-01", WEB),
        meshtrace("a", {"kind": "Mesh"}, sampling={"overall": 80, "client": "100", "random": "0.5"}),
        meshtrace("b", {"kind": "Dataplane", "labels": {"app": "web"}}, backends=[]),
        meshtrace("c", {"kind": "Dataplane", "name": "web-01"}, backends=[OTEL]),
        meshtrace(
            "d",
            {"kind": "MeshSubset", "tags": {"version": "*"}},
            backends=backend("OpenTelemetry", {"backendRef": REF}),
        ),
        meshtrace(
            "e",
            {"kind": "MeshService", "name": "web"},
            backends=backend("OpenTelemetry", {"endpoint": "https://otel:4318/v1/traces"}),
        ),
        meshtrace(
            "f", tags=[{"name": "team", "literal": "core"}, {"name": "env", "header": {"name": "x-env"}}]
        ),
    ]
    assert load(tmp_path, docs, form).problems == []


def test_every_problem_in_one_pass(tmp_path: Path) -> None:
    docs = [MESH, dataplane("web-01", WEB)] + [
        {**case[1], "name": f"mt-{i}"} for i, case in enumerate(BAD) if "backendRef" not in case[0]
    ]
    problems = load(tmp_path, docs).problems
    assert {p.split(": ")[1] for p in problems} == {
        f"MeshTrace/mt-{i}" for i, c in enumerate(BAD) if "backendRef" not in c[0]
    }


def test_duplicate_meshtrace_name(tmp_path: Path) -> None:
    problems = load(tmp_path, [MESH, meshtrace("mt"), meshtrace("mt")]).problems
    find_problem(
        problems, tmp_path / "res.yaml", "MeshTrace/mt", "name", "is already used by another MeshTrace"
    )


_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 200),
    st.floats(allow_nan=False),
    st.text("aZ:/.*-h1", max_size=6),
    st.sampled_from(["Mesh", "Dataplane", "MeshSubset", "MeshService", "Zipkin", "OpenTelemetry", "Datadog"]),
    st.sampled_from(["http://a:1/x", "a:4317", "MeshOpenTelemetryBackend", "grpc", "http"]),
)
_KEYS = st.sampled_from(
    [
        "targetRef",
        "default",
        "kind",
        "name",
        "labels",
        "tags",
        "backends",
        "sampling",
        "overall",
        "client",
        "random",
        "type",
        "zipkin",
        "openTelemetry",
        "datadog",
        "url",
        "endpoint",
        "backendRef",
        "literal",
        "header",
        "namespace",
        "sectionName",
        "apiVersion",
        "address",
        "port",
        "path",
        "protocol",
    ]
)
_TREES = st.recursive(
    _LEAF, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(_KEYS, c, max_size=4)), max_leaves=20
)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=_TREES, otel=_TREES, labels=_TREES, form=st.sampled_from(FORMS))
def test_any_document_is_problems_never_an_exception(
    tmp_path_factory: pytest.TempPathFactory, spec: Any, otel: Any, labels: Any, form: str
) -> None:
    web = dataplane("web-01", WEB)
    web["labels"] = labels
    docs = [
        MESH,
        web,
        {**meshtrace("mt"), "spec": spec},
        {**otel_backend("o", {}), "labels": labels, "spec": otel},
    ]
    path = write(tmp_path_factory.mktemp("fuzz"), docs, form)
    result = load_config([str(path)])
    resolution = resolve_dataplane([str(path)], "web-01")
    assert all(PROBLEM.match(p) for p in result.problems if "MeshTrace/" in p or "Backend/" in p)
    assert (resolution.snapshot is None) == bool(resolution.problems)
