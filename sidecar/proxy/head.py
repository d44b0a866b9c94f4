"""HTTP head rules shared by HTTP/1.1 and HTTP/2: what is refused, dropped, added, and how bodies are framed.

Pure: bytes in, bytes or lists out; no sockets. The rules, each with table tests in tests/proxy/test_head.py:

1. Hop-by-hop fields are never forwarded: Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, TE,
   Trailer, Upgrade (kept on an upgrade request and a 101), and every field a Connection header names.
2. Framing and routing fields are never connection options: Content-Length, Transfer-Encoding and Host
   named in Connection are ignored there, so the forwarded head always carries the framing the proxy
   parsed (a `Connection: content-length` that stripped the length would let a body pass for a request).
3. A request head is refused (HeadError carries the status) for: a version other than HTTP/1.x
   (HTTP/0.9 lines, HTTP/2.0 in a request line), more than one differing Host or Content-Length, no
   Host on HTTP/1.1, CONNECT. HTTP/1.2 and later minors are HTTP/1.1 (RFC 9112, section 2.3).
4. A chunked request keeps its other transfer codings (`gzip, chunked` stays `gzip, chunked`): the proxy
   re-frames the chunks, never the coded bytes. A request without Host (HTTP/1.0) gets one, since the
   upstream speaks HTTP/1.1.
5. Trace headers: the first value of each name the route's tracer reads (`Tracer.header_names`) is
   read, but for W3C's two: several `tracestate` fields are one list (joined by commas), and a second
   `traceparent` makes the context invalid (read as an empty value). Names in `Decision.remove` are
   dropped, every field of each, and `Decision.headers` appended. `x-forwarded-proto` is set when missing.
6. Response framing is one `Framing` value: NONE (HEAD, 1xx, 204, 304), LENGTH, CHUNKED, or CLOSE (the
   upstream's close ends the body); a CHUNKED or CLOSE body goes to an HTTP/1.1 client chunked, with the
   upstream's other transfer codings kept, and to an HTTP/1.0 client delimited by the close.
7. Expect is answered by the proxy, never forwarded: a request whose Expect values name `100-continue`
   in any case or list position (`Expect: y 100-continue` included) gets `100 Continue` from the proxy
   when the client waits for it; every Expect field is dropped upstream, so a back-end cannot answer
   before the body and then read that body as the next request. The body goes up framed by the request's
   own Content-Length or chunks, like any other.
8. Header names holding `_` (`Content_Length`), which some back-ends read as `-`, follow
   `UnderscoreAction`: DROP (the default: the field is not forwarded, and counted), REJECT (400), ALLOW.
9. HTTP/1.0 with Transfer-Encoding is faulty framing (RFC 9112 6.1): the message is processed and the
   connection closed after the response, whichever side sent it.
10. An upstream response is malformed (answered 502 `UPE`, the upstream connection closed) when it is
   a 101 to a request that asked for no upgrade, or a 1xx carrying a body (Transfer-Encoding, or a
   Content-Length other than 0); see `informational_has_body`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

from sidecar.tracing.decide import TRACE_HEADER_NAMES
from sidecar.tracing.w3c import TRACEPARENT, TRACESTATE

CRLF: Final = b"\r\n"
HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)
_RESPONSE_SPECIAL: Final = HOP_BY_HOP | {b"content-length"}  # what a response head's loop looks at twice
#: Rule 2: never treated as connection options, whatever a Connection header says.
NOT_CONNECTION_OPTIONS: Final = frozenset({b"content-length", b"transfer-encoding", b"host"})
#: Methods whose request body a back-end may leave unread, then read as the next request: an upstream
#: connection that carried such a body is never pooled again.
MAY_IGNORE_BODY: Final = frozenset({b"GET", b"HEAD", b"OPTIONS"})
Header = tuple[bytes, bytes]
Headers = list[Header]  # a header block as HTTP/2 codecs take and give it


class UnderscoreAction(enum.Enum):
    """What happens to a request header whose name holds `_` (Envoy's headers_with_underscores_action)."""

    DROP = "drop"
    REJECT = "reject"
    ALLOW = "allow"


#: Never forwarded in a request: hop-by-hop fields, and Expect (rule 7).
REQUEST_NOT_FORWARDED: Final = HOP_BY_HOP | {b"expect"}


def expects_continue(values: Iterable[bytes]) -> bool:
    """Rule 7: whether Expect values ask for `100 Continue`, in any spelling a back-end may honour."""
    return any(b"100-continue" in value.lower() for value in values)


class HeadError(Exception):
    """A request head we refuse: carries the status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Framing(enum.Enum):
    NONE = "none"  # no body: HEAD, 1xx, 204, 304
    LENGTH = "length"  # Content-Length bytes
    CHUNKED = "chunked"  # chunked transfer coding
    CLOSE = "close"  # until the upstream closes


def connection_options(values: Iterable[bytes]) -> set[bytes]:
    """Lowercase field names listed in the values of Connection headers, minus those rule 2 protects."""
    tokens: set[bytes] = set()
    for value in values:
        for token in value.split(b","):
            tokens.add(token.strip().lower())
    tokens -= NOT_CONNECTION_OPTIONS
    return tokens


def _repeated_trace_header(trace_in: dict[bytes, bytes], name: bytes, value: bytes) -> None:
    """Rule 5 for a trace header seen twice (off the usual path: called on a repeat only)."""
    if name == TRACESTATE:
        trace_in[name] += b"," + value
    elif name == TRACEPARENT:
        trace_in[name] = b""  # two traceparent fields: invalid, as an empty value is


def _codings(values: list[bytes]) -> list[bytes]:
    return [c for c in (t.strip() for v in values for t in v.split(b",")) if c]


def check_version(version: str) -> str:
    """Rule 3: the version the head is treated as ("1.0" or "1.1"), or HeadError (callers skip the
    call for "1.1" and "1.0")."""
    if version in ("1.1", "1.0"):
        return version
    major, _, minor = version.partition(".")
    if major == "1" and minor.isdigit():
        return "1.1"
    if major == "0":
        raise HeadError(400, "HTTP/0.9 request lines are not accepted")
    raise HeadError(505, f"HTTP/{version} is not supported")


class UnderscoreError(HeadError):
    """Rule 8 with REJECT: a request header name holds `_`."""

    def __init__(self) -> None:
        super().__init__(400, "header name with an underscore")


class RequestHead:
    """What the rules read from one request's header fields, in one pass."""

    __slots__ = (
        "authority",
        "chunked",
        "codings",
        "content_length",
        "dropped_underscores",
        "expect_continue",
        "has_body",
        "has_host",
        "has_xfp",
        "options",
        "trace_in",
        "triples",
        "user_agent",
    )

    def __init__(
        self,
        headers: list[Header],
        version: str,
        trace_names: frozenset[bytes] = TRACE_HEADER_NAMES,
        underscores: UnderscoreAction = UnderscoreAction.DROP,
    ) -> None:
        triples = [(n.lower(), n, v) for n, v in headers]
        expect: list[bytes] | None = None
        underscored = False
        trace_in: dict[bytes, bytes] = {}
        authority = b""
        user_agent: bytes | None = None
        has_xfp = has_host = False
        codings: list[bytes] = []
        content_length: bytes | None = None
        options: set[bytes] = set()
        for lname, _, value in triples:
            if lname in trace_names:
                if lname not in trace_in:
                    trace_in[lname] = value
                else:
                    _repeated_trace_header(trace_in, lname, value)
            elif lname == b"host":
                if has_host and value != authority:
                    raise HeadError(400, "multiple Host headers")
                has_host = True
                authority = value
            elif lname == b"connection":
                for token in value.split(b","):
                    options.add(token.strip().lower())
            elif lname == b"user-agent":
                user_agent = value
            elif lname == b"x-forwarded-proto":
                has_xfp = True
            elif lname == b"transfer-encoding":
                codings.append(value)
            elif lname == b"content-length":
                if content_length is not None and content_length != value:
                    raise HeadError(400, "conflicting Content-Length")
                content_length = value
            elif lname == b"expect":
                expect = [value] if expect is None else [*expect, value]
            elif b"_" in lname:
                underscored = True  # no name matched above holds one
        self.dropped_underscores = 0
        if underscored and underscores is not UnderscoreAction.ALLOW:
            if underscores is UnderscoreAction.REJECT:
                raise UnderscoreError
            kept = [t for t in triples if b"_" not in t[0]]
            self.dropped_underscores = len(triples) - len(kept)
            triples = kept
        self.triples = triples
        if version == "1.1" and not has_host:
            raise HeadError(400, "missing Host header")
        self.trace_in = trace_in
        self.authority = authority
        self.user_agent = user_agent
        self.has_xfp = has_xfp
        self.has_host = has_host
        # The parser accepts a Transfer-Encoding on a request only when chunked is its final coding.
        self.codings = _codings(codings) if codings else []
        self.chunked = bool(self.codings) and self.codings[-1].lower() == b"chunked"
        self.content_length = content_length
        self.options = options - NOT_CONNECTION_OPTIONS if options else options
        self.has_body = self.chunked or (
            content_length is not None and content_length.strip() not in (b"0", b"")
        )
        # The client may wait for 100 Continue (an HTTP/1.0 client never does, RFC 9110 10.1.1).
        self.expect_continue = (
            expect is not None and self.has_body and version == "1.1" and expects_continue(expect)
        )


def render_h1_request(
    method: bytes,
    target: bytes,
    head: RequestHead,
    remove: frozenset[bytes],
    added: list[Header],
    *,
    upgrade: bool,
    default_host: bytes,
) -> bytes:
    """The HTTP/1.1 head forwarded upstream (rules 1, 2, 4, 5), one join."""
    options = head.options
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    for lname, name, value in head.triples:
        if lname in REQUEST_NOT_FORWARDED or lname in remove or lname in options:
            if upgrade and lname == b"upgrade":
                out += (name, b": ", value, CRLF)
            continue
        out += (name, b": ", value, CRLF)
    for name, value in added:
        out += (name, b": ", value, CRLF)
    if not head.has_xfp:
        out.append(b"x-forwarded-proto: http\r\n")
    if not head.has_host:
        out += (b"host: ", default_host, CRLF)
    if upgrade:
        out.append(b"connection: upgrade\r\n")
    if head.chunked:
        out += (b"transfer-encoding: ", b", ".join(head.codings), CRLF)
    out.append(CRLF)
    return b"".join(out)


def response_framing(status: int, *, is_head: bool, codings: list[bytes], has_length: bool) -> Framing:
    if is_head or status < 200 or status in (204, 304):
        return Framing.NONE
    if codings:
        # A final chunked delimits the body; any other final coding means the close does (RFC 9112 6.3).
        return Framing.CHUNKED if codings[-1].lower() == b"chunked" else Framing.CLOSE
    return Framing.LENGTH if has_length else Framing.CLOSE


class ResponseHead:
    """The forwarded HTTP/1.1 response head and how its body is framed on each side."""

    __slots__ = ("close", "down_chunked", "framing", "head")

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: list[Header],
        *,
        is_head: bool,
        client_version: str,
        close: bool,
    ) -> None:
        """`close`: the client connection ends after this response (its request or the proxy asks)."""
        # Indexed loops over typed lists: compiled, they run without an iterator or a tuple per field.
        count = len(headers)
        lowered: list[bytes] = []
        connection: list[bytes] = []
        for i in range(count):
            lname = headers[i][0].lower()
            lowered.append(lname)
            if lname == b"connection":
                connection.append(headers[i][1])
        options = connection_options(connection) if connection else None
        te: list[bytes] = []
        has_length = False
        out = [status_line(status, reason)]
        for i in range(count):
            lname = lowered[i]
            if lname in _RESPONSE_SPECIAL or (options is not None and lname in options):
                if lname == b"transfer-encoding":
                    te.append(headers[i][1])
                    continue
                if lname == b"content-length":
                    has_length = True
                elif status != 101 or lname != b"upgrade":
                    continue  # hop-by-hop, or named in Connection
            name, value = headers[i]
            out.append(name)
            out.append(b": ")
            out.append(value)
            out.append(CRLF)
        codings = _codings(te) if te else te
        self.down_chunked = False
        if status == 101:
            self.framing = Framing.NONE
            out.append(b"connection: upgrade\r\n")
        else:
            if has_length and not codings and not is_head and 200 <= status < 300 and status != 204:
                self.framing = Framing.LENGTH  # the usual answer, without a call
            else:
                self.framing = response_framing(
                    status, is_head=is_head, codings=codings, has_length=has_length
                )
            if self.framing is Framing.CHUNKED or self.framing is Framing.CLOSE:
                if client_version == "1.1":
                    self.down_chunked = True
                    if codings and codings[-1].lower() == b"chunked":
                        codings = codings[:-1]
                    out += (b"transfer-encoding: ", b", ".join([*codings, b"chunked"]), CRLF)
                else:
                    close = True  # an HTTP/1.0 client learns the end from the close
            if close:
                out.append(b"connection: close\r\n")
        out.append(CRLF)
        self.close = close
        self.head = b"".join(out)


_STATUS_LINES: Final[dict[tuple[int, bytes], bytes]] = {}


def status_line(status: int, reason: bytes) -> bytes:
    """The response's first line, kept for the few (status, reason) pairs an upstream uses (at most 256:
    the reason is the upstream's text)."""
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if len(_STATUS_LINES) < 256:
            _STATUS_LINES[key] = line
    return line


def informational_has_body(headers: list[Header]) -> bool:
    """Rule 10: a 1xx response declares a body (it never has one, so the bytes would be read as the
    final response)."""
    for name, value in headers:
        lname = name.lower()
        if lname == b"transfer-encoding" or (lname == b"content-length" and value.strip() != b"0"):
            return True
    return False


def informational(status: int, reason: bytes, headers: list[Header]) -> bytes:
    """A 1xx (100 Continue, 103 Early Hints) relayed as it came, minus hop-by-hop fields."""
    lines = [status_line(status, reason)]
    lines += [n + b": " + v + CRLF for n, v in headers if n.lower() not in HOP_BY_HOP]
    return b"".join(lines) + CRLF


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def last_chunk(trailers: list[Header]) -> bytes:
    return b"0\r\n" + b"".join(n + b": " + v + CRLF for n, v in trailers) + CRLF


# HTTP/2 --------------------------------------------------------------------------------------------
# The same rules on a header list: h2 has already refused connection-specific fields, uppercase names and
# bad pseudo-headers (RFC 9113 8.2); what is left is the conversion to the upstream's protocol. `te` may
# only be `trailers` in HTTP/2 and gRPC needs it end to end, so it is the one hop-by-hop field kept.


class H2RequestHead:
    """What the rules read from an HTTP/2 request's header list, in one pass."""

    __slots__ = (
        "authority",
        "content_length",
        "content_type",
        "cookies",
        "dropped_underscores",
        "grpc_timeout",
        "has_xfp",
        "method",
        "path",
        "regular",
        "scheme",
        "trace_in",
        "user_agent",
    )

    def __init__(
        self,
        headers: list[Header],
        trace_names: frozenset[bytes] = TRACE_HEADER_NAMES,
        underscores: UnderscoreAction = UnderscoreAction.DROP,
    ) -> None:
        self.dropped_underscores = 0
        self.method = self.scheme = self.path = b""
        self.authority = b""
        self.user_agent: bytes | None = None
        self.content_type: bytes | None = None
        self.content_length: bytes | None = None
        self.grpc_timeout: bytes | None = None
        self.has_xfp = False
        self.cookies: list[bytes] = []
        trace_in: dict[bytes, bytes] = {}
        regular: list[Header] = []
        for name, value in headers:
            if name[:1] == b":":
                if name == b":method":
                    self.method = value
                elif name == b":path":
                    self.path = value
                elif name == b":authority":
                    self.authority = value
                elif name == b":scheme":
                    self.scheme = value
                continue
            if name in trace_names:
                if name not in trace_in:
                    trace_in[name] = value
                else:
                    _repeated_trace_header(trace_in, name, value)
            elif name == b"cookie":
                self.cookies.append(value)
                continue
            elif name == b"host":
                if not self.authority:
                    self.authority = value
                continue  # :authority wins (RFC 9113 8.3.1)
            elif name == b"user-agent":
                self.user_agent = value
            elif name == b"content-type":
                self.content_type = value
            elif name == b"content-length":
                self.content_length = value
            elif name == b"grpc-timeout":
                self.grpc_timeout = value
            elif name == b"x-forwarded-proto":
                self.has_xfp = True
            elif name in REQUEST_NOT_FORWARDED and not (name == b"te" and value == b"trailers"):
                continue
            elif b"_" in name and underscores is not UnderscoreAction.ALLOW:  # rule 8
                if underscores is UnderscoreAction.REJECT:
                    raise UnderscoreError
                self.dropped_underscores += 1
                continue
            regular.append((name, value))
        self.trace_in = trace_in
        self.regular = regular


def render_h2_request(head: H2RequestHead, remove: frozenset[bytes], added: list[Header]) -> list[Header]:
    """The header list forwarded to an HTTP/2 upstream (rule 5 applied)."""
    out = [
        (b":method", head.method),
        (b":scheme", head.scheme or b"http"),
        (b":authority", head.authority),
        (b":path", head.path),
    ]
    out += [h for h in head.regular if h[0] not in remove]
    if head.cookies:
        out += [(b"cookie", c) for c in head.cookies]
    out += added
    if not head.has_xfp:
        out.append((b"x-forwarded-proto", b"http"))
    return out


def render_h1_request_from_h2(
    head: H2RequestHead, remove: frozenset[bytes], added: list[Header], *, chunked: bool
) -> bytes:
    """The HTTP/1.1 head forwarded for an HTTP/2 request: Host from :authority, cookie crumbs joined
    (RFC 9113 8.2.3), a body without content-length sent chunked."""
    out = [head.method, b" ", head.path, b" HTTP/1.1\r\nhost: ", head.authority, CRLF]
    for name, value in head.regular:
        if name not in remove:
            out += (name, b": ", value, CRLF)
    if head.cookies:
        out += (b"cookie: ", b"; ".join(head.cookies), CRLF)
    for name, value in added:
        out += (name, b": ", value, CRLF)
    if not head.has_xfp:
        out.append(b"x-forwarded-proto: http\r\n")
    if chunked:
        out.append(b"transfer-encoding: chunked\r\n")
    out.append(CRLF)
    return b"".join(out)


def h2_response_from_h1(status: int, headers: list[Header]) -> list[Header]:
    """An HTTP/1.1 response head as an HTTP/2 header list: lowercase, no connection-specific fields."""
    triples = [(n.lower(), n, v) for n, v in headers]
    options = connection_options([value for lname, _, value in triples if lname == b"connection"])
    out = [(b":status", b"%d" % status)]
    for lname, _, value in triples:
        if lname in HOP_BY_HOP or lname in options:
            continue
        out.append((lname, value))
    return out


_H2_FORBIDDEN: Final = frozenset(HOP_BY_HOP - {b"te"})


def h2_response_from_h2(headers: list[Header]) -> list[Header]:
    """An upstream HTTP/2 header block as relayed to a client: nothing connection-specific, names in
    lowercase (h2 does not validate the upstream's blocks, see h2_base.h2_config)."""
    for name, _ in headers:
        if name in _H2_FORBIDDEN or name != name.lower():
            break
    else:
        return headers  # the usual case: nothing to drop or fix
    return [(n.lower(), v) for n, v in headers if n.lower() not in _H2_FORBIDDEN]


def h2_trailers(headers: list[Header]) -> list[Header]:
    """Trailer fields for HTTP/2: lowercase, nothing hop-by-hop, no pseudo-headers."""
    return [(n.lower(), v) for n, v in headers if n[:1] != b":" and n.lower() not in HOP_BY_HOP]
