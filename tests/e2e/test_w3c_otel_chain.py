"""Apps on OpenTelemetry's default propagators (W3C tracecontext + baggage, no B3 package) behind sidecars.

client → web's sidecar (SERVER) → web app (SERVER, then CLIENT) → web's sidecar (CLIENT) → backend's
sidecar (SERVER) → backend app (SERVER): every span, the apps' and the sidecars', is in one trace, each
the child of the one before it. The apps are instrumented by hand with the OpenTelemetry SDK (the API
calls an auto-instrumentation makes: extract, a SERVER span, a CLIENT span, inject) and export in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tests.e2e.topology import Topology

# What an SDK uses when OTEL_PROPAGATORS is unset ("tracecontext,baggage"). Built here rather than read
# from the global, which another test in this process may have set to B3.
DEFAULT_PROPAGATORS = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class OtelApp:
    def __init__(self, service: str) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer(service)
        self.seen: list[dict[str, str]] = []

    def spans(self) -> dict[str, ReadableSpan]:
        return {s.name: s for s in self.exporter.get_finished_spans()}


class OtelTopology(Topology):
    """The e2e topology with OpenTelemetry apps in place of the header-copying ones."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.otel_web, self.otel_backend = OtelApp("web"), OtelApp("backend")

    async def _web_handler(self, request: web.Request) -> web.Response:
        app = self.otel_web
        app.seen.append({k.lower(): v for k, v in request.headers.items()})
        # As an auto-instrumentation does: the extracted context (trace and baggage) becomes current.
        token = otel_context.attach(DEFAULT_PROPAGATORS.extract(dict(request.headers)))
        try:
            with (
                app.tracer.start_as_current_span("web handle", kind=trace.SpanKind.SERVER),
                app.tracer.start_as_current_span("web call backend", kind=trace.SpanKind.CLIENT),
            ):
                headers: dict[str, str] = {}
                DEFAULT_PROPAGATORS.inject(headers)
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{self.web_out}/data", headers=headers) as resp,
                ):
                    body = await resp.text()
        finally:
            otel_context.detach(token)
        return web.Response(status=resp.status, text=f"web<-{body}")

    async def _backend_handler(self, request: web.Request) -> web.Response:
        app = self.otel_backend
        app.seen.append({k.lower(): v for k, v in request.headers.items()})
        parent = DEFAULT_PROPAGATORS.extract(dict(request.headers))
        with app.tracer.start_as_current_span("backend handle", context=parent, kind=trace.SpanKind.SERVER):
            return web.Response(text="backend")


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def by_kind(spans: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["localEndpoint"]["serviceName"], s["kind"]): s for s in spans}


@pytest.mark.parametrize("caller", ["none", "w3c"])
async def test_otel_default_apps_and_sidecars_make_one_trace(tmp_path: Path, caller: str) -> None:
    topo = OtelTopology(tmp_path)
    try:
        await topo.start()
        headers = {"baggage": "tenant=acme"}
        if caller == "w3c":  # an instrumented client: its trace goes on, with its tracestate and flags
            headers |= {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-03", "tracestate": "vendor=x1"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{topo.web_in}/hello", headers=headers) as resp,
        ):
            assert resp.status == 200 and await resp.text() == "web<-backend"

        web_spans, backend_spans = topo.otel_web.spans(), topo.otel_backend.spans()
        app_server, app_client = web_spans["web handle"], web_spans["web call backend"]
        backend_server = backend_spans["backend handle"]
        assert app_server.context is not None and app_client.context is not None
        assert backend_server.context is not None
        trace_int = app_server.context.trace_id
        # The sidecar's ids are 64-bit for a trace it starts (traceId128bit: false), the client's 128.
        trace_id = CLIENT_TRACE if caller == "w3c" else _hex(trace_int, 16)
        assert int(trace_id, 16) == trace_int
        sidecar_spans = by_kind(await topo.trace(trace_id, 3))
        web_server = sidecar_spans["web", "SERVER"]
        web_client = sidecar_spans["web", "CLIENT"]
        remote_server = sidecar_spans["backend", "SERVER"]

        # One trace: every app span has the sidecars' trace id.
        assert {s.context.trace_id for s in (app_server, app_client, backend_server) if s.context} == {
            trace_int
        }
        # Parents in order.
        if caller == "w3c":
            assert web_server["parentId"] == CLIENT_SPAN and "shared" not in web_server  # W3C: a child
        else:
            assert "parentId" not in web_server
        assert app_server.parent is not None and _hex(app_server.parent.span_id, 16) == web_server["id"]
        assert app_client.parent is not None and app_client.parent.span_id == app_server.context.span_id
        assert web_client["parentId"] == _hex(app_client.context.span_id, 16)
        # backend's sidecar gets B3 and traceparent from web's: B3 wins, the SERVER span is shared.
        assert remote_server["id"] == web_client["id"] and remote_server.get("shared") is True
        assert (
            backend_server.parent is not None and _hex(backend_server.parent.span_id, 16) == web_client["id"]
        )

        # What the apps received: one traceparent naming the sidecar's span, B3 beside it, baggage as sent.
        web_seen, backend_seen = topo.otel_web.seen[0], topo.otel_backend.seen[0]
        padded = trace_id.rjust(32, "0")
        flags = "03" if caller == "w3c" else "01"
        assert web_seen["traceparent"] == f"00-{padded}-{web_server['id']}-{flags}"
        assert web_seen["x-b3-traceid"] == trace_id and web_seen["x-b3-spanid"] == web_server["id"]
        assert backend_seen["traceparent"].split("-")[1:3] == [padded, web_client["id"]]
        assert web_seen["baggage"] == "tenant=acme" and backend_seen["baggage"] == "tenant=acme"
        if caller == "w3c":
            assert web_seen["tracestate"] == "vendor=x1"
        else:
            assert "tracestate" not in web_seen
    finally:
        await topo.stop()


async def test_b3_mode_leaves_otel_default_apps_in_traces_of_their_own(tmp_path: Path) -> None:
    """Kuma's exact behaviour (--trace-context b3): the app's spans do not join the sidecar's trace."""
    topo = OtelTopology(tmp_path)
    try:
        await topo.start("--trace-context", "b3")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{topo.web_in}/hello") as resp,
        ):
            assert resp.status == 200
        web_seen = topo.otel_web.seen[0]
        assert "traceparent" not in web_seen and "x-b3-traceid" in web_seen
        app_server = topo.otel_web.spans()["web handle"]
        assert app_server.context is not None and app_server.parent is None  # a root: a second trace
        assert _hex(app_server.context.trace_id, 32) != web_seen["x-b3-traceid"].rjust(32, "0")
        backend_seen = topo.otel_backend.seen[0]
        assert backend_seen["traceparent"].split("-")[1] == _hex(app_server.context.trace_id, 32)
        assert backend_seen["x-b3-traceid"] != web_seen["x-b3-traceid"]  # and the outbound sidecar a third
    finally:
        await topo.stop()
