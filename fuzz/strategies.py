"""Hypothesis strategies for client byte streams: requests built from the parts smuggling is made of
(framing headers that disagree, Connection options, transfer codings, chunk syntax, versions, upgrades,
pipelining), then cut into arbitrary chunks and sometimes mutated by one byte."""

from __future__ import annotations

from hypothesis import strategies as st

VALID = b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nx-b3-traceid: 463ac35c9f6413ad\r\n\r\nhello"
TOKENS = [b"GET", b"POST", b" ", b"/", b"HTTP/1.1", b"HTTP/1.0", b"\r\n", b"\n", b":", b"Host", b"Content-Length",
          b"Transfer-Encoding", b"chunked", b"0", b"5", b"ff", b"x-b3-traceid", b"b3", b"\x00", b"\xff", b"Upgrade",
          b"Connection", b"Expect", b"100-continue", b"\t", b"-1", b"99999999999999999999"]  # fmt: skip

METHODS = [b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"PRI", b"G\x00T"]
TARGETS = [b"/", b"/a?b=c", b"*", b"/%2e%2e/x", b"http://a/abs", b"/x y", b"/\xff"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1 ", b"http/1.1", b""]
HEADERS = [
    b"Host: a", b"Host: b", b"Host:", b"host: a:80",
    b"Content-Length: 3", b"Content-Length: 0", b"Content-Length: +3", b"Content-Length:  3 ",
    b"Content-Length: 3, 3", b"Content-Length: 03", b"Content-Length: 99999999999999999999",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: chunked, gzip",
    b"Transfer-Encoding: identity", b"Transfer-Encoding:  chunked", b"Transfer-Encoding: chunked\t",
    b"Transfer-Encoding: xchunked", b"Transfer-Encoding: gzip", b"Transfer-encoding: chunked",
    b"Connection: close", b"Connection: keep-alive", b"Connection: content-length", b"Connection: host",
    b"Connection: transfer-encoding", b"Connection: upgrade", b"Connection: x-b3-traceid, te",
    b"Connection: close, content-length", b"Upgrade: websocket", b"Upgrade: h2c", b"Expect: 100-continue",
    b"Keep-Alive: timeout=5", b"TE: trailers", b"Trailer: X-T", b"Proxy-Connection: keep-alive",
    b"x-b3-traceid: 463ac35c9f6413ad", b"x-b3-spanid: 463ac35c9f6413ad", b"x-b3-sampled: 0",
    b"b3: 463ac35c9f6413ad-463ac35c9f6413ad-1", b"x-request-id: r1", b"X-Forwarded-Proto: https",
    b" X: leading-space", b"X : space-before-colon", b"X: a\rb", b"X: \x80obs",
]  # fmt: skip
CHUNK_LINES = [
    b"3",
    b"3;ext=1",
    b"3 ;ext",
    b"3; ext",
    b"03",
    b"+3",
    b"0x3",
    b"3\t",
    b"ffffffffffffffffff",
    b"-3",
]


def _chunked_body() -> st.SearchStrategy[bytes]:
    one = st.builds(
        lambda line, data, sep: line + b"\r\n" + data + sep,
        st.sampled_from(CHUNK_LINES),
        st.sampled_from([b"abc", b"ab", b"abcd", b""]),
        st.sampled_from([b"\r\n", b"\n", b"", b"\r\n"]),
    )
    end = st.sampled_from([b"0\r\n\r\n", b"0\r\nX-T: 1\r\n\r\n", b"0\r\n", b"", b"0;x\r\n\r\n"])
    return st.builds(lambda chunks, tail: b"".join(chunks) + tail, st.lists(one, max_size=3), end)


def _request() -> st.SearchStrategy[bytes]:
    body = st.one_of(st.just(b""), st.just(b"abc"), st.just(b"ab"), _chunked_body(), st.binary(max_size=20))
    line_end = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])
    return st.builds(
        lambda m, t, v, hs, eol, b: m + b" " + t + (b" " + v if v else b"") + eol + b"".join(h + eol for h in hs) + eol + b,
        st.sampled_from(METHODS),
        st.sampled_from(TARGETS),
        st.sampled_from(VERSIONS),
        st.lists(st.sampled_from(HEADERS), max_size=6),
        line_end,
        body,
    )  # fmt: skip


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if data[a:b]] or [data]


def _mutate(data: bytes, at: int, byte: int) -> bytes:
    if not data:
        return data
    at %= len(data)
    return data[:at] + bytes([byte]) + data[at + 1 :]


def requests_strategy() -> st.SearchStrategy[list[bytes]]:
    """A client's byte stream as the chunks it arrives in."""
    built = st.lists(_request(), min_size=1, max_size=3).map(b"".join)
    valid_prefix = st.builds(lambda rest: b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n" + rest, built)
    mutated = st.builds(
        _mutate, st.one_of(built, st.just(VALID)), st.integers(0, 10_000), st.integers(0, 255)
    )
    tokens = st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join)
    stream = st.one_of(built, valid_prefix, mutated, tokens, st.binary(max_size=300), st.just(VALID))
    return st.builds(_cut, stream, st.lists(st.integers(0, 10_000), max_size=4))
