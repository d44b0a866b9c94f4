"""The h2 codec as the proxy drives it: which response heads are malformed (a table and a property),
the resets h2 sends on its own reported like nghttp2's, and a malformed response failing its stream
only."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import hpack
import pytest
from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame
from hypothesis import given
from hypothesis import strategies as st

from sidecar.proxy.h2_hyper import H2Connection, h2_config, malformed_response
from tests.proxy.h2_peers import GET, PREFACE

HEADS = [
    ("a status", [(b":status", b"200")], False),
    ("a status and fields", [(b":status", b"204"), (b"grpc-status", b"0"), (b"te", b"trailers")], False),
    ("nothing", [], True),
    ("no status", [(b"content-length", b"0")], True),
    ("status not first", [(b"x", b"1"), (b":status", b"200")], True),
    ("status not three digits", [(b":status", b"20")], True),
    ("status not digits", [(b":status", b"2x0")], True),
    ("a request pseudo-header", [(b":status", b"200"), (b":path", b"/")], True),
    ("connection", [(b":status", b"200"), (b"connection", b"close")], True),
    ("transfer-encoding", [(b":status", b"200"), (b"transfer-encoding", b"chunked")], True),
    ("keep-alive", [(b":status", b"200"), (b"keep-alive", b"5")], True),
    ("upgrade", [(b":status", b"200"), (b"upgrade", b"h2c")], True),
    ("te other than trailers", [(b":status", b"200"), (b"te", b"gzip")], True),
]


@pytest.mark.parametrize(("case", "head", "bad"), HEADS, ids=[c[0] for c in HEADS])
def test_malformed_response_heads(case: str, head: list[tuple[bytes, bytes]], bad: bool) -> None:
    assert malformed_response(head) is bad


NAMES = st.sampled_from([b"content-type", b"grpc-status", b"x-a", b"server", b"content-length"])
FIELDS = st.lists(st.tuples(NAMES, st.binary(max_size=8)), max_size=5)
STATUS = st.integers(100, 999).map(lambda n: b"%d" % n)
CONNECTION = st.sampled_from(
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"]
)


@given(STATUS, FIELDS, FIELDS, CONNECTION)
def test_a_connection_specific_field_anywhere_makes_it_malformed(
    status: bytes, before: list[tuple[bytes, bytes]], after: list[tuple[bytes, bytes]], name: bytes
) -> None:
    head = [(b":status", status), *before]
    assert not malformed_response(head + after)
    assert malformed_response([*head, (name, b"v"), *after])


def server() -> H2Connection:
    conn = H2Connection(h2_config(client_side=False))
    conn.initiate_connection()
    conn.data_to_send()
    return conn


def headers(sid: int, fields: list[tuple[bytes, bytes]], *flags: str) -> bytes:
    frame = HeadersFrame(sid)
    frame.data = hpack.Encoder().encode(fields)
    for flag in ("END_HEADERS", *flags):
        frame.flags.add(flag)
    return bytes(frame.serialize())


def test_a_reset_h2_sends_on_its_own_is_reported() -> None:
    """DATA on a stream the client half-closed: h2 answers RST_STREAM itself; the proxy hears of it."""
    conn = server()
    data = DataFrame(1)
    data.data = b"x"
    events = conn.receive_data(
        PREFACE + SettingsFrame(0).serialize() + headers(1, GET, "END_STREAM") + data.serialize()
    )
    resets = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.remote_reset) for e in resets] == [(1, False)]


def test_a_body_over_its_content_length_fails_that_stream_only() -> None:
    client = H2Connection(h2_config(client_side=True))
    client.initiate_connection()
    origin = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None, validate_outbound_headers=False)
    )
    origin.initiate_connection()
    origin.receive_data(client.data_to_send())
    for sid in (1, 3):
        client.send_headers(sid, GET, end_stream=True)
    origin.receive_data(client.data_to_send())
    client.receive_data(origin.data_to_send())
    origin.send_headers(1, [(b":status", b"200"), (b"content-length", b"1")])
    origin.send_data(1, b"xx", end_stream=True)
    origin.send_headers(3, [(b":status", b"200")], end_stream=True)
    events = client.receive_data(origin.data_to_send())
    resets = [
        (e.stream_id, e.error_code, e.remote_reset) for e in events if isinstance(e, h2.events.StreamReset)
    ]
    assert resets == [(1, h2.errors.ErrorCodes.PROTOCOL_ERROR, False)]
    assert [e.stream_id for e in events if isinstance(e, h2.events.ResponseReceived)] == [1, 3]
    client.send_headers(5, GET, end_stream=True)  # the connection carries on
    assert origin.receive_data(client.data_to_send())
