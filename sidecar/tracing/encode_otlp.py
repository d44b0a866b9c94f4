"""OTLP traces: one span to one `ScopeSpans.spans` entry; a batch is one `ExportTraceServiceRequest`.

A hand-written protobuf encoder for the few messages of opentelemetry/proto/trace/v1 and
collector/trace/v1 the sidecar sends (the tests decode its output with the `opentelemetry-proto`
package). It was chosen over that package's object API by measurement: bench/bench_encode.py.

The span's Envoy/Zipkin tags are turned into OpenTelemetry's semantic-convention attributes where one
exists (`http.method` -> `http.request.method`, `http.status_code` -> `http.response.status_code` as an
int, `http.url` -> `url.path` + `url.scheme` + `server.address`/`server.port`, `peer.address` ->
`network.peer.address`/`network.peer.port`, `user_agent` -> `user_agent.original`, gRPC's path and status
-> `rpc.*`); Envoy's tags with no semconv name are kept under their own names, and the `error` tag
becomes the span status. A batch wraps every span in one `ResourceSpans` whose `service.name` is the
encoding's service: the runtime makes one encoding per service (`otlp_encoding`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

from sidecar.tracing.span import Span

CONTENT_TYPE = "application/x-protobuf"
SCOPE_NAME = "kuma-trace-sidecar"
_KIND = {"SERVER": 2, "CLIENT": 3}  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT
_FIXED64 = struct.Struct("<Q")
_STATUS_ERROR = b"\x7a\x02\x18\x02"  # field 15 (status) = Status{code(3): STATUS_CODE_ERROR}
_SMALL = [bytes((i,)) for i in range(128)]

# Envoy tags dropped from the attributes: said by the span status or by a semconv attribute instead.
REPLACED_TAGS = frozenset(
    {
        "http.method",
        "http.status_code",
        "http.url",
        "http.protocol",
        "peer.address",
        "user_agent",
        "error",
        "grpc.path",
        "grpc.status_code",
    }
)


def _varint(value: int) -> bytes:
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string_kv(key: str, value: str) -> bytes:
    """Span.attributes (field 9) entry: KeyValue{key, AnyValue{string_value}}."""
    return _field(9, _field(1, key.encode()) + _field(2, _field(1, value.encode())))


def _int_kv(key: str, value: int) -> bytes:
    """Span.attributes entry with an AnyValue{int_value} (two's complement for negatives)."""
    return _field(9, _field(1, key.encode()) + _field(2, b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)))


# Each key's start up to its value (`0a len key 12`), cleared when it grows large.
_key_start: dict[str, bytes] = {}
_CACHE_LIMIT = 4096


def _put(parts: list[bytes], key: str, value: str) -> None:
    """Append a string attribute to `parts` as pieces (no copy of a whole KeyValue)."""
    v = value.encode()
    n = len(v)
    start = _key_start.get(key)
    if start is None:
        if len(_key_start) >= _CACHE_LIMIT:
            _key_start.clear()
        start = _key_start[key] = _field(1, key.encode()) + b"\x12"
    size = len(start) + n + 3  # start, AnyValue length, AnyValue's string tag and length, value
    if n < 126 and size < 128:  # every length is one byte
        parts += (b"\x4a", _SMALL[size], start, _SMALL[n + 2], b"\x0a", _SMALL[n], v)
    else:
        parts.append(_string_kv(key, value))


def split_host_port(address: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port` or a bare host to (host, port or None); never raises."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif address.count(":") == 1:
        host, _, port_text = address.partition(":")
    else:
        host, port_text = address, ""
    port = int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else None
    return host, port


@functools.lru_cache(maxsize=4096)
def _address_attrs(address: str, host_key: str, port_key: str) -> bytes:
    host, port = split_host_port(address)
    out = _string_kv(host_key, host) if host else b""
    if port is not None:
        out += _int_kv(port_key, port)
    return out


@functools.lru_cache(maxsize=1024)
def _origin_attrs(origin: str) -> bytes:
    """`scheme://authority` to url.scheme, server.address and server.port."""
    scheme, _, authority = origin.partition("://")
    out = _string_kv("url.scheme", scheme)
    if authority:
        out += _address_attrs(authority, "server.address", "server.port")
    return out


@functools.lru_cache(maxsize=1024)
def _rpc_attrs(grpc_path: str) -> bytes:
    """`/package.Service/Method` to rpc.system, rpc.service and rpc.method."""
    out = _string_kv("rpc.system", "grpc")
    service, sep, method = grpc_path.lstrip("/").rpartition("/")
    if sep:
        out += _string_kv("rpc.service", service) + _string_kv("rpc.method", method)
    return out


_PROTOCOL_VERSION = {
    protocol: _string_kv("network.protocol.version", version)
    for protocol, version in (("HTTP/1.0", "1.0"), ("HTTP/1.1", "1.1"), ("HTTP/2", "2"))
}
_STATUS_CODES = {code: _int_kv("http.response.status_code", code) for code in range(100, 600)}


def _translate(key: str, value: str) -> bytes:
    """The encoded attributes of one tag (b"" for none): its semantic-convention form where it has one."""
    if key == "http.method":
        return _string_kv("http.request.method", value)
    if key == "http.status_code":
        if not value.isdigit() or value == "0":  # 0: no response
            return b""
        return _STATUS_CODES.get(int(value)) or _int_kv("http.response.status_code", int(value))
    if key == "http.protocol":
        return _PROTOCOL_VERSION.get(value, b"")
    if key == "peer.address":
        return _address_attrs(value, "network.peer.address", "network.peer.port") if value else b""
    if key == "user_agent":
        return b"" if value in ("", "-") else _string_kv("user_agent.original", value)
    if key == "grpc.path":
        return _rpc_attrs(value)
    if key == "grpc.status_code":
        return _int_kv("rpc.grpc.status_code", int(value)) if value.isdigit() else b""
    if key in REPLACED_TAGS:  # the span status says `error`
        return b""
    return _string_kv(key, value)


def _url(parts: list[bytes], url: str) -> None:
    """Envoy's `scheme://authority/path`: the origin's attributes are cached, the path is not."""
    sep = url.find("://")
    slash = url.find("/", sep + 3) if sep >= 0 else 0
    if slash < 0:
        slash = len(url)
    if slash:
        parts.append(_origin_attrs(url[:slash]))
    path = url[slash:]
    query = path.find("?")
    if query < 0:
        _put(parts, "url.path", path)
    else:
        _put(parts, "url.path", path[:query])
        _put(parts, "url.query", path[query + 1 :])


# Every tag's encoded attributes by (name, value): most repeat from span to span (method, protocol,
# cluster, node, status, sizes, the peer of a keep-alive connection), so one dict lookup per tag does.
# The two that never repeat are encoded each time. Cleared when it grows large.
_by_item: dict[tuple[str, str], bytes] = {}
_PER_REQUEST = frozenset({"guid:x-request-id", "http.url"})


def _attributes(parts: list[bytes], tags: dict[str, str]) -> None:
    get = _by_item.get
    for item in tags.items():
        encoded = get(item)
        if encoded is None:
            key, value = item
            if key in _PER_REQUEST:
                if key == "http.url":
                    _url(parts, value)
                else:
                    _put(parts, key, value)
                continue
            if len(_by_item) >= _CACHE_LIMIT:
                _by_item.clear()
            encoded = _by_item[item] = _translate(key, value)
        parts.append(encoded)


def encode_span_message(span: Span) -> bytes:
    """The `opentelemetry.proto.trace.v1.Span` message of one closed span."""
    start = span.timestamp_us * 1000
    tags = span.tags
    fromhex = bytes.fromhex
    # A 64-bit B3 trace id is left-padded to 16 bytes; span ids are always 16 hex digits.
    parts = [b"\x0a\x10", fromhex(span.trace_id.rjust(32, "0")), b"\x12\x08", fromhex(span.span_id)]
    if span.parent_id is not None:
        parts += (b"\x22\x08", fromhex(span.parent_id))
    if span.name:
        parts.append(_field(5, span.name.encode()))
    parts += (
        b"\x30",
        _SMALL[_KIND[span.kind]],
        b"\x39",
        _FIXED64.pack(start),
        b"\x41",
        _FIXED64.pack(start + span.duration_us * 1000),
    )
    _attributes(parts, tags)
    if "error" in tags or tags.get("response_flags", "-") not in ("-", ""):
        parts.append(_STATUS_ERROR)  # 5xx, failed gRPC calls, and local replies (Envoy's flags)
    return b"".join(parts)


def encode_span(span: Span) -> bytes:
    """One `ScopeSpans.spans` entry (field 2, length-delimited)."""
    return _field(2, encode_span_message(span))


@functools.lru_cache(maxsize=64)
def _resource_prefix(service: str) -> bytes:
    """ResourceSpans.resource (field 1): a Resource whose one attribute is `service.name`."""
    attribute = _field(1, b"service.name") + _field(2, _field(1, service.encode()))
    return _field(1, _field(1, attribute))


_SCOPE = _field(1, _field(1, SCOPE_NAME.encode()))  # ScopeSpans.scope: InstrumentationScope{name}


def encode_request(service: str, spans: Sequence[bytes]) -> bytes:
    """`ExportTraceServiceRequest` with one ResourceSpans (`service.name` = service) of `spans`, each
    already framed by `encode_span`."""
    scope_spans = _field(2, _SCOPE + b"".join(spans))
    return _field(1, _resource_prefix(service) + scope_spans)


def decode_partial_success(body: bytes) -> tuple[int, str]:
    """From an `ExportTraceServiceResponse`: (rejected_spans, error_message); (0, "") when absent or
    unreadable (a response that cannot be read is a success without details, as the spec says)."""
    try:
        for number, wire, value in read_fields(body):
            if number == 1 and wire == 2 and isinstance(value, bytes):
                rejected, message = 0, ""
                for inner, inner_wire, inner_value in read_fields(value):
                    if inner == 1 and inner_wire == 0 and isinstance(inner_value, int):
                        rejected = inner_value
                    elif inner == 2 and inner_wire == 2 and isinstance(inner_value, bytes):
                        message = inner_value.decode("utf-8", "replace")
                return rejected, message
    except ValueError:
        pass
    return 0, ""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def read_fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """Top-level (field, wire type, value) of a message; ValueError when it is not protobuf."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        wire = key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(data):
                raise ValueError("truncated")
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise ValueError(f"wire type {wire}")
        out.append((key >> 3, wire, value))
    return out
