"""The head rules of sidecar/proxy/head.py, one table row per input (rule numbers as in its docstring)."""

from __future__ import annotations

import pytest

from sidecar.proxy.head import (
    Framing,
    HeadError,
    RequestHead,
    ResponseHead,
    check_version,
    h2_response_from_h2,
    informational,
    render_h1_request,
    response_framing,
)

TRACE = [(b"x-request-id", b"rid"), (b"x-b3-traceid", b"463ac35c9f6413ad")]
REMOVE = frozenset({b"x-request-id", b"x-b3-traceid", b"b3"})


def forwarded(
    raw_headers: list[tuple[bytes, bytes]], *, version: str = "1.1", upgrade: bool = False
) -> bytes:
    head = RequestHead(raw_headers, version)
    return render_h1_request(b"GET", b"/p", head, REMOVE, TRACE, upgrade=upgrade, default_host=b"backend")


def names(head: bytes) -> list[bytes]:
    return [line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:] if line]


# Rule 1 and 2: what goes, what stays --------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "kept", "dropped"),
    [
        ([(b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=5")], [], [b"connection", b"keep-alive"]),
        (
            [(b"Proxy-Connection", b"x"), (b"TE", b"trailers"), (b"Trailer", b"X")],
            [],
            [b"proxy-connection", b"te", b"trailer"],
        ),
        (
            [(b"Connection", b"x-private"), (b"X-Private", b"1"), (b"X-Other", b"2")],
            [b"x-other"],
            [b"x-private"],
        ),
        ([(b"Connection", b"content-length"), (b"Content-Length", b"3")], [b"content-length"], []),
        ([(b"Connection", b"close, Content-Length"), (b"Content-Length", b"3")], [b"content-length"], []),
        (
            [(b"Connection", b"keep-alive"), (b"Connection", b"content-length"), (b"Content-Length", b"3")],
            [b"content-length"],
            [],
        ),
        ([(b"Connection", b"host")], [b"host"], []),
        (
            [(b"Connection", b"transfer-encoding"), (b"Transfer-Encoding", b"chunked")],
            [b"transfer-encoding"],
            [],
        ),
        ([(b"Upgrade", b"websocket")], [], [b"upgrade"]),
    ],
    ids=[
        "keep_alive_and_connection",
        "proxy_connection_te_trailer",
        "field_named_in_connection",
        "connection_content_length_ignored",
        "connection_list_content_length_ignored",
        "second_connection_field_content_length_ignored",
        "connection_host_ignored",
        "connection_transfer_encoding_ignored",
        "upgrade_without_upgrading",
    ],
)
def test_hop_by_hop(headers: list[tuple[bytes, bytes]], kept: list[bytes], dropped: list[bytes]) -> None:
    out = names(forwarded([(b"Host", b"a"), *headers]))
    assert all(k in out for k in kept), out
    assert not any(d in out for d in dropped), out


def test_upgrade_request_keeps_upgrade() -> None:
    out = forwarded([(b"Host", b"a"), (b"Connection", b"upgrade"), (b"Upgrade", b"websocket")], upgrade=True)
    assert b"Upgrade: websocket\r\n" in out and out.count(b"connection: upgrade\r\n") == 1


# Rule 3: refusals and versions --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "version", "status"),
    [
        ([], "1.1", 400),
        ([(b"Host", b"a"), (b"Host", b"b")], "1.1", 400),
        ([(b"Host", b"a"), (b"Content-Length", b"3"), (b"Content-Length", b"4")], "1.1", 400),
    ],
    ids=["missing_host_on_1_1", "two_hosts", "conflicting_content_length"],
)
def test_refused_heads(headers: list[tuple[bytes, bytes]], version: str, status: int) -> None:
    with pytest.raises(HeadError) as err:
        RequestHead(headers, version)
    assert err.value.status == status


@pytest.mark.parametrize(
    ("version", "seen_as"),
    [
        ("1.1", "1.1"),
        ("1.0", "1.0"),
        ("1.2", "1.1"),
        ("1.9", "1.1"),
        ("0.9", 400),
        ("2.0", 505),
        ("9.9", 505),
    ],
)
def test_versions(version: str, seen_as: str | int) -> None:
    if isinstance(seen_as, str):
        assert check_version(version) == seen_as
    else:
        with pytest.raises(HeadError) as err:
            check_version(version)
        assert err.value.status == seen_as


def test_identical_duplicate_host_and_length_are_one() -> None:
    head = RequestHead(
        [(b"Host", b"a"), (b"host", b"a"), (b"Content-Length", b"3"), (b"content-length", b"3")], "1.1"
    )
    assert head.authority == b"a" and head.content_length == b"3" and head.has_body


# Rule 4: transfer codings and Host ----------------------------------------------------------------
def test_chunked_keeps_other_codings() -> None:
    out = forwarded([(b"Host", b"a"), (b"Transfer-Encoding", b"gzip"), (b"Transfer-Encoding", b"chunked")])
    assert b"transfer-encoding: gzip, chunked\r\n" in out


def test_http10_without_host_gets_default_host() -> None:
    assert b"host: backend\r\n" in forwarded([], version="1.0")


# Rule 5: propagation --------------------------------------------------------------------------------
def test_trace_headers_replaced_and_xfp_added() -> None:
    head = RequestHead(
        [(b"Host", b"a"), (b"X-B3-TraceId", b"bad"), (b"b3", b"0"), (b"x-b3-traceid", b"second")], "1.1"
    )
    assert head.trace_in == {b"x-b3-traceid": b"bad", b"b3": b"0"}  # the first value of each
    out = render_h1_request(b"GET", b"/", head, REMOVE, TRACE, upgrade=False, default_host=b"x")
    assert b"bad" not in out and b"second" not in out and b"b3: 0" not in out
    assert b"x-b3-traceid: 463ac35c9f6413ad\r\n" in out and b"x-forwarded-proto: http\r\n" in out


def test_existing_xfp_kept() -> None:
    out = forwarded([(b"Host", b"a"), (b"X-Forwarded-Proto", b"https")])
    assert b"X-Forwarded-Proto: https\r\n" in out and b"x-forwarded-proto: http\r\n" not in out


# Rule 6: response framing ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "is_head", "codings", "has_length", "framing"),
    [
        (200, False, [], True, Framing.LENGTH),
        (200, False, [b"chunked"], False, Framing.CHUNKED),
        (200, False, [b"gzip", b"chunked"], False, Framing.CHUNKED),
        (200, False, [b"gzip"], False, Framing.CLOSE),
        (200, False, [], False, Framing.CLOSE),
        (200, True, [b"chunked"], True, Framing.NONE),
        (204, False, [], False, Framing.NONE),
        (304, False, [], True, Framing.NONE),
    ],
    ids=["length", "chunked", "gzip_chunked", "gzip_only_until_close", "unframed", "head", "204", "304"],
)
def test_response_framing(
    status: int, is_head: bool, codings: list[bytes], has_length: bool, framing: Framing
) -> None:
    assert response_framing(status, is_head=is_head, codings=codings, has_length=has_length) is framing


def test_response_to_11_client_rechunks_and_keeps_codings() -> None:
    head = ResponseHead(200, b"OK", [(b"Transfer-Encoding", b"gzip, chunked")], is_head=False,
                        client_version="1.1", close=False)  # fmt: skip
    assert head.framing is Framing.CHUNKED and head.down_chunked
    assert b"transfer-encoding: gzip, chunked\r\n" in head.head and not head.close


def test_unframed_response_to_10_client_closes() -> None:
    head = ResponseHead(200, b"OK", [], is_head=False, client_version="1.0", close=False)
    assert head.framing is Framing.CLOSE and head.close and b"connection: close\r\n" in head.head


def test_response_connection_cannot_strip_content_length() -> None:
    head = ResponseHead(200, b"OK", [(b"Connection", b"content-length"), (b"Content-Length", b"2")],
                        is_head=False, client_version="1.1", close=False)  # fmt: skip
    assert head.framing is Framing.LENGTH and b"Content-Length: 2\r\n" in head.head


def test_101_keeps_upgrade() -> None:
    head = ResponseHead(101, b"Switching", [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")],
                        is_head=False, client_version="1.1", close=False)  # fmt: skip
    assert b"Upgrade: websocket\r\n" in head.head and b"connection: upgrade\r\n" in head.head


def test_informational_drops_hop_by_hop() -> None:
    assert informational(103, b"Early Hints", [(b"Link", b"</a>"), (b"Connection", b"x")]) == (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    )


def test_h2_upstream_response_loses_connection_specific_fields() -> None:
    clean = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    assert h2_response_from_h2(clean) is clean  # nothing to fix: the list itself
    dirty = [
        (b":status", b"200"),
        (b"Connection", b"close"),
        (b"keep-alive", b"5"),
        (b"X-Up", b"1"),
        (b"te", b"trailers"),
    ]
    assert h2_response_from_h2(dirty) == [(b":status", b"200"), (b"x-up", b"1"), (b"te", b"trailers")]
