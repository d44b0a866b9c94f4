"""The admin HTTP server (aiohttp) over an AdminView: Envoy's paths, query parameters and content types.

Reads are GET; mutations (/healthcheck/fail|ok, /drain_listeners, /logging) answer POST only.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from sidecar.admin import render
from sidecar.admin.levels import CHOICES, active_loggers, parse_level
from sidecar.admin.metrics import metric_families
from sidecar.admin.view import LIVE, AdminView

Handler = Callable[[web.Request], Awaitable[web.Response]]

# path -> (method, what it does, its query parameters), for /help and the router.
ENDPOINTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "/": ("GET", "this list", {}),
    "/help": ("GET", "this list", {}),
    "/ready": ("GET", "200 LIVE when serving; 503 PRE_INITIALIZING or DRAINING otherwise", {}),
    "/server_info": ("GET", "version, state, uptime, command line options, node (JSON)", {}),
    "/stats": (
        "GET",
        "every stat: sidecar_* and Envoy's names",
        {
            "filter": "regular expression searched in stat names",
            "usedonly": "only stats with a non-zero (non-empty) value",
            "format": "json or prometheus (default: text)",
        },
    ),
    "/stats/prometheus": (
        "GET",
        "sidecar_* metrics in Prometheus text format",
        {"filter": "regular expression searched in metric names", "usedonly": "only non-zero samples"},
    ),
    "/listeners": ("GET", "listeners and their bound addresses", {"format": "json (default: text)"}),
    "/clusters": ("GET", "upstream clusters, endpoints and per-endpoint counters", {"format": "json"}),
    "/config_dump": ("GET", "the resolved snapshot (the `sidecar inspect` JSON)", {}),
    "/healthcheck/fail": ("POST", "fail /ready (state DRAINING) without stopping traffic", {}),
    "/healthcheck/ok": ("POST", "undo /healthcheck/fail", {}),
    "/drain_listeners": (
        "POST",
        "stop accepting connections (in-flight requests carry on); /ready turns 503",
        {
            "graceful": "also close idle connections and cut the rest after --drain-grace",
            "inboundonly": "inbound listeners only",
        },
    ),
    "/logging": ("POST", "change the log level; lists the loggers", {"level": CHOICES}),
}


def help_text() -> str:
    lines = ["admin commands are:"]
    for path, (method, what, params) in ENDPOINTS.items():
        post = " (POST)" if method == "POST" else ""
        lines.append(f"  {path}{post}: {what}")
        lines.extend(f"      {name}: {doc}" for name, doc in params.items())
    return "\n".join(lines) + "\n"


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def _json(doc: object) -> web.Response:
    return web.Response(
        body=orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n", content_type="application/json"
    )


def _pattern(request: web.Request) -> re.Pattern[str] | None:
    raw = request.query.get("filter")
    if not raw:
        return None
    try:
        return re.compile(raw)
    except re.error as exc:
        raise web.HTTPBadRequest(text=f"invalid regex {raw!r}: {exc}\n") from None


def _format(request: web.Request, allowed: tuple[str, ...]) -> str:
    fmt = request.query.get("format", "text")
    if fmt not in allowed:
        raise web.HTTPBadRequest(text=f"unknown format {fmt!r}; valid: {', '.join(allowed)}\n")
    return fmt


def build_admin_app(view: AdminView) -> web.Application:
    async def ready(_: web.Request) -> web.Response:
        state = view.state()
        return web.Response(status=200 if state == LIVE else 503, text=state + "\n")

    def prometheus_body(request: web.Request) -> web.Response:
        families = render.select_families(
            metric_families(view.stats()), _pattern(request), "usedonly" in request.query
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stats(request: web.Request) -> web.Response:
        fmt = _format(request, ("text", "json", "prometheus"))
        if fmt == "prometheus":
            return prometheus_body(request)
        chosen = render.select(render.all_stats(view.stats()), _pattern(request), "usedonly" in request.query)
        if fmt == "json":
            return _json(render.stats_json(chosen))
        return web.Response(text=render.stats_text(chosen))

    async def prometheus(request: web.Request) -> web.Response:
        return prometheus_body(request)

    async def server_info(_: web.Request) -> web.Response:
        return _json(render.server_info_json(view.server_info()))

    async def listeners(request: web.Request) -> web.Response:
        infos = view.stats().listeners
        if _format(request, ("text", "json")) == "json":
            return _json(render.listeners_json(infos))
        return web.Response(text=render.listeners_text(infos))

    async def clusters(request: web.Request) -> web.Response:
        infos = view.stats().listeners
        if _format(request, ("text", "json")) == "json":
            return _json(render.clusters_json(infos))
        return web.Response(text=render.clusters_text(infos))

    async def config_dump(_: web.Request) -> web.Response:
        return _json(view.config_dump())

    async def help_(_: web.Request) -> web.Response:
        return web.Response(text=help_text())

    async def healthcheck_fail(_: web.Request) -> web.Response:
        view.set_health_failed(True)
        return web.Response(text="OK\n")

    async def healthcheck_ok(_: web.Request) -> web.Response:
        view.set_health_failed(False)
        return web.Response(text="OK\n")

    async def drain_listeners(request: web.Request) -> web.Response:
        await view.drain_listeners("graceful" in request.query, "inboundonly" in request.query)
        return web.Response(text="OK\n")

    async def logging_(request: web.Request) -> web.Response:
        unknown = set(request.query) - {"level"}
        if unknown:
            raise web.HTTPBadRequest(text=f"unknown parameter {sorted(unknown)[0]!r}; use level=LEVEL\n")
        if "level" in request.query:
            try:
                view.set_log_level(parse_level(request.query["level"]))
            except ValueError as exc:
                raise web.HTTPBadRequest(text=f"{exc}\n") from None
        return web.Response(text=active_loggers())

    handlers: dict[str, Handler] = {
        "/": help_,
        "/help": help_,
        "/ready": ready,
        "/server_info": server_info,
        "/stats": stats,
        "/stats/prometheus": prometheus,
        "/listeners": listeners,
        "/clusters": clusters,
        "/config_dump": config_dump,
        "/healthcheck/fail": healthcheck_fail,
        "/healthcheck/ok": healthcheck_ok,
        "/drain_listeners": drain_listeners,
        "/logging": logging_,
    }
    app = web.Application()
    for path, (method, _, _) in ENDPOINTS.items():
        # A mutation asked for with GET changes nothing: aiohttp answers 405 with `Allow: POST`.
        app.router.add_route(method, path, handlers[path])
    return app
