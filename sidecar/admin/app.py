"""The admin HTTP server (aiohttp): /ready, /stats, /stats/prometheus and /config_dump."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector


class AdminView(Protocol):
    """What the admin server may see of the runtime: read-only."""

    def ready(self) -> bool: ...

    def state(self) -> str: ...  # "starting" | "live" | "draining"

    def config_dump(self) -> dict[str, Any]: ...

    def metric_families(self) -> Iterable[Metric]: ...


class _ViewCollector(Collector):
    """Reads the runtime's counters at scrape time, so the data path only bumps plain integers."""

    def __init__(self, view: AdminView) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        yield from self._view.metric_families()


def _format_labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def render_stats_text(families: Iterable[Metric]) -> str:
    """Human-readable `name{labels}: value` lines, sorted, from the same families Prometheus gets."""
    lines = []
    for family in families:
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                continue  # buckets are for machines; _sum and _count stay
            value = sample.value
            shown = str(int(value)) if float(value).is_integer() else f"{value:.6g}"
            lines.append(f"{sample.name}{_format_labels(dict(sample.labels))}: {shown}")
    lines.sort()
    return "\n".join(lines) + "\n"


def build_admin_app(view: AdminView) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ViewCollector(view))

    async def ready(_: web.Request) -> web.Response:
        state = view.state()
        return web.Response(status=200 if view.ready() else 503, text=state.upper() + "\n")

    async def stats(_: web.Request) -> web.Response:
        return web.Response(text=render_stats_text(view.metric_families()))

    async def prometheus(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def config_dump(_: web.Request) -> web.Response:
        body = orjson.dumps(view.config_dump(), option=orjson.OPT_INDENT_2) + b"\n"
        return web.Response(body=body, content_type="application/json")

    async def index(_: web.Request) -> web.Response:
        return web.Response(text="sidecar admin: /ready /stats /stats/prometheus /config_dump\n")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/ready", ready)
    app.router.add_get("/stats", stats)
    app.router.add_get("/stats/prometheus", prometheus)
    app.router.add_get("/config_dump", config_dump)
    return app
