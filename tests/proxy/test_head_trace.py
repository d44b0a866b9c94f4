"""Rule 5 of the head rules: which trace header values reach the tracing decision, and what is forwarded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.proxy.head import H2RequestHead, RequestHead, render_h1_request, render_h2_request
from sidecar.tracing.decide import header_names_for

BOTH = header_names_for("b3+w3c")
B3_ONLY = header_names_for("b3")
TP1 = b"00-12345678901234567890123456789011-1234567890123456-01"
TP2 = b"00-12345678901234567890123456789012-1234567890123456-01"


def h1(fields: list[tuple[bytes, bytes]], names: frozenset[bytes] = BOTH) -> dict[bytes, bytes]:
    return RequestHead([(b"Host", b"svc"), *fields], "1.1", names).trace_in


def h2(fields: list[tuple[bytes, bytes]], names: frozenset[bytes] = BOTH) -> dict[bytes, bytes]:
    pseudo = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"svc"), (b":path", b"/")]
    return H2RequestHead(pseudo + [(n.lower(), v) for n, v in fields], names).trace_in


@pytest.mark.parametrize("collect", [h1, h2])
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([(b"traceparent", TP1)], {b"traceparent": TP1}),
        ([(b"TraceParent", TP1)], {b"traceparent": TP1}),
        ([(b"traceparent", TP1), (b"traceparent", TP2)], {b"traceparent": b""}),  # two: invalid
        ([(b"traceparent", TP1), (b"traceparent", TP1)], {b"traceparent": b""}),  # even when equal
        (
            [(b"tracestate", b"a=1"), (b"Tracestate", b"b=2"), (b"tracestate", b"")],
            {b"tracestate": b"a=1,b=2,"},
        ),
        ([(b"x-b3-traceid", b"1"), (b"x-b3-traceid", b"2")], {b"x-b3-traceid": b"1"}),  # B3: the first value
        ([(b"x-request-id", b"a"), (b"x-request-id", b"b")], {b"x-request-id": b"a"}),
        ([(b"trace-parent", TP1)], {}),
    ],
)
def test_trace_values_collected(
    collect: object, fields: list[tuple[bytes, bytes]], expected: dict[bytes, bytes]
) -> None:
    assert collect(fields) == expected  # type: ignore[operator]


def test_b3_mode_neither_reads_nor_drops_w3c_fields() -> None:
    fields = [(b"traceparent", TP1), (b"tracestate", b"a=1"), (b"baggage", b"k=v")]
    head = RequestHead([(b"Host", b"svc"), *fields], "1.1", B3_ONLY)
    assert head.trace_in == {}
    out = render_h1_request(b"GET", b"/", head, B3_ONLY, [], upgrade=False, default_host=b"svc")
    assert b"traceparent: " + TP1 in out and b"tracestate: a=1" in out and b"baggage: k=v" in out


def test_every_field_of_a_replaced_name_is_dropped() -> None:
    fields = [(b"traceparent", TP1), (b"traceparent", TP2), (b"baggage", b"k=v")]
    head = RequestHead([(b"Host", b"svc"), *fields], "1.1", BOTH)
    out = render_h1_request(
        b"GET", b"/", head, BOTH, [(b"traceparent", b"new")], upgrade=False, default_host=b"x"
    )
    assert out.count(b"traceparent") == 1 and b"traceparent: new" in out and b"baggage: k=v" in out
    pseudo = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"svc"), (b":path", b"/")]
    h2head = H2RequestHead(pseudo + fields, BOTH)
    sent = render_h2_request(h2head, BOTH, [(b"traceparent", b"new")])
    assert [v for n, v in sent if n == b"traceparent"] == [b"new"] and (b"baggage", b"k=v") in sent


_name = st.sampled_from([b"traceparent", b"tracestate", b"x-b3-traceid", b"b3", b"x-request-id", b"other"])


@given(
    st.lists(st.tuples(_name, st.binary(min_size=1, max_size=8).filter(lambda v: b"\r" not in v)), max_size=8)
)
def test_collection_rules_hold_for_any_fields(fields: list[tuple[bytes, bytes]]) -> None:
    got = h2(fields)
    for name in {n for n, _ in fields} & BOTH:
        values = [v for n, v in fields if n == name]
        if name == b"tracestate":
            assert got[name] == b",".join(values)
        elif name == b"traceparent":
            assert got[name] == (values[0] if len(values) == 1 else b"")
        else:
            assert got[name] == values[0]
    assert set(got) == {n for n, _ in fields} & BOTH
