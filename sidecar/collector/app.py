"""A small Zipkin-compatible collector (aiohttp, in memory): POST spans (Zipkin v2, or OTLP/HTTP at
/v1/traces), query services and traces."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sidecar.collector.otlp import decode_export_request
from sidecar.collector.proto import DecodeError, decode_list_of_spans
from sidecar.collector.store import InvalidSpan, TraceStore, check_span, normalize_trace_id

STORE_KEY = web.AppKey("store", TraceStore)
MAX_BODY = 64 * 1024 * 1024


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _int(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer\n") from None


async def post_spans(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        if request.content_type == "application/x-protobuf":
            spans = decode_list_of_spans(body)
        else:
            spans = orjson.loads(body)
            if not isinstance(spans, list):
                raise InvalidSpan("the body must be a JSON array of spans")
        checked = [check_span(s) for s in spans]
    except (DecodeError, InvalidSpan, orjson.JSONDecodeError) as exc:
        return web.Response(status=400, text=f"{exc}\n")
    request.app[STORE_KEY].add(checked)
    return web.Response(status=202)


async def post_otlp(request: web.Request) -> web.Response:
    """OTLP/HTTP with a protobuf body; the answer is an empty ExportTraceServiceResponse (all accepted)."""
    if request.content_type != "application/x-protobuf":
        return web.Response(status=415, text="OTLP/HTTP here takes application/x-protobuf only\n")
    body = await request.read()
    try:
        spans = [check_span(s) for s in decode_export_request(body)]
    except (DecodeError, InvalidSpan) as exc:
        return web.Response(status=400, text=f"{exc}\n")
    request.app[STORE_KEY].add(spans)
    return web.Response(status=200, body=b"", content_type="application/x-protobuf")


async def services(request: web.Request) -> web.Response:
    return _json(request.app[STORE_KEY].services())


async def traces(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    found = store.traces(
        service_name=request.query.get("serviceName") or None,
        span_name=request.query.get("spanName") or None,
        end_ts_ms=_int(request, "endTs", None),
        lookback_ms=_int(request, "lookback", None),
        limit=_int(request, "limit", 10) or 10,
    )
    return _json(found)


async def trace(request: web.Request) -> web.Response:
    spans = request.app[STORE_KEY].trace(normalize_trace_id(request.match_info["trace_id"]))
    if spans is None:
        return web.Response(status=404, text="trace not found\n")
    return _json(spans)


async def stats(request: web.Request) -> web.Response:
    """Not part of Zipkin's API: counts for the benchmark and the demo."""
    store = request.app[STORE_KEY]
    return _json(
        {"spans": store.span_count, "accepted": store.accepted, "traces": len(store.traces(limit=10**9))}
    )


def build_collector_app(store: TraceStore | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[STORE_KEY] = store or TraceStore()
    app.router.add_post("/api/v2/spans", post_spans)
    app.router.add_post("/v1/traces", post_otlp)
    app.router.add_get("/api/v2/services", services)
    app.router.add_get("/api/v2/traces", traces)
    app.router.add_get("/api/v2/trace/{trace_id}", trace)
    app.router.add_get("/stats", stats)
    return app
