"""The one call the proxy makes per request head (`Tracer.start`) and the one when it ends (`finish`).

`start` reads the incoming trace headers, keeps or makes the x-request-id, decides sampling (an incoming
decision wins, else the backend's sampling knobs drawn from the request id: tracing/sampling.py), opens a
SERVER or CLIENT span with the backend's custom tags (tracing/custom_tags.py) and says which headers to
forward. `finish` closes the span and encodes it once.

Propagation follows the tracer's `trace_context` mode: `b3+w3c` (the default) continues a valid B3
context first, else a valid W3C `traceparent`, and writes both formats naming the same span; `b3` and
`w3c` read and write one format and leave the other's headers untouched.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sidecar.tracing import b3, w3c
from sidecar.tracing.custom_tags import TagRule, add_custom_tags
from sidecar.tracing.custom_tags import header_names as tag_header_names
from sidecar.tracing.encoding import JSON, Encoding
from sidecar.tracing.ids import hex64, new_id64
from sidecar.tracing.request_id import is_valid_request_id, new_request_id
from sidecar.tracing.sampling import CLIENT_TRACE_ID, Sampling
from sidecar.tracing.span import Span, SpanKind, http_url, zipkin_endpoint

__all__ = [
    "TRACE_CONTEXT_MODES",
    "TRACE_HEADER_NAMES",
    "Decision",
    "SpanKind",
    "Tracer",
    "TracerSettings",
    "header_names_for",
]

REQUEST_ID: Final = b"x-request-id"

#: Lowercase names of the request headers the tracing decision reads and may replace. The proxy passes
#: the first value of each name in `Tracer.header_names` (these, and any a tracer adds) to `Tracer.start`,
#: and drops from the forwarded head every name in `Decision.remove` before appending `Decision.headers`.
TRACE_HEADER_NAMES: Final[frozenset[bytes]] = frozenset(
    {REQUEST_ID, b3.B3_SINGLE, b3.TRACE_ID, b3.SPAN_ID, b3.PARENT_SPAN_ID, b3.SAMPLED, b3.FLAGS}
)
_ONLY_REQUEST_ID: Final = frozenset({REQUEST_ID})
_PAD: Final = "0" * 16  # the high half of a 64-bit trace id written as 128 bits
_W3C_NAMES: Final = frozenset({w3c.TRACEPARENT, w3c.TRACESTATE})

#: `--trace-context` modes: which propagation formats are read and written. `b3` leaves `traceparent`
#: and `tracestate` untouched, `w3c` leaves the B3 headers untouched.
TRACE_CONTEXT_MODES: Final = ("b3+w3c", "b3", "w3c")
_NAMES_BY_MODE: Final[dict[str, frozenset[bytes]]] = {
    "b3+w3c": TRACE_HEADER_NAMES | _W3C_NAMES,
    "b3": TRACE_HEADER_NAMES,
    "w3c": _ONLY_REQUEST_ID | _W3C_NAMES,
}


def header_names_for(trace_context: str) -> frozenset[bytes]:
    """The trace headers read, and replaced, in a `--trace-context` mode."""
    return _NAMES_BY_MODE[trace_context]


@dataclass(frozen=True, slots=True)
class TracerSettings:
    """What the tracer needs of a resolved backend (kept free of config types: tracing imports no config)."""

    sampling: float = 100.0  # percent
    trace_id_128bit: bool = False
    shared_span_context: bool = True
    encoding: Encoding = JSON  # what finish() returns: a JSON object or one proto3 ListOfSpans entry
    single_header: bool = False  # also write the single `b3` header upstream (multi headers always)
    client_sampling: float = 100.0  # percent of requests with x-client-trace-id (tracing/sampling.py)
    random_sampling: float = 100.0  # percent of the others
    tags: tuple[TagRule, ...] = ()  # custom tags on every span (tracing/custom_tags.py)
    trace_context: str = "b3+w3c"  # one of TRACE_CONTEXT_MODES

    def __post_init__(self) -> None:
        if self.trace_context not in _NAMES_BY_MODE:
            raise ValueError(f"trace context {self.trace_context!r}: choose {', '.join(TRACE_CONTEXT_MODES)}")


class Decision:
    """What `start` decided for one request. A plain class: compiled, it is built by a native __init__
    (a dataclass's generated __init__ stays interpreted), and one is built per request."""

    __slots__ = ("debug", "headers", "remove", "request_id", "sampled", "span", "span_id", "trace_id")

    def __init__(
        self,
        request_id: str,
        trace_id: str,  # lower hex, "" when nothing is traced (no backend)
        span_id: str,  # the id this hop propagates upstream ("" when nothing is traced)
        sampled: bool,
        headers: list[tuple[bytes, bytes]],  # lowercase name, value: append these to the forwarded head
        remove: frozenset[bytes],  # lowercase names to drop from the incoming head first
        span: Span | None,  # None when unsampled or when there is no backend
        debug: bool = False,
    ) -> None:
        self.request_id = request_id
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.headers = headers
        self.remove = remove
        self.span = span
        self.debug = debug

    def __repr__(self) -> str:
        return (
            f"Decision(request_id={self.request_id!r}, trace_id={self.trace_id!r}, "
            f"span_id={self.span_id!r}, sampled={self.sampled}, debug={self.debug})"
        )


_zipkin_endpoint: Final = zipkin_endpoint  # Final: a C static when compiled, no lookup per span


def _wall_anchor_ns() -> int:
    return time.time_ns() - time.monotonic_ns()


class Tracer:
    """Owns the clock and randomness of one proxy's spans; cheap enough to call per request."""

    def __init__(
        self,
        settings: TracerSettings | None,  # None: no TrafficTrace -> only x-request-id handling
        *,
        service_name: str,
        node_id: str,
        rng: random.Random | None = None,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        wall_anchor_ns: int | None = None,
    ) -> None:
        self.settings = settings
        # What the proxy collects from a request head for `start`: per tracer, since the propagation
        # formats and the tags read from request headers depend on its settings.
        self.header_names: frozenset[bytes] = (
            header_names_for(settings.trace_context) if settings is not None else TRACE_HEADER_NAMES
        )
        mode = settings.trace_context if settings is not None else "b3"
        self._b3 = mode != "w3c"
        self._remove = _NAMES_BY_MODE[mode]  # what `start` rewrites; header_names may read more (tags)
        self._w3c = mode != "b3"
        self._sampling = Sampling()
        self._tags: tuple[TagRule, ...] = ()
        if settings is not None:
            self._sampling = Sampling.from_percent(
                settings.sampling, settings.client_sampling, settings.random_sampling
            )
            self._tags = settings.tags
            extra = tag_header_names(self._tags)
            if self._sampling.reads_client_header:
                extra |= {CLIENT_TRACE_ID}
            self.header_names = self.header_names | extra
        self.service_name = service_name
        self.node_id = node_id
        self._rng = rng if rng is not None else random.Random()
        self._mono = monotonic_ns
        # Timestamps come from the monotonic clock anchored once to wall time, so a clock step
        # during a request cannot make a negative or huge duration.
        self._anchor_ns = _wall_anchor_ns() if wall_anchor_ns is None else wall_anchor_ns
        self._encode = (settings.encoding if settings is not None else JSON).encode_span

    def start(
        self,
        kind: SpanKind,
        # lowercase trace-header name -> first value, as received; a dict (not a Mapping): compiled,
        # its lookups here and in b3/w3c/custom_tags are then C calls, not method lookups
        incoming: dict[bytes, bytes],
        *,
        method: str | bytes,  # bytes as read are decoded (latin-1) only when a span is made
        authority: str | bytes,  # Host header value ("" when missing); the span name
        path: str | bytes,  # request target as received
        scheme: str,  # "http"
        protocol: str,  # "HTTP/1.1"
        user_agent: str | bytes | None,
        peer_address: str,  # the downstream peer "ip:port" (tag peer.address; SERVER remoteEndpoint)
        upstream_cluster: str,  # Envoy-like cluster name: "localhost:8080" (inbound) or "backend" (outbound)
        remote_service: str | None = None,  # CLIENT: destination service, remoteEndpoint.serviceName
    ) -> Decision:
        raw_id = incoming.get(REQUEST_ID)
        if raw_id is not None and is_valid_request_id(raw_id):
            request_id = raw_id.decode("ascii")
        else:
            request_id = new_request_id(self._rng)
            raw_id = request_id.encode()
        settings = self.settings
        if settings is None:
            return Decision(request_id, "", "", False, [(REQUEST_ID, raw_id)], _ONLY_REQUEST_ID, None)

        # Extraction: a B3 context wins (as in Envoy); else a valid traceparent is continued; else a root.
        ctx = b3.extract(incoming) if self._b3 else None
        parent: w3c.TraceParent | None = None
        if self._w3c:
            raw_parent = incoming.get(w3c.TRACEPARENT)
            if raw_parent is not None:
                parent = w3c.parse_traceparent(raw_parent)
        debug = ctx is not None and ctx.debug
        if debug:
            sampled = True
        elif ctx is not None and ctx.sampled is not None:
            sampled = ctx.sampled
        elif parent is not None and (ctx is None or ctx.trace_id is None):
            sampled = bool(parent.flags & w3c.SAMPLED_FLAG)
        else:
            sampled = self._sampling.decide(request_id, CLIENT_TRACE_ID in incoming, self._rng)

        shared = False
        if ctx is not None and ctx.trace_id is not None and ctx.span_id is not None:
            trace_id = ctx.trace_id
            if kind == "SERVER" and settings.shared_span_context:
                span_id, parent_id, shared = ctx.span_id, ctx.parent_id, True
            else:
                span_id, parent_id = hex64(new_id64(self._rng)), ctx.span_id
        elif parent is not None:
            # W3C has no shared span context: the span is always a child of the caller's parent-id.
            trace_id = parent.trace_id
            if trace_id.startswith(_PAD):
                trace_id = trace_id[16:]  # a 64-bit id left-padded: the same id the B3 headers carry
            span_id, parent_id = hex64(new_id64(self._rng)), parent.parent_id
        else:
            root = new_id64(self._rng)
            span_id, parent_id = hex64(root), None
            trace_id = hex64(new_id64(self._rng)) + span_id if settings.trace_id_128bit else span_id

        headers = [(REQUEST_ID, raw_id)]
        if self._b3:
            headers += b3.format_multi(trace_id, span_id, parent_id, sampled, debug)
            if settings.single_header:
                headers.append((b3.B3_SINGLE, b3.format_single(trace_id, span_id, parent_id, sampled, debug)))
        if self._w3c:
            if parent is None:  # the usual case: a new trace, or a B3 caller without traceparent
                flags = w3c.SAMPLED_FLAG if sampled else 0
                headers.append((w3c.TRACEPARENT, w3c.format_traceparent(trace_id, span_id, flags)))
            else:
                headers += self._w3c_headers(incoming, parent, trace_id, span_id, sampled)

        span = None
        if sampled:
            # Header bytes are decoded here, for the span only.
            if isinstance(authority, bytes):
                authority = authority.decode("latin-1")
            if isinstance(path, bytes):
                path = path.decode("latin-1")
            if isinstance(method, bytes):
                method = method.decode("latin-1")
            if isinstance(user_agent, bytes):
                user_agent = user_agent.decode("latin-1")
            start_ns = self._mono()
            span = Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_id=parent_id,
                kind=kind,
                name=authority,
                timestamp_us=(self._anchor_ns + start_ns) // 1000,
                start_ns=start_ns,
                local_service=self.service_name,
                shared=shared,
                debug=debug,
                peer_address=peer_address,
                remote_service=remote_service,
                tags={
                    "node_id": self.node_id,
                    "guid:x-request-id": request_id,
                    "http.url": http_url(scheme, authority, path),
                    "http.method": method,
                    "http.protocol": protocol,
                    "downstream_cluster": "-",
                    "user_agent": user_agent or "-",
                    "peer.address": peer_address,
                    "component": "proxy",
                    "upstream_cluster": upstream_cluster,
                },
            )
        if span is not None and self._tags:
            add_custom_tags(span.tags, self._tags, incoming)
        return Decision(request_id, trace_id, span_id, sampled, headers, self._remove, span, debug)

    @staticmethod
    def _w3c_headers(
        incoming: dict[bytes, bytes],
        parent: w3c.TraceParent,
        trace_id: str,
        span_id: str,
        sampled: bool,
    ) -> list[tuple[bytes, bytes]]:
        """One traceparent naming this hop's span, and the incoming tracestate when its trace goes on.

        The flags carry the decision's sampled bit; an incoming traceparent of the same trace keeps its
        other bits (Level 2's random bit). A traceparent of another trace (B3 won) was not continued:
        its tracestate is dropped.
        """
        flags = w3c.SAMPLED_FLAG if sampled else 0
        if parent.trace_id != (trace_id if len(trace_id) == 32 else _PAD + trace_id):
            return [(w3c.TRACEPARENT, w3c.format_traceparent(trace_id, span_id, flags))]
        flags |= parent.flags & ~w3c.SAMPLED_FLAG
        out = [(w3c.TRACEPARENT, w3c.format_traceparent(trace_id, span_id, flags))]
        raw_state = incoming.get(w3c.TRACESTATE)
        if raw_state is not None:
            state = w3c.parse_tracestate(raw_state)
            if state is not None:
                out.append((w3c.TRACESTATE, state))
        return out

    def finish(
        self,
        span: Span,
        *,
        status: int,  # 0 when no response
        request_size: int,
        response_size: int,
        response_flags: str,  # "-" or Envoy's flags ("UF", "UH", "UR", "UT", "DC")
        upstream_address: str | None,  # "ip:port" actually used (tag upstream_address; CLIENT remoteEndpoint)
        tags: dict[str, str] | None = None,  # protocol-specific closing tags (gRPC's)
    ) -> bytes:
        """Close the span and return it encoded once (JSON object or one proto3 ListOfSpans entry)."""
        span.duration_us = max(1, (self._mono() - span.start_ns) // 1000)
        closing = span.tags
        closing["request_size"] = str(request_size)
        closing["response_size"] = str(response_size)
        closing["http.status_code"] = str(status)
        closing["response_flags"] = response_flags
        if upstream_address:
            closing["upstream_address"] = upstream_address
        if tags:
            closing.update(tags)
        if status == 0 or status >= 500:
            closing["error"] = "true"
        if span.kind == "SERVER":
            span.remote_endpoint = _zipkin_endpoint(span.peer_address)
        else:
            span.remote_endpoint = _zipkin_endpoint(upstream_address, span.remote_service)
        return self._encode(span)
