"""The proxy a Python user would write: aiohttp server + client, OpenTelemetry auto-instrumentation,
B3 propagation and the Zipkin JSON exporter with a batch processor. `naive_proxy.py PORT UPSTREAM URL`."""

from __future__ import annotations

import sys

from aiohttp import ClientSession, web
from opentelemetry import propagate, trace
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

port, upstream, collector = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
provider = TracerProvider(resource=Resource.create({"service.name": "naive"}))
provider.add_span_processor(BatchSpanProcessor(ZipkinExporter(endpoint=collector)))
trace.set_tracer_provider(provider)
propagate.set_global_textmap(B3MultiFormat())
AioHttpServerInstrumentor().instrument()
AioHttpClientInstrumentor().instrument()
HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "trailer",
    "host",
}


async def proxy(request: web.Request) -> web.StreamResponse:
    session: ClientSession = request.app["session"]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    async with session.request(
        request.method,
        f"http://127.0.0.1:{upstream}{request.path_qs}",
        headers=headers,
        data=await request.read(),
    ) as resp:
        body = await resp.read()
        out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP | {"content-length"}}
        return web.Response(status=resp.status, body=body, headers=out)


async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    app["session"] = ClientSession()
    yield
    await app["session"].close()
    provider.shutdown()


app = web.Application()
app.cleanup_ctx.append(session_ctx)
app.router.add_route("*", "/{tail:.*}", proxy)
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
