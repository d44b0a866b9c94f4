"""Every validation rule, with the exact one-line message format, in both YAML forms."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import load_config
from tests.config.helpers import FORMS, MESH, dataplane, field_prefix, find_problem, load, trace

WEB = {"kuma.io/service": "web", "kuma.io/protocol": "http"}


def mesh_with(backend_patch: dict[str, Any] | None = None, **tracing: Any) -> dict[str, Any]:
    mesh = copy.deepcopy(MESH)
    if backend_patch is not None:
        backend = mesh["tracing"]["backends"][0]
        for key, value in backend_patch.items():
            if key == "conf":
                backend["conf"].update(value)
            else:
                backend[key] = value
    mesh["tracing"].update(tracing)
    return mesh


BAD_MESHES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "sampling over 100",
        mesh_with({"sampling": 100.5}),
        "tracing.backends[0].sampling",
        "has to be in [0.0 - 100.0] range",
    ),
    (
        "sampling negative",
        mesh_with({"sampling": -1}),
        "tracing.backends[0].sampling",
        "has to be in [0.0 - 100.0] range",
    ),
    (
        "sampling not a number",
        mesh_with({"sampling": "all"}),
        "tracing.backends[0].sampling",
        'must be a number (a percent, 0.0 to 100.0), got "all"',
    ),
    ("unknown type", mesh_with({"type": "jaeger"}), "tracing.backends[0].type", "unknown backend type"),
    ("datadog unsupported", mesh_with({"type": "datadog"}), "tracing.backends[0].type", "not supported"),
    ("url empty", mesh_with({"conf": {"url": ""}}), "tracing.backends[0].conf.url", "cannot be empty"),
    ("url invalid", mesh_with({"conf": {"url": "not a url"}}), "tracing.backends[0].conf.url", "invalid URL"),
    ("url ftp", mesh_with({"conf": {"url": "ftp://x:21/a"}}), "tracing.backends[0].conf.url", "invalid URL"),
    (
        "url without port",
        mesh_with({"conf": {"url": "http://jaeger/api/v2/spans"}}),
        "tracing.backends[0].conf.url",
        "port has to be explicitly specified",
    ),
    (
        "api version",
        mesh_with({"conf": {"apiVersion": "grpc"}}),
        "tracing.backends[0].conf.apiVersion",
        "Allowed values: httpJsonV1, httpJson, httpProto",
    ),
    (
        "128bit not bool",
        mesh_with({"conf": {"traceId128bit": "yes"}}),
        "tracing.backends[0].conf.traceId128bit",
        "must be a boolean",
    ),
    (
        "shared not bool",
        mesh_with({"conf": {"sharedSpanContext": 1}}),
        "tracing.backends[0].conf.sharedSpanContext",
        "must be a boolean",
    ),
    (
        "unknown conf field",
        mesh_with({"conf": {"samplng": 1}}),
        "tracing.backends[0].conf.samplng",
        "unknown field",
    ),
    (
        "default backend missing",
        mesh_with(defaultBackend="nope"),
        "tracing.defaultBackend",
        '"nope" has to be set to one of the tracing backends in mesh: jaeger, other',
    ),
    ("backend name empty", mesh_with({"name": ""}), "tracing.backends[0].name", "cannot be empty"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("case", "mesh", "field", "message"), BAD_MESHES, ids=[c[0] for c in BAD_MESHES])
def test_mesh_rules(
    tmp_path: Path, form: str, case: str, mesh: dict[str, Any], field: str, message: str
) -> None:
    result = load(tmp_path, [mesh], form)
    find_problem(result.problems, tmp_path / "res.yaml", "Mesh/default", field_prefix(form) + field, message)


def test_duplicate_backend_name(tmp_path: Path) -> None:
    mesh = copy.deepcopy(MESH)
    mesh["tracing"]["backends"][1]["name"] = "jaeger"
    result = load(tmp_path, [mesh])
    m = find_problem(result.problems, tmp_path / "res.yaml", "Mesh/default", "tracing.backends[1].name", "")
    assert m["message"] == 'name is already used for another backend: "jaeger" (tracing.backends[0])'


def test_api_version_alias_and_defaults(tmp_path: Path) -> None:
    result = load(tmp_path, [mesh_with({"conf": {"apiVersion": "httpJsonV1"}})])
    assert result.ok, result.problems
    backend = result.resources.meshes["default"].backends[0]
    assert backend.api_version == "httpJson" and backend.sampling == 100.0
    assert backend.trace_id_128bit is False and backend.shared_span_context is True


BAD_TRACES: list[tuple[str, dict[str, Any], str, str]] = [
    ("no selectors", trace("t"), "selectors", "must have at least one element"),
    (
        "empty match",
        {**trace("t"), "selectors": [{"match": {}}]},
        "selectors[0].match",
        "must have at least one tag",
    ),
    (
        "empty tag value",
        trace("t", {"kuma.io/service": ""}),
        'selectors[0].match["kuma.io/service"]',
        "tag value must be non-empty",
    ),
    (
        "dangling backend",
        trace("t", {"kuma.io/service": "*"}, backend="jaegr"),
        "conf.backend",
        'tracing backend "jaegr" is not defined',
    ),
    ("unknown mesh", trace("t", {"kuma.io/service": "*"}, mesh="nope"), "mesh", 'mesh "nope" does not exist'),
    ("unknown field", trace("t", {"kuma.io/service": "*"}, destinations=[]), "destinations", "unknown field"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("case", "doc", "field", "message"), BAD_TRACES, ids=[c[0] for c in BAD_TRACES])
def test_traffic_trace_rules(
    tmp_path: Path, form: str, case: str, doc: dict[str, Any], field: str, message: str
) -> None:
    result = load(tmp_path, [MESH, doc], form)
    # The mesh field is top-level in both forms.
    path = field if field == "mesh" else field_prefix(form) + field
    find_problem(result.problems, tmp_path / "res.yaml", "TrafficTrace/t", path, message)


def bad_dp(**patch: Any) -> dict[str, Any]:
    doc = dataplane("dp", WEB)
    inbound = doc["networking"]["inbound"][0]
    for key, value in patch.items():
        if key.startswith("net_"):
            doc["networking"][key[4:]] = value
        else:
            inbound[key] = value
    return doc


BAD_DATAPLANES: list[tuple[str, dict[str, Any], str, str]] = [
    ("port zero", bad_dp(port=0), "networking.inbound[0].port", "port must be in the range [1, 65535]"),
    (
        "port too big",
        bad_dp(port=70000),
        "networking.inbound[0].port",
        "port must be in the range [1, 65535]",
    ),
    (
        "service port bad",
        bad_dp(servicePort="x"),
        "networking.inbound[0].servicePort",
        "port must be in the range",
    ),
    (
        "no service tag",
        bad_dp(tags={"kuma.io/protocol": "http"}),
        "networking.inbound[0].tags",
        'tag "kuma.io/service" is required',
    ),
    (
        "bad protocol",
        bad_dp(tags={"kuma.io/service": "a", "kuma.io/protocol": "h3"}),
        'networking.inbound[0].tags["kuma.io/protocol"]',
        "invalid value",
    ),
    ("no address", bad_dp(net_address=""), "networking.address", "cannot be empty"),
    (
        "no inbound",
        bad_dp(net_inbound=[]),
        "networking",
        "has to contain at least one inbound interface or gateway",
    ),
    (
        "gateway",
        bad_dp(net_gateway={"tags": {"kuma.io/service": "gw"}}),
        "networking.gateway",
        "not supported",
    ),
    (
        "outbound without service",
        bad_dp(net_outbound=[{"port": 10002}]),
        "networking.outbound[0].tags",
        "is required",
    ),
    (
        "outbound port clash",
        bad_dp(net_outbound=[{"port": 10001, "address": "127.0.0.1", "tags": {"kuma.io/service": "b"}}]),
        "networking.outbound[0].port",
        "already used",
    ),
    ("unknown field", bad_dp(servicePortt=1), "networking.inbound[0].servicePortt", "unknown field"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    ("case", "doc", "field", "message"), BAD_DATAPLANES, ids=[c[0] for c in BAD_DATAPLANES]
)
def test_dataplane_rules(
    tmp_path: Path, form: str, case: str, doc: dict[str, Any], field: str, message: str
) -> None:
    result = load(tmp_path, [MESH, doc], form)
    line_has = "port: 10002" if case == "outbound without service" else None  # `tags` is missing
    find_problem(
        result.problems, tmp_path / "res.yaml", "Dataplane/dp", field_prefix(form) + field, message, line_has
    )


@pytest.mark.parametrize("form", FORMS)
def test_external_service_rules(tmp_path: Path, form: str) -> None:
    docs = [
        MESH,
        {
            "type": "ExternalService",
            "name": "e1",
            "mesh": "default",
            "networking": {"address": "httpbin.org"},
            "tags": {},
        },
    ]
    problems = load(tmp_path, docs, form).problems
    p, file = field_prefix(form), tmp_path / "res.yaml"
    m = find_problem(problems, file, "ExternalService/e1", f"{p}networking.address", "")
    assert m["message"] == 'must be host:port with an explicit port, got "httpbin.org"'
    find_problem(problems, file, "ExternalService/e1", f"{p}tags", 'tag "kuma.io/service" is required')


@pytest.mark.parametrize("form", FORMS)
def test_names_unique_per_kind_and_mesh(tmp_path: Path, form: str) -> None:
    other_mesh = dict(MESH, name="other")
    docs = [
        MESH,
        other_mesh,
        dataplane("dp", WEB),
        dataplane("dp", WEB, port=20001),
        dataplane("dp", WEB, mesh="other"),
    ]
    problems = load(tmp_path, docs, form).problems
    assert len([p for p in problems if "is already used by another Dataplane" in p]) == 1
    find_problem(
        problems, tmp_path / "res.yaml", "Dataplane/dp", "name", "is already used by another Dataplane"
    )


def test_unknown_kind_and_wrong_api_version(tmp_path: Path) -> None:
    docs = [
        {"type": "TrafficRoute", "name": "r"},
        {"apiVersion": "kuma.io/v1alpha1", "kind": "MeshTrac", "metadata": {"name": "m"}, "spec": {}},
        {"apiVersion": "v1", "kind": "Mesh", "metadata": {"name": "x"}},
    ]
    problems = load(tmp_path, docs).problems
    assert any("TrafficRoute/r: type: unknown kind 'TrafficRoute'" in p for p in problems)
    assert any(
        p.endswith(
            "MeshTrac/m: kind: unknown kind 'MeshTrac'; supported: Mesh, TrafficTrace, MeshTrace, "
            'MeshOpenTelemetryBackend, Dataplane, ExternalService; did you mean "MeshTrace"?'
        )
        for p in problems
    )
    assert any('Mesh/x: apiVersion: must be kuma.io/v1alpha1, got "v1"' in p for p in problems)


def test_a_yaml_syntax_error_is_one_line_not_a_cascade(tmp_path: Path) -> None:
    """The Mesh's file does not parse: the others' "mesh does not exist" follow from it and are not said."""
    (tmp_path / "mesh.yaml").write_text("type: Mesh\nname: default\ntracing: [\n")
    (tmp_path / "dp.yaml").write_text(yaml.safe_dump_all([dataplane(f"web-0{i}", WEB) for i in range(5)]))
    problems = load_config([str(tmp_path)]).problems
    assert len(problems) == 1 and ": yaml: " in problems[0], problems
    # Without a broken file, the missing mesh is a problem of each resource, as before.
    (tmp_path / "mesh.yaml").unlink()
    problems = load_config([str(tmp_path)]).problems
    assert len(problems) == 5 and all('mesh "default" does not exist' in p for p in problems)


@pytest.mark.parametrize(
    ("sampling", "warned"), [(0.5, True), (0.01, True), (0, False), (1, False), (50, False)]
)
def test_a_sampling_below_one_is_warned_to_be_a_percent(
    tmp_path: Path, sampling: float, warned: bool
) -> None:
    result = load(tmp_path, [mesh_with({"sampling": sampling})])
    assert result.ok
    notices = [n.text for n in result.notices]
    if warned:
        (notice,) = notices
        assert notice.endswith(
            f"Mesh/default: tracing.backends[0].sampling: is a percent, not a ratio: {sampling:g} samples "
            f"{sampling:g} % of requests (for {sampling * 100:g} %, write {sampling * 100:g})"
        )
    else:
        assert notices == []


def test_an_outbound_nobody_provides_is_warned_with_did_you_mean(tmp_path: Path) -> None:
    web = dataplane("web-01", WEB)
    web["networking"]["outbound"] = [
        {"port": 20001, "tags": {"kuma.io/service": "backnd"}},  # a typo
        {"port": 20002, "tags": {"kuma.io/service": "backend"}},
        {"port": 20003, "tags": {"kuma.io/service": "httpbin"}},  # an ExternalService
        {"port": 20004, "tags": {"kuma.io/service": "db_shop_svc_5432"}},  # a Kubernetes Service by name
    ]
    backend = dataplane("backend-01", {"kuma.io/service": "backend"}, port=10010)
    external = {
        "type": "ExternalService",
        "name": "httpbin",
        "mesh": "default",
        "networking": {"address": "httpbin.org:80"},
        "tags": {"kuma.io/service": "httpbin"},
    }
    result = load(tmp_path, [MESH, web, backend, external])
    assert result.ok, result.problems
    (notice,) = [n.text for n in result.notices]
    assert notice.endswith(
        "Dataplane/web-01: networking.outbound[0].tags: no Dataplane inbound or ExternalService of mesh "
        '"default" provides service "backnd": calls to it will get 503 UH; did you mean "backend"?'
    )
    assert notice.startswith(f"{tmp_path / 'res.yaml'}:")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("type: Mesh\nname: default\ntracing:\n  backends: [\n  - x: : y\n")
    problems = load_config([str(path)]).problems
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:") and ": yaml: " in problems[0]
    line = int(problems[0].split(":")[1])
    assert 4 <= line <= 6


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x00\xff\xfe binary", "cannot read"),
        (b"- a\n- b\n", "a resource must be a mapping, got list"),
        (b"just a string\n", "a resource must be a mapping, got str"),
        (b"type: Mesh\n", "name: cannot be empty"),
    ],
)
def test_garbage_input_is_a_problem_not_a_crash(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    problems = load_config([str(path)]).problems
    assert any(expected in p for p in problems), problems


def test_empty_file_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    assert load_config([str(tmp_path / "empty.yaml")]).ok
    assert load_config([str(tmp_path / "nope")]).problems == [
        f"{tmp_path / 'nope'}: no such file or directory"
    ]
    empty_dir = tmp_path / "d"
    empty_dir.mkdir()
    assert "no *.yaml" in load_config([str(empty_dir)]).problems[0]


def test_wrong_types_everywhere_do_not_crash(tmp_path: Path) -> None:
    docs: list[dict[str, Any]] = [
        {"type": "Mesh", "name": "default", "tracing": {"backends": "x"}},
        {"type": "Mesh", "name": "m2", "tracing": {"backends": [None, 3, {"conf": []}]}},
        {"type": "TrafficTrace", "name": "t", "selectors": {"match": 1}, "conf": "x"},
        {
            "type": "Dataplane",
            "name": "d",
            "networking": {"address": 5, "inbound": [{"tags": "x"}], "outbound": "y"},
        },
        {"type": "ExternalService", "name": "e", "networking": [], "tags": [1]},
    ]
    problems = load(tmp_path, docs).problems
    assert problems and all(p.startswith(str(tmp_path)) for p in problems)


# Messages that name the fix: the value, the valid choices, "did you mean" within two edits --------------
FIX_MESSAGES: list[tuple[str, list[dict[str, Any]], str, str, str]] = [
    (
        "misspelled field",
        [mesh_with({"samplng": 5})],
        "Mesh/default",
        "tracing.backends[0].samplng",
        'unknown field; did you mean "sampling"?',
    ),
    (
        "unknown field far from any",
        [mesh_with({"colour": "red"})],
        "Mesh/default",
        "tracing.backends[0].colour",
        "unknown field; valid fields: conf, name, sampling, type",
    ),
    (
        "backend type",
        [mesh_with({"type": "carrier-pigeon"})],
        "Mesh/default",
        "tracing.backends[0].type",
        'unknown backend type "carrier-pigeon". Available backends: "zipkin", "datadog"',
    ),
    (
        "backend type typo",
        [mesh_with({"type": "zipkn"})],
        "Mesh/default",
        "tracing.backends[0].type",
        'unknown backend type "zipkn". Available backends: "zipkin", "datadog"; did you mean "zipkin"?',
    ),
    (
        "sampling value",
        [mesh_with({"sampling": 101})],
        "Mesh/default",
        "tracing.backends[0].sampling",
        "has to be in [0.0 - 100.0] range, got 101",
    ),
    (
        "api version typo",
        [mesh_with({"conf": {"apiVersion": "httpjson"}})],
        "Mesh/default",
        "tracing.backends[0].conf.apiVersion",
        'has invalid value "httpjson". Allowed values: httpJsonV1, httpJson, httpProto; did you mean "httpJson"?',
    ),
    (
        "url without port",
        [mesh_with({"conf": {"url": "http://jaeger/api/v2/spans"}})],
        "Mesh/default",
        "tracing.backends[0].conf.url",
        'port has to be explicitly specified: "http://jaeger/api/v2/spans"',
    ),
    (
        "default backend typo",
        [mesh_with(defaultBackend="jeager")],
        "Mesh/default",
        "tracing.defaultBackend",
        '"jeager" has to be set to one of the tracing backends in mesh: jaeger, other; did you mean "jaeger"?',
    ),
    (
        "traffic trace backend typo",
        [MESH, trace("t", {"kuma.io/service": "*"}, backend="jaegr")],
        "TrafficTrace/t",
        "conf.backend",
        'tracing backend "jaegr" is not defined in mesh "default" (backends: jaeger, other); did you mean "jaeger"?',
    ),
    (
        "mesh typo",
        [MESH, dataplane("dp", WEB, mesh="defualt")],
        "Dataplane/dp",
        "mesh",
        'mesh "defualt" does not exist (meshes: default); did you mean "default"?',
    ),
    (
        "protocol typo",
        [MESH, dataplane("dp", {"kuma.io/service": "web", "kuma.io/protocol": "htp"})],
        "Dataplane/dp",
        'networking.inbound[0].tags["kuma.io/protocol"]',
        'tag has an invalid value "htp". Allowed values: grpc, http, http2, kafka, tcp; did you mean "http"?',
    ),
    (
        "port value",
        [MESH, bad_dp(port=70000)],
        "Dataplane/dp",
        "networking.inbound[0].port",
        "port must be in the range [1, 65535], got 70000",
    ),
    (
        "boolean value",
        [mesh_with({"conf": {"traceId128bit": "yes"}})],
        "Mesh/default",
        "tracing.backends[0].conf.traceId128bit",
        'must be a boolean (true or false), got "yes"',
    ),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    ("case", "docs", "resource", "field", "message"), FIX_MESSAGES, ids=[c[0] for c in FIX_MESSAGES]
)
def test_messages_name_the_fix(
    tmp_path: Path, form: str, case: str, docs: list[dict[str, Any]], resource: str, field: str, message: str
) -> None:
    result = load(tmp_path, docs, form)
    path = field if field == "mesh" else field_prefix(form) + field
    m = find_problem(result.problems, tmp_path / "res.yaml", resource, path, message)
    assert m["message"] == message


def test_a_defined_but_invalid_backend_is_reported_once(tmp_path: Path) -> None:
    mesh = mesh_with({"sampling": 500})  # backend "jaeger" is invalid, and the mesh's default
    docs = [mesh, trace("t", {"kuma.io/service": "*"}, backend="jaeger")]
    result = load(tmp_path, docs)
    assert [p.split(": ", 1)[1] for p in result.problems] == [
        "Mesh/default: tracing.backends[0].sampling: has to be in [0.0 - 100.0] range, got 500"
    ]


def test_every_field_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "lines.yaml"
    path.write_text(
        "type: Mesh\n"  # 1
        "name: default\n"  # 2
        "---\n"  # 3
        "type: Dataplane\n"  # 4
        "name: dp\n"  # 5
        "networking:\n"  # 6
        "  address: 127.0.0.1\n"  # 7
        "  inbound:\n"  # 8
        "  - port: 10001\n"  # 9
        "    servicePort: 99999\n"  # 10
        "    tags:\n"  # 11
        "      kuma.io/service: web\n"  # 12
        "      kuma.io/protocol: htp\n"  # 13
        "  outbond: []\n"  # 14
    )
    problems = load_config([str(path)]).problems
    assert sorted(problems) == sorted(
        [
            f"{path}:10: Dataplane/dp: networking.inbound[0].servicePort: port must be in the range [1, 65535], got 99999",
            f'{path}:13: Dataplane/dp: networking.inbound[0].tags["kuma.io/protocol"]: tag has an invalid value "htp". '
            'Allowed values: grpc, http, http2, kafka, tcp; did you mean "http"?',
            f'{path}:14: Dataplane/dp: networking.outbond: unknown field; did you mean "outbound"?',
        ]
    )
