"""The head rules for Expect, underscored names and 1xx bodies (rules 7, 8 and 10 of proxy/head.py),
as tables and properties on plain header lists."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.proxy.head import (
    H2RequestHead,
    HeadError,
    RequestHead,
    UnderscoreAction,
    UnderscoreError,
    expects_continue,
    informational_has_body,
    render_h1_request,
    render_h1_request_from_h2,
)

EXPECT_VALUES = [
    ([b"100-continue"], True),
    ([b"100-Continue"], True),
    ([b"100-CONTINUE"], True),
    ([b"y 100-continue"], True),
    ([b"foo, 100-continue"], True),
    ([b"foo", b"100-continue"], True),
    ([b"100-continue", b"100-continue"], True),
    ([b"foo"], False),
    ([b""], False),
    ([b"100"], False),
]


@pytest.mark.parametrize(("values", "expected"), EXPECT_VALUES)
def test_expects_continue(values: list[bytes], expected: bool) -> None:
    assert expects_continue(values) is expected


def render(head: RequestHead) -> bytes:
    return render_h1_request(b"POST", b"/", head, frozenset(), [], upgrade=False, default_host=b"d")


@pytest.mark.parametrize("name", [b"Expect", b"expect", b"EXPECT"])
def test_expect_is_never_forwarded(name: bytes) -> None:
    head = RequestHead([(b"Host", b"a"), (name, b"100-continue"), (b"Content-Length", b"4")], "1.1")
    assert head.expect_continue and head.has_body
    assert b"expect" not in render(head).lower()
    h2 = H2RequestHead([(b":method", b"POST"), (b":path", b"/"), (b"expect", b"100-continue")])
    assert b"expect" not in render_h1_request_from_h2(h2, frozenset(), [], chunked=True).lower()


HEADERS = [(b"Host", b"a"), (b"Content_Length", b"40"), (b"X_User", b"admin"), (b"Content-Length", b"2")]
# action, the names forwarded (lowercase), how many were dropped; None: refused with 400
UNDERSCORE_ROWS = [
    (UnderscoreAction.DROP, [b"host", b"content-length"], 2),
    (UnderscoreAction.ALLOW, [b"host", b"content_length", b"x_user", b"content-length"], 0),
    (UnderscoreAction.REJECT, None, 0),
]


@pytest.mark.parametrize(("action", "names", "dropped"), UNDERSCORE_ROWS)
def test_underscored_names_in_http1(
    action: UnderscoreAction, names: list[bytes] | None, dropped: int
) -> None:
    if names is None:
        with pytest.raises(UnderscoreError) as err:
            RequestHead(HEADERS, "1.1", underscores=action)
        assert isinstance(err.value, HeadError) and err.value.status == 400
        return
    head = RequestHead(HEADERS, "1.1", underscores=action)
    assert [lname for lname, _, _ in head.triples] == names and head.dropped_underscores == dropped
    assert head.content_length == b"2"


@pytest.mark.parametrize(("action", "names", "dropped"), UNDERSCORE_ROWS)
def test_underscored_names_in_http2(
    action: UnderscoreAction, names: list[bytes] | None, dropped: int
) -> None:
    headers = [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"a")]
    headers += [(n.lower(), v) for n, v in HEADERS[1:]]
    if names is None:
        with pytest.raises(UnderscoreError):
            H2RequestHead(headers, underscores=action)
        return
    head = H2RequestHead(headers, underscores=action)
    assert [n for n, _ in head.regular] == names[1:] and head.dropped_underscores == dropped


INFORMATIONAL = [
    ([], False),
    ([(b"Content-Length", b"0")], False),
    ([(b"content-length", b" 0 ")], False),
    ([(b"Content-Length", b"5")], True),
    ([(b"Transfer-Encoding", b"chunked")], True),
    ([(b"transfer-encoding", b"identity")], True),
    ([(b"Link", b"</a>; rel=preload")], False),
]


@pytest.mark.parametrize(("headers", "expected"), INFORMATIONAL)
def test_informational_has_body(headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert informational_has_body(headers) is expected


NAMES = st.sampled_from(
    [
        b"Host",
        b"X_A",
        b"x-a",
        b"Content_Length",
        b"Expect",
        b"eXpect",
        b"_",
        b"Transfer_Encoding",
        b"Content-Length",
    ]
)
VALUES = st.sampled_from([b"1", b"100-continue", b"y 100-Continue", b"a"])


@given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_no_underscore_nor_expect_goes_upstream(headers: list[tuple[bytes, bytes]]) -> None:
    """Property: under the default, the forwarded head holds no name with `_` and no Expect, the count
    of dropped fields is exact, and the proxy's 100 Continue follows the Expect values it read."""
    try:
        head = RequestHead([(b"Host", b"a"), *[(n, v) for n, v in headers if n != b"Host"]], "1.1")
    except HeadError:
        return
    out = render(head).lower()
    names = [line.split(b":")[0] for line in out.split(b"\r\n")[1:] if line]
    assert not any(b"_" in n for n in names) and b"expect" not in names
    assert head.dropped_underscores == sum(1 for n, _ in headers if b"_" in n)
    expected = [v for n, v in headers if n.lower() == b"expect"]
    assert head.expect_continue is (bool(expected) and head.has_body and expects_continue(expected))
