"""OTLP traces: one span to one `ScopeSpans.spans` entry; a batch is one `ExportTraceServiceRequest`.

A hand-written protobuf encoder for the few messages of opentelemetry/proto/trace/v1 and
collector/trace/v1 the sidecar sends (the tests decode its output with the `opentelemetry-proto`
package). It was chosen over that package's object API by measurement: bench/bench_otlp.py.

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
from collections.abc import Sequence
from typing import Final

from sidecar.tracing.protowire import DecodeError, read_fields
from sidecar.tracing.protowire import field as _field
from sidecar.tracing.protowire import varint as _varint
from sidecar.tracing.span import Span

CONTENT_TYPE: Final = "application/x-protobuf"
SCOPE_NAME: Final = "kuma-trace-sidecar"
_KIND: Final = {"SERVER": 2, "CLIENT": 3}  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT
_STATUS_ERROR: Final = b"\x7a\x02\x18\x02"  # field 15 (status) = Status{code(3): STATUS_CODE_ERROR}

# Envoy tags dropped from the attributes: said by the span status or by a semconv attribute instead.
REPLACED_TAGS: Final = frozenset(
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


def _string_kv(key: str, value: str) -> bytes:
    """Span.attributes (field 9) entry: KeyValue{key, AnyValue{string_value}}."""
    return _field(9, _field(1, key.encode()) + _field(2, _field(1, value.encode())))


def _int_kv(key: str, value: int) -> bytes:
    """Span.attributes entry with an AnyValue{int_value} (two's complement for negatives)."""
    return _field(9, _field(1, key.encode()) + _field(2, b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)))


# Per key, by value length: everything of a string KeyValue before the value's bytes
# (`4a size 0a len key 12 len 0a len`). The keys written this way are few (request id, url path and
# query), and so are the lengths, so a KeyValue is two pieces: this prefix and the value.
_prefixes: Final[dict[str, list[bytes | None]]] = {}
_CACHE_LIMIT: Final = 4096
_SHORT: Final = 120  # longer values: _string_kv, whose lengths may take two bytes


def _put(parts: list[bytes], key: str, value: str) -> None:
    """Append a string attribute to `parts` as two pieces (no copy of a whole KeyValue)."""
    v = value.encode()
    n = len(v)
    if n >= _SHORT:
        parts.append(_string_kv(key, value))
        return
    table = _prefixes.get(key)
    if table is None:
        if len(_prefixes) >= _CACHE_LIMIT:
            _prefixes.clear()
        table = _prefixes[key] = [None] * _SHORT
    prefix = table[n]
    if prefix is None:
        prefix = table[n] = _string_kv(key, value)[: -n or None]
    parts += (prefix, v)


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


_PROTOCOL_VERSION: Final = {
    protocol: _string_kv("network.protocol.version", version)
    for protocol, version in (("HTTP/1.0", "1.0"), ("HTTP/1.1", "1.1"), ("HTTP/2", "2"))
}
_STATUS_CODES: Final = {code: _int_kv("http.response.status_code", code) for code in range(100, 600)}


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


_origins: Final[dict[str, bytes]] = {}  # `scheme://authority` -> its attributes


def _url(parts: list[bytes], url: str) -> None:
    """Envoy's `scheme://authority/path`: the origin's attributes are cached, the path is not."""
    sep = url.find("://")
    slash = url.find("/", sep + 3) if sep >= 0 else 0
    if slash < 0:
        slash = len(url)
    if slash:
        origin = url[:slash]
        encoded = _origins.get(origin)
        if encoded is None:
            if len(_origins) >= _CACHE_LIMIT:
                _origins.clear()
            encoded = _origins[origin] = _origin_attrs(origin)
        parts.append(encoded)
    path = url[slash:]
    query = path.find("?")
    if query < 0:
        _put(parts, "url.path", path)
    else:
        _put(parts, "url.path", path[:query])
        _put(parts, "url.query", path[query + 1 :])


# Every tag's encoded attributes, by name then value: most repeat from span to span (method, protocol,
# cluster, node, status, sizes, the peer of a keep-alive connection), so two lookups of strings whose
# hashes are already cached do, with no tuple built per tag. The two that never repeat are encoded each
# time. Cleared when it grows large.
_by_name: Final[dict[str, dict[str, bytes]]] = {}
_cached = 0
_PER_REQUEST: Final = frozenset({"guid:x-request-id", "http.url"})


def _remember(key: str, value: str) -> bytes:
    global _cached
    if _cached >= _CACHE_LIMIT:
        _by_name.clear()
        _cached = 0
    encoded = _translate(key, value)
    values = _by_name.get(key)
    if values is None:
        values = _by_name[key] = {}
    values[value] = encoded
    _cached += 1
    return encoded


def _attributes(parts: list[bytes], tags: dict[str, str]) -> None:
    by_name = _by_name
    for key, value in tags.items():
        values = by_name.get(key)
        if values is not None:
            encoded = values.get(value)
            if encoded is not None:
                parts.append(encoded)
                continue
        if key in _PER_REQUEST:
            if key == "http.url":
                _url(parts, value)
            else:
                _put(parts, key, value)
        else:
            parts.append(_remember(key, value))


# Field 6 (kind) and the tag of field 7 (start, fixed64); field 8 (end) follows the start's 8 bytes.
_KIND_FIELD: Final = {kind: bytes((0x30, number, 0x39)) for kind, number in _KIND.items()}
_names: Final[dict[str, bytes]] = {}  # span name -> field 5; names are authorities, few and repeating


def _span_parts(span: Span) -> list[bytes]:
    """The pieces of one `opentelemetry.proto.trace.v1.Span` message, to be joined."""
    fromhex = bytes.fromhex
    trace_id = span.trace_id
    if len(trace_id) != 32:  # a 64-bit B3 trace id is left-padded to 16 bytes
        trace_id = trace_id.rjust(32, "0")
    parts = [b"\x0a\x10", fromhex(trace_id), b"\x12\x08", fromhex(span.span_id)]
    if span.parent_id is not None:
        parts += (b"\x22\x08", fromhex(span.parent_id))
    name = span.name
    if name:
        field = _names.get(name)
        if field is None:
            if len(_names) >= _CACHE_LIMIT:
                _names.clear()
            field = _names[name] = _field(5, name.encode())
        parts.append(field)
    start = span.timestamp_us * 1000
    end = start + span.duration_us * 1000
    parts += (_KIND_FIELD[span.kind], start.to_bytes(8, "little"), b"\x41", end.to_bytes(8, "little"))
    tags = span.tags
    _attributes(parts, tags)
    if "error" in tags or tags.get("response_flags", "-") not in ("-", ""):
        parts.append(_STATUS_ERROR)  # 5xx, failed gRPC calls, and local replies (Envoy's flags)
    return parts


def encode_span_message(span: Span) -> bytes:
    """The `opentelemetry.proto.trace.v1.Span` message of one closed span."""
    return b"".join(_span_parts(span))


_frames: Final[dict[int, bytes]] = {}  # message length -> its `ScopeSpans.spans` tag and length


def encode_span(span: Span) -> bytes:
    """One `ScopeSpans.spans` entry (field 2, length-delimited)."""
    message = b"".join(_span_parts(span))
    size = len(message)
    frame = _frames.get(size)
    if frame is None:
        if len(_frames) >= _CACHE_LIMIT:
            _frames.clear()
        frame = _frames[size] = b"\x12" + _varint(size)
    return frame + message


@functools.lru_cache(maxsize=64)
def _resource_prefix(service: str) -> bytes:
    """ResourceSpans.resource (field 1): a Resource whose one attribute is `service.name`."""
    attribute = _field(1, b"service.name") + _field(2, _field(1, service.encode()))
    return _field(1, _field(1, attribute))


_SCOPE: Final = _field(1, _field(1, SCOPE_NAME.encode()))  # ScopeSpans.scope: InstrumentationScope{name}


def encode_request(service: str, spans: Sequence[bytes]) -> bytes:
    """`ExportTraceServiceRequest` with one ResourceSpans (`service.name` = service) of `spans`, each
    already framed by `encode_span`.

    The lengths are summed first so the body is built by one join: a batch is hundreds of KB, and each
    nested copy of it costs more than encoding a span's attributes (fresh pages for every allocation)."""
    resource = _resource_prefix(service)
    scope_size = len(_SCOPE) + sum(map(len, spans))
    scope_head = b"\x12" + _varint(scope_size)
    resource_size = len(resource) + len(scope_head) + scope_size
    parts = [b"\x0a" + _varint(resource_size) + resource + scope_head + _SCOPE]
    parts += spans
    return b"".join(parts)


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
    except DecodeError:
        pass
    return 0, ""
