"""The demo's small aiohttp services: each answers, then calls the next service through its sidecar.

`python -m sidecar.demo.services NAME --port P [--next URL] [--collector URL] [--instrument KIND]`

Three ways an app takes part in tracing, one per demo service:
- `otel`: OpenTelemetry with the B3 propagator; its own SERVER and CLIENT spans go to the collector and
  join the sidecars' trace;
- `py_zipkin`: py_zipkin reads the B3 headers, records a span and passes its context on;
- `plain`: no tracing library; it forwards the incoming trace headers by hand, which is all a service
  behind a sidecar must do.
Every app forwards `x-request-id`, so the id stays the same at every hop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
from aiohttp import web

from sidecar.tracing.decide import TRACE_HEADER_NAMES

PROPAGATED = frozenset(name.decode() for name in TRACE_HEADER_NAMES)  # x-request-id and the B3 headers
Handler = Callable[[web.Request], Awaitable[web.Response]]


def forwarded(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() in PROPAGATED}


async def call_next(url: str | None, headers: dict[str, str]) -> Any:
    if not url:
        return None
    try:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
            text = await resp.text()
    except aiohttp.ClientError as exc:
        return {"status": 502, "error": str(exc)}
    try:
        return {"status": resp.status, "body": json.loads(text)}
    except ValueError:
        return {"status": resp.status, "body": text}


def plain_app(name: str, next_url: str | None) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        inner = await call_next(next_url, forwarded(request))
        return web.json_response({"service": name, "path": request.path, "next": inner})

    return _app(handle)


def otel_app(name: str, next_url: str | None, collector: str) -> web.Application:
    from opentelemetry import propagate, trace
    from opentelemetry.exporter.zipkin.json import ZipkinExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.propagators.b3 import B3MultiFormat
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"{name}-app"}))
    provider.add_span_processor(
        BatchSpanProcessor(ZipkinExporter(endpoint=collector), schedule_delay_millis=200)
    )
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(B3MultiFormat())
    AioHttpServerInstrumentor().instrument()
    AioHttpClientInstrumentor().instrument()
    tracer = trace.get_tracer("demo")

    async def handle(request: web.Request) -> web.Response:
        with tracer.start_as_current_span("render page"):
            # The instrumented client injects B3 for its own CLIENT span; x-request-id is ours to pass.
            headers = {k: v for k, v in forwarded(request).items() if k.lower() == "x-request-id"}
            inner = await call_next(next_url, headers)
        return web.json_response({"service": name, "path": request.path, "next": inner})

    async def on_shutdown(_: web.Application) -> None:
        provider.shutdown()

    app = _app(handle)
    app.on_shutdown.append(on_shutdown)
    return app


def py_zipkin_app(name: str, next_url: str | None, collector: str) -> web.Application:
    from py_zipkin.encoding._types import Encoding, Kind
    from py_zipkin.request_helpers import create_http_headers, extract_zipkin_attrs_from_headers
    from py_zipkin.transport import BaseTransportHandler
    from py_zipkin.zipkin import zipkin_span

    class Transport(BaseTransportHandler):
        def get_max_payload_bytes(self) -> None:
            return None

        def send(self, payload: bytes | str) -> None:
            data = payload.encode() if isinstance(payload, str) else payload
            headers = {"Content-Type": "application/json", "b3": "0"}
            req = urllib.request.Request(collector, data=data, headers=headers)
            with contextlib.suppress(OSError):  # app spans are best effort; requests never fail for them
                urllib.request.urlopen(req, timeout=2).close()

    async def handle(request: web.Request) -> web.Response:
        # py_zipkin looks headers up by their canonical names: hand it the case-insensitive mapping.
        attrs = extract_zipkin_attrs_from_headers(cast(dict[str, str], request.headers), sample_rate=0.0)
        with zipkin_span(
            service_name=f"{name}-app",
            span_name=f"{request.method} {request.path}",
            zipkin_attrs=attrs,
            transport_handler=Transport(),
            kind=Kind.SERVER,
            encoding=Encoding.V2_JSON,
        ) as span:
            headers = {k: v for k, v in forwarded(request).items() if k.lower() == "x-request-id"}
            # B3 of this app span: the sidecar's CLIENT span becomes its child.
            headers.update({k: v for k, v in create_http_headers().items() if v is not None})
            inner = await call_next(next_url, headers)
            span.update_binary_annotations({"demo.next_status": str(inner["status"]) if inner else "-"})
        return web.json_response({"service": name, "path": request.path, "next": inner})

    return _app(handle)


def _app(handle: Handler) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.demo.services", description=__doc__.split("\n")[0]
    )
    parser.add_argument("name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--next", dest="next_url", help="URL of the next service (through the sidecar's outbound)"
    )
    parser.add_argument("--collector", default="http://127.0.0.1:9411/api/v2/spans")
    parser.add_argument("--instrument", choices=("otel", "py_zipkin", "plain"), default="plain")
    args = parser.parse_args()
    if args.instrument == "otel":
        app = otel_app(args.name, args.next_url, args.collector)
    elif args.instrument == "py_zipkin":
        app = py_zipkin_app(args.name, args.next_url, args.collector)
    else:
        app = plain_app(args.name, args.next_url)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
