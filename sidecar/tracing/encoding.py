"""The wire format of spans, chosen once per backend: span encoder, batch framing and content type together.

Like Envoy's one serializer per span buffer: the runtime picks an `Encoding` from the backend (Zipkin's
`apiVersion`, or OTLP for an OpenTelemetry backend) and hands the same value to the tracer (which encodes
each span once, when it closes) and to the reporter (which frames a batch and labels the request), so
the two can never disagree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sidecar.tracing import encode_json, encode_otlp, encode_proto
from sidecar.tracing.span import Span


@dataclass(frozen=True, slots=True)
class Encoding:
    api_version: str  # the backend's conf.apiVersion this stands for
    content_type: str
    encode_span: Callable[[Span], bytes]
    encode_batch: Callable[[Sequence[bytes]], bytes]


JSON = Encoding("httpJson", encode_json.CONTENT_TYPE, encode_json.encode_span, encode_json.encode_batch)
PROTO = Encoding("httpProto", encode_proto.CONTENT_TYPE, encode_proto.encode_span, encode_proto.encode_batch)
_BY_API_VERSION = {"httpJson": JSON, "httpJsonV1": JSON, "httpProto": PROTO}


def encoding_for(api_version: str) -> Encoding:
    """The encoding of a validated apiVersion (`httpJsonV1` is an alias of `httpJson`, as in Kuma)."""
    return _BY_API_VERSION[api_version]


@functools.lru_cache(maxsize=64)
def otlp_encoding(service: str) -> Encoding:
    """OTLP for the spans of one service: a batch is one ExportTraceServiceRequest whose resource says
    `service.name`. Cached, so the same service gets an equal Encoding (a reload keeps the reporter)."""
    return Encoding(
        "otlp",
        encode_otlp.CONTENT_TYPE,
        encode_otlp.encode_span,
        functools.partial(encode_otlp.encode_request, service),
    )
