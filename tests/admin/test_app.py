"""The admin app over a fake runtime view: status codes, formats, readiness while draining."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from sidecar.admin.app import build_admin_app
from sidecar.admin.metrics import RuntimeCounters, metric_families
from sidecar.proxy.stats import ListenerStats

ClientFactory = Callable[..., Awaitable[TestClient]]


class View:
    def __init__(self) -> None:
        self.current = "live"

    def ready(self) -> bool:
        return self.current == "live"

    def state(self) -> str:
        return self.current

    def config_dump(self) -> dict[str, Any]:
        return {"mesh": "default", "dataplane": "web-01"}

    def metric_families(self) -> Iterable[Metric]:
        stats = ListenerStats("inbound:127.0.0.1:1", "inbound")
        stats.record(200, 0.003, 10, 20, "-")
        stats.record(503, 0.2, 0, 19, "UF")
        yield from metric_families(
            listeners=[(stats, stats.name)],
            reporter=None,
            counters=RuntimeCounters(1, 2),
            ready=self.ready(),
            info={"version": "x"},
        )
        yield CounterMetricFamily("sidecar_extra", "x", value=1)


async def test_ready_follows_state(aiohttp_client: ClientFactory) -> None:
    view = View()
    client = await aiohttp_client(build_admin_app(view))
    resp = await client.get("/ready")
    assert resp.status == 200 and (await resp.text()).strip() == "LIVE"
    view.current = "draining"
    resp = await client.get("/ready")
    assert resp.status == 503 and (await resp.text()).strip() == "DRAINING"


async def test_prometheus_text_and_human_stats(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(build_admin_app(View()))
    resp = await client.get("/stats/prometheus")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    for name in (
        "sidecar_requests",
        "sidecar_request_duration_seconds",
        "sidecar_local_replies",
        "sidecar_spans_created",
        "sidecar_spans_sent",
        "sidecar_spans_dropped",
        "sidecar_reports_sent",
        "sidecar_reports_failed",
        "sidecar_reporter_buffer_spans",
        "sidecar_config_reloads",
    ):
        assert name in families, name
    buckets = [s for s in families["sidecar_request_duration_seconds"].samples if s.name.endswith("_bucket")]
    assert [s.value for s in buckets if s.labels["le"] in ("0.005", "0.25", "+Inf")] == [1, 2, 2]
    text = await (await client.get("/stats")).text()
    assert 'sidecar_local_replies_total{flag="UF",listener="inbound:127.0.0.1:1"}: 1' in text
    assert 'sidecar_config_reloads_total{result="failed"}: 2' in text
    assert "_bucket" not in text


async def test_config_dump_is_json(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(build_admin_app(View()))
    resp = await client.get("/config_dump")
    assert resp.content_type == "application/json" and (await resp.json())["dataplane"] == "web-01"
