"""The W3C Trace Context conformance cases (w3c/trace-context, test/test.py, strict level 2), ported.

The suite sends a request to "the tracer under test" and looks at the `traceparent`/`tracestate` of the
request that tracer makes next. Here the tracer under test is the sidecar's request-head path: the
request fields go through the head parser, the tracing decision and the head renderer, and the cases
look at what the app (inbound, SERVER) or the next hop (outbound, CLIENT) receives, on each rendering:
HTTP/1.1 to HTTP/1.1, HTTP/2 to HTTP/2 (gRPC's path) and HTTP/2 to HTTP/1.1.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from sidecar.proxy.head import (
    H2RequestHead,
    RequestHead,
    render_h1_request,
    render_h1_request_from_h2,
    render_h2_request,
)
from sidecar.tracing.decide import Tracer, TracerSettings
from tests.tracing.conftest import make_tracer

Fields = list[tuple[str, str]]
TRACE = "12345678901234567890123456789012"
PARENT = "1234567890123456"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _via_h1(tracer: Tracer, kind: str, fields: Fields) -> Fields:
    head = RequestHead(
        [(n.encode(), v.encode()) for n, v in [("Host", "svc"), *fields]], "1.1", tracer.header_names
    )
    d = tracer.start(kind, head.trace_in, **_REQUEST)  # type: ignore[arg-type]
    out = render_h1_request(b"POST", b"/test", head, d.remove, d.headers, upgrade=False, default_host=b"svc")
    lines = out.decode("latin-1").split("\r\n")[1:-2]
    return [(name, value) for name, _, value in (line.partition(": ") for line in lines)]


def _h2_head(tracer: Tracer, fields: Fields) -> H2RequestHead:
    pseudo = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"svc"), (b":path", b"/test")]
    # HTTP/2 field names are lower case on the wire (RFC 9113 8.2.1).
    return H2RequestHead(pseudo + [(n.lower().encode(), v.encode()) for n, v in fields], tracer.header_names)


def _via_h2(tracer: Tracer, kind: str, fields: Fields) -> Fields:
    head = _h2_head(tracer, fields)
    d = tracer.start(kind, head.trace_in, **_REQUEST)  # type: ignore[arg-type]
    return [
        (n.decode(), v.decode()) for n, v in render_h2_request(head, d.remove, d.headers) if n[:1] != b":"
    ]


def _via_h2_to_h1(tracer: Tracer, kind: str, fields: Fields) -> Fields:
    head = _h2_head(tracer, fields)
    d = tracer.start(kind, head.trace_in, **_REQUEST)  # type: ignore[arg-type]
    out = render_h1_request_from_h2(head, d.remove, d.headers, chunked=False)
    lines = out.decode("latin-1").split("\r\n")[1:-2]
    return [(name, value) for name, _, value in (line.partition(": ") for line in lines)]


_REQUEST = {
    "method": "POST",
    "authority": "svc",
    "path": "/test",
    "scheme": "http",
    "protocol": "HTTP/1.1",
    "user_agent": None,
    "peer_address": "127.0.0.1:5000",
    "upstream_cluster": "svc",
}
_PATHS = {"h1": _via_h1, "h2": _via_h2, "h2-to-h1": _via_h2_to_h1}


class Hop:
    """One sidecar hop: send a request's fields, read what the app or the next hop receives."""

    def __init__(self, path: str, kind: str) -> None:
        self.via: Callable[[Tracer, str, Fields], Fields] = _PATHS[path]
        self.kind = kind
        self.tracer, _ = make_tracer(TracerSettings(sampling=100.0))

    def _traceparent(self, fields: Fields) -> tuple[re.Match[str], Fields]:
        received = self.via(self.tracer, self.kind, fields)
        parents = [v for n, v in received if n.lower() == "traceparent"]
        assert len(parents) == 1, f"expected one traceparent, got {parents}"
        match = _TRACEPARENT.match(parents[0])
        assert match is not None and match[1] == "00", parents[0]
        assert match[2] != "0" * 32 and match[3] != "0" * 16
        return match, received

    def __call__(self, fields: Fields) -> tuple[str, dict[str, str]]:
        """The trace-id of the one traceparent received, and the tracestate members received."""
        match, received = self._traceparent(fields)
        state: dict[str, str] = {}
        for value in (v for n, v in received if n.lower() == "tracestate"):
            for member in filter(None, (m.strip(" \t") for m in value.split(","))):
                key, _, val = member.partition("=")
                assert key not in state, f"tracestate repeats {key}"
                state[key] = val
        return match[2], state

    def parent_id(self, fields: Fields) -> str:
        return self._traceparent(fields)[0][3]


Send = Hop


@pytest.fixture(
    params=[(p, k) for p in _PATHS for k in ("SERVER", "CLIENT")], ids=lambda pk: f"{pk[0]}-{pk[1]}"
)
def send(request: pytest.FixtureRequest) -> Hop:
    return Hop(*request.param)


def tp(
    version: str = "00", trace: str = TRACE, parent: str = PARENT, flags: str = "01", tail: str = ""
) -> Fields:
    return [("traceparent", f"{version}-{trace}-{parent}-{flags}{tail}")]


def test_both_traceparent_and_tracestate_missing(send: Send) -> None:
    send([])


def test_traceparent_included_tracestate_missing(send: Send) -> None:
    trace, _ = send(tp())
    assert trace == TRACE
    assert send.parent_id(tp()) != PARENT


def test_traceparent_duplicated(send: Send) -> None:
    trace, _ = send(tp(trace=TRACE[:-1] + "1") + tp())
    assert trace not in (TRACE[:-1] + "1", TRACE)


@pytest.mark.parametrize("name", ["trace-parent", "trace.parent"])
def test_traceparent_header_name(send: Send, name: str) -> None:
    assert send([(name, tp()[0][1])])[0] != TRACE


@pytest.mark.parametrize("name", ["TraceParent", "TrAcEpArEnT", "TRACEPARENT"])
def test_traceparent_header_name_valid_casing(send: Send, name: str) -> None:
    assert send([(name, tp()[0][1])])[0] == TRACE


@pytest.mark.parametrize("tail", [".", "-what-the-future-will-be-like"])
def test_traceparent_version_0x00(send: Send, tail: str) -> None:
    assert send(tp(tail=tail))[0] != TRACE


@pytest.mark.parametrize(
    ("tail", "continued"),
    [("", True), ("-what-the-future-will-be-like", True), (".what-the-future-will-be-like", False)],
)
def test_traceparent_version_0xcc(send: Send, tail: str, continued: bool) -> None:
    assert (send(tp(version="cc", tail=tail))[0] == TRACE) is continued


@pytest.mark.parametrize(
    "fields",
    [
        tp(version="ff"),  # version 0xff
        tp(version=".0"),  # illegal characters in version
        tp(version="0."),
        tp(version="000"),  # version too long
        tp(version="0000"),
        tp(version="0"),  # version too short
        tp(trace="0" * 32),  # trace_id all zero
        tp(trace="." + TRACE[1:]),  # illegal characters in trace_id
        tp(trace=TRACE[:-1] + "."),
        tp(trace=TRACE + "3"),  # trace_id too long
        tp(trace=TRACE[:-1]),  # trace_id too short
        tp(parent="0" * 16),  # parent_id all zero
        tp(parent="." + PARENT[1:]),  # illegal characters in parent_id
        tp(parent=PARENT[:-1] + "."),
        tp(parent=PARENT + "7"),  # parent_id too long
        tp(parent=PARENT[:-1]),  # parent_id too short
        tp(flags=".0"),  # illegal characters in trace_flags
        tp(flags="0."),
        tp(flags="001"),  # trace_flags too long
        tp(flags="1"),  # trace_flags too short
    ],
)
def test_invalid_traceparent_restarts_the_trace(send: Send, fields: Fields) -> None:
    trace, _ = send(fields)
    assert trace != TRACE and trace not in fields[0][1][3:40]


@pytest.mark.parametrize("value", [" {}", "\t{}", "{} ", "{}\t", "\t {} \t"])
def test_traceparent_ows_handling(send: Send, value: str) -> None:
    assert send([("traceparent", value.format(tp()[0][1]))])[0] == TRACE


def test_tracestate_included_traceparent_missing(send: Send) -> None:
    _, state1 = send([("tracestate", "foo=1")])
    _, state2 = send([("tracestate", "foo=1,bar=2")])
    assert len(state1) == len(state2) == 0  # discarded: a new trace


def test_tracestate_included_traceparent_included(send: Send) -> None:
    trace, state = send([*tp(flags="00"), ("tracestate", "foo=1,bar=2")])
    assert trace == TRACE and state == {"foo": "1", "bar": "2"}


@pytest.mark.parametrize("name", ["trace-state", "trace.state"])
def test_tracestate_header_name(send: Send, name: str) -> None:
    assert "foo" not in send([*tp(flags="00"), (name, "foo=1")])[1]


@pytest.mark.parametrize("name", ["TraceState", "TrAcEsTaTe", "TRACESTATE"])
def test_tracestate_header_name_valid_casing(send: Send, name: str) -> None:
    assert send([*tp(flags="00"), (name, "foo=1")])[1] == {"foo": "1"}


def test_tracestate_empty_header(send: Send) -> None:
    trace, state = send([*tp(flags="00"), ("tracestate", "")])
    assert trace == TRACE and state == {}
    for fields in (
        [("tracestate", "foo=1"), ("tracestate", "")],
        [("tracestate", ""), ("tracestate", "foo=1")],
    ):
        trace, state = send(tp(flags="00") + fields)
        assert trace == TRACE and state == {"foo": "1"}


def test_tracestate_multiple_headers_different_keys(send: Send) -> None:
    fields = [("tracestate", "foo=1,bar=2"), ("tracestate", "rojo=1,congo=2"), ("tracestate", "baz=3")]
    trace, state = send(tp(flags="00") + fields)
    assert trace == TRACE
    assert list(state.items()) == [("foo", "1"), ("bar", "2"), ("rojo", "1"), ("congo", "2"), ("baz", "3")]


@pytest.mark.parametrize(
    "fields",
    [
        [("tracestate", "foo=1,foo=1")],
        [("tracestate", "foo=1,foo=2")],
        [("tracestate", "foo=1"), ("tracestate", "foo=1")],
        [("tracestate", "foo=1"), ("tracestate", "foo=2")],
    ],
)
def test_tracestate_duplicated_keys(send: Send, fields: Fields) -> None:
    trace, state = send(tp(flags="00") + fields)
    assert trace == TRACE and "foo" not in state


def test_tracestate_all_allowed_characters(send: Send) -> None:
    key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
    value = "".join(chr(c) for c in [*range(0x20, 0x2C), *range(0x2D, 0x3D), *range(0x3E, 0x7F)])
    for k in (key, key + "@a-z0-9_-*/"):
        assert send([*tp(flags="00"), ("tracestate", f"{k}={value}")])[1] == {k: value}


@pytest.mark.parametrize(
    "value",
    [
        "foo=1 \t , \t bar=2, \t baz=3",
        "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
        " foo=1",
        "\tfoo=1",
        "foo=1 ",
        "foo=1\t",
    ],
)
def test_tracestate_ows_handling(send: Send, value: str) -> None:
    trace, state = send([*tp(flags="00"), ("tracestate", value)])
    assert trace == TRACE and state["foo"] == "1" and set(state) <= {"foo", "bar", "baz"}


@pytest.mark.parametrize(("value", "key"), [("foo =1", "foo "), ("FOO=1", "FOO"), ("foo.bar=1", "foo.bar")])
def test_tracestate_key_illegal_characters(send: Send, value: str, key: str) -> None:
    assert key not in send([*tp(flags="00"), ("tracestate", value)])[1]


@pytest.mark.parametrize("value", ["foo@=1,bar=2", "@foo=1,bar=2", "foo@@bar=1,bar=2", "foo@bar@baz=1,bar=2"])
def test_tracestate_key_illegal_vendor_format(send: Send, value: str) -> None:
    assert "bar" not in send([*tp(flags="00"), ("tracestate", value)])[1]


def _members(first: int, last: int) -> str:
    return ",".join(f"bar{i:02d}={i:02d}" for i in range(first, last + 1))


def test_tracestate_member_count_limit(send: Send) -> None:
    fields = [
        ("tracestate", _members(1, 10)),
        ("tracestate", _members(11, 20)),
        ("tracestate", _members(21, 30)),
    ]
    _, state = send(tp(flags="00") + fields + [("tracestate", _members(31, 32))])
    assert state["bar01"] == "01" and len(state) == 32
    _, state = send(tp(flags="00") + fields + [("tracestate", _members(31, 33))])
    assert "bar01" not in state


@pytest.mark.parametrize(
    ("long_member", "kept"),
    [
        ("z" * 256 + "=1", True),
        ("z" * 257 + "=1", False),
        ("t" * 241 + "@" + "v" * 14 + "=1", True),
        ("t" * 242 + "@v=1", False),
        ("t@" + "v" * 15 + "=1", False),
    ],
)
def test_tracestate_key_length_limit(send: Send, long_member: str, kept: bool) -> None:
    _, state = send([*tp(flags="00"), ("tracestate", "foo=1"), ("tracestate", long_member)])
    assert ("foo" in state) is kept


@pytest.mark.parametrize(("value", "gone"), [("foo=bar=baz", ["foo"]), ("foo=,bar=3", ["foo", "bar"])])
def test_tracestate_value_illegal_characters(send: Send, value: str, gone: list[str]) -> None:
    _, state = send([*tp(flags="00"), ("tracestate", value)])
    assert not set(gone) & set(state)


# AdvancedTest: the service makes three calls for one request; here, three requests with the same fields.
def test_multiple_requests_with_valid_traceparent(send: Send) -> None:
    assert {send(tp())[0] for _ in range(3)} == {TRACE}
    assert len({send.parent_id(tp()) for _ in range(3)}) == 3


def test_multiple_requests_without_traceparent(send: Send) -> None:
    assert len({send.parent_id([]) for _ in range(3)}) == 3


def test_multiple_requests_with_illegal_traceparent(send: Send) -> None:
    fields = tp(trace="0" * 32)
    assert "0" * 32 not in {send(fields)[0] for _ in range(3)}
    assert len({send.parent_id(fields) for _ in range(3)}) == 3
