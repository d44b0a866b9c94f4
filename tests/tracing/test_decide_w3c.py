"""The decision with W3C Trace Context beside B3: which context wins, what is written, per mode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.tracing.decide import TRACE_HEADER_NAMES, Decision, TracerSettings, header_names_for
from tests.tracing.conftest import make_tracer
from tests.tracing.test_decide import start

T128 = "0af7651916cd43dd8448eb211c80319c"
P = "b7ad6b7169203331"
B3_TRACE = "463ac35c9f6413ad"
B3_SPAN = "a2fb4a1d1a96d312"


def sent(d: Decision) -> dict[bytes, bytes]:
    names = [name for name, _ in d.headers]
    assert len(names) == len(set(names)), f"a header written twice: {names}"
    return dict(d.headers)


def tp(trace: str = T128, parent: str = P, flags: str = "01") -> str:
    return f"00-{trace}-{parent}-{flags}"


def traceparent_of(d: Decision) -> tuple[str, str, str, str]:
    version, trace, parent, flags = sent(d)[b"traceparent"].decode().split("-")
    return version, trace, parent, flags


def test_valid_traceparent_is_continued_with_its_128bit_id_on_a_64bit_backend() -> None:
    d = start(TracerSettings(trace_id_128bit=False), traceparent=tp())
    assert d.trace_id == T128 and d.span is not None and d.span.trace_id == T128
    assert d.span.parent_id == P and d.span_id not in (P, "")


def test_w3c_server_span_is_a_child_even_with_shared_span_context() -> None:
    d = start(TracerSettings(shared_span_context=True), traceparent=tp())
    assert d.span is not None and not d.span.shared and d.span.parent_id == P
    assert traceparent_of(d) == ("00", T128, d.span_id, "01")  # never the caller's parent-id


def test_w3c_client_span_is_a_child() -> None:
    d = start(kind="CLIENT", traceparent=tp())
    assert d.span is not None and d.span.kind == "CLIENT" and d.span.parent_id == P


def test_b3_headers_name_the_same_span_as_traceparent() -> None:
    d = start(traceparent=tp())
    h = sent(d)
    assert h[b"x-b3-traceid"] == T128.encode() and h[b"x-b3-spanid"] == d.span_id.encode()
    assert h[b"x-b3-parentspanid"] == P.encode() and h[b"x-b3-sampled"] == b"1"


def test_unsampled_traceparent_is_honoured_downstream() -> None:
    d = start(TracerSettings(sampling=100.0), traceparent=tp(flags="00"))
    assert not d.sampled and d.span is None
    assert sent(d)[b"x-b3-sampled"] == b"0" and traceparent_of(d)[3] == "00"
    assert traceparent_of(d)[1] == T128  # ids still propagated


def test_sampled_traceparent_is_reported_whatever_the_percentage() -> None:
    d = start(TracerSettings(sampling=0.0), traceparent=tp(flags="01"))
    assert d.sampled and d.span is not None


def test_other_flag_bits_of_the_incoming_traceparent_are_kept() -> None:
    assert traceparent_of(start(traceparent=tp(flags="03")))[3] == "03"  # OpenTelemetry's random bit
    assert traceparent_of(start(traceparent=tp(flags="02")))[3] == "02"  # ...on an unsampled trace
    assert traceparent_of(start(TracerSettings(sampling=0.0)))[3] == "00"


def test_tracestate_forwarded_when_the_trace_is_continued() -> None:
    d = start(traceparent=tp(), tracestate="congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    assert sent(d)[b"tracestate"] == b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


@pytest.mark.parametrize(
    "headers",
    [
        {"tracestate": "foo=1"},  # no traceparent: a new trace
        {"traceparent": tp(trace="0" * 32), "tracestate": "foo=1"},  # invalid traceparent
        {"traceparent": tp(), "tracestate": "foo=1,foo=2"},  # invalid tracestate
        {"traceparent": tp(), "tracestate": "foo=1", "x_b3_traceid": B3_TRACE, "x_b3_spanid": B3_SPAN},
    ],
)
def test_tracestate_dropped_when_its_trace_is_not_continued(headers: dict[str, str]) -> None:
    d = start(**headers)
    assert b"tracestate" not in sent(d)
    assert b"tracestate" in d.remove


def test_valid_b3_wins_and_traceparent_is_rewritten_to_agree() -> None:
    d = start(traceparent=tp(flags="03"), x_b3_traceid=B3_TRACE, x_b3_spanid=B3_SPAN, x_b3_sampled="0")
    assert d.trace_id == B3_TRACE and not d.sampled
    # Shared SERVER span: the propagated id is the caller's x-b3-spanid, in both formats.
    assert traceparent_of(d) == ("00", "0" * 16 + B3_TRACE, B3_SPAN, "00")
    assert b"traceparent" in d.remove


def test_b3_single_header_wins_too() -> None:
    d = start(traceparent=tp(), b3=f"{B3_TRACE}-{B3_SPAN}-1")
    assert d.trace_id == B3_TRACE and traceparent_of(d)[1:] == ("0" * 16 + B3_TRACE, B3_SPAN, "01")


def test_b3_and_traceparent_of_the_same_trace_keep_tracestate_and_flags() -> None:
    d = start(
        traceparent=tp(trace="0" * 16 + B3_TRACE, flags="03"),
        tracestate="foo=1",
        x_b3_traceid=B3_TRACE,
        x_b3_spanid=B3_SPAN,
    )
    assert sent(d)[b"tracestate"] == b"foo=1" and traceparent_of(d)[3] == "03"


def test_b3_debug_maps_to_sampled() -> None:
    d = start(TracerSettings(sampling=0.0), b3=f"{B3_TRACE}-{B3_SPAN}-d")
    assert traceparent_of(d)[3] == "01"
    d = start(TracerSettings(sampling=0.0), x_b3_traceid=B3_TRACE, x_b3_spanid=B3_SPAN, x_b3_flags="1")
    assert traceparent_of(d)[3] == "01"


def test_b3_sampling_only_decides_for_a_continued_traceparent() -> None:
    d = start(traceparent=tp(flags="01"), x_b3_sampled="0")
    assert d.trace_id == T128 and not d.sampled and traceparent_of(d)[3] == "00"


def test_zero_high_trace_id_is_the_64bit_id_the_b3_side_carries() -> None:
    d = start(traceparent=tp(trace="0" * 16 + B3_TRACE))
    assert d.trace_id == B3_TRACE and sent(d)[b"x-b3-traceid"] == B3_TRACE.encode()
    assert traceparent_of(d)[1] == "0" * 16 + B3_TRACE


def test_new_trace_writes_a_padded_traceparent() -> None:
    d = start(TracerSettings(trace_id_128bit=False))
    assert traceparent_of(d) == ("00", "0" * 16 + d.trace_id, d.span_id, "01")
    d = start(TracerSettings(trace_id_128bit=True))
    assert traceparent_of(d) == ("00", d.trace_id, d.span_id, "01")


def test_b3_mode_is_todays_behaviour() -> None:
    settings = TracerSettings(trace_context="b3")
    d = start(settings, traceparent=tp(), tracestate="foo=1")
    assert d.trace_id != T128  # not read
    assert b"traceparent" not in sent(d) and b"tracestate" not in sent(d)  # not written
    assert d.remove == TRACE_HEADER_NAMES  # and not removed: they pass untouched
    assert make_tracer(settings)[0].header_names == TRACE_HEADER_NAMES


def test_w3c_mode_reads_and_writes_only_w3c() -> None:
    settings = TracerSettings(trace_context="w3c")
    d = start(settings, traceparent=tp(), x_b3_traceid=B3_TRACE, x_b3_spanid=B3_SPAN, b3="0")
    assert d.trace_id == T128 and d.sampled  # B3 neither read...
    assert set(sent(d)) == {b"x-request-id", b"traceparent"}  # ...nor written...
    assert not any(name.startswith((b"x-b3-", b"b3")) for name in d.remove)  # ...nor removed
    assert make_tracer(settings)[0].header_names == {b"x-request-id", b"traceparent", b"tracestate"}


def test_default_mode_reads_both() -> None:
    assert TracerSettings().trace_context == "b3+w3c"
    assert make_tracer()[0].header_names == TRACE_HEADER_NAMES | {b"traceparent", b"tracestate"}
    assert header_names_for("b3+w3c") == make_tracer()[0].header_names


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="b3\\+w3c, b3, w3c"):
        TracerSettings(trace_context="zipkin")


def test_no_backend_touches_only_the_request_id() -> None:
    d = start(None, traceparent=tp())
    assert set(sent(d)) == {b"x-request-id"} and d.remove == {b"x-request-id"}


_ids = st.sampled_from([B3_TRACE, T128, "0" * 16 + B3_TRACE, "0" * 32, "XYZ", ""])
_flags = st.sampled_from(["00", "01", "02", "03", "0x"])


@given(
    b3_trace=st.one_of(st.none(), _ids),
    b3_sampled=st.sampled_from([None, "0", "1", "true", "bad"]),
    b3_single=st.sampled_from([None, "0", "1", "d", f"{B3_TRACE}-{B3_SPAN}-0", "junk"]),
    w3c_trace=st.one_of(st.none(), _ids),
    w3c_flags=_flags,
    kind=st.sampled_from(["SERVER", "CLIENT"]),
    shared=st.booleans(),
    sampling=st.sampled_from([0.0, 50.0, 100.0]),
)
def test_the_two_formats_never_disagree(
    b3_trace: str | None,
    b3_sampled: str | None,
    b3_single: str | None,
    w3c_trace: str | None,
    w3c_flags: str,
    kind: str,
    shared: bool,
    sampling: float,
) -> None:
    headers: dict[str, str] = {}
    if b3_trace is not None:
        headers |= {"x_b3_traceid": b3_trace, "x_b3_spanid": B3_SPAN}
    if b3_sampled is not None:
        headers["x_b3_sampled"] = b3_sampled
    if b3_single is not None:
        headers["b3"] = b3_single
    if w3c_trace is not None:
        headers["traceparent"] = tp(trace=w3c_trace, flags=w3c_flags)
    d = start(TracerSettings(sampling=sampling, shared_span_context=shared), kind, **headers)
    h = sent(d)
    version, trace, parent, flags = traceparent_of(d)
    assert version == "00" and len(trace) == 32 and trace.endswith(h[b"x-b3-traceid"].decode())
    assert trace == h[b"x-b3-traceid"].decode().rjust(32, "0")
    assert parent == h[b"x-b3-spanid"].decode() == d.span_id
    assert (int(flags, 16) & 1) == (h[b"x-b3-sampled"] == b"1") == d.sampled
    assert (d.span is not None) == d.sampled
