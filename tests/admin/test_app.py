"""The admin app over a fake view: Envoy's paths, parameters, content types; POST-only mutations."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sidecar import build_label
from sidecar.admin.app import ENDPOINTS, build_admin_app
from sidecar.admin.view import DRAINING, LIVE, PRE_INITIALIZING, ListenerInfo, ServerInfo, StatsSnapshot
from sidecar.proxy.stats import ListenerStats
from sidecar.reporting.stats import ReporterStats

ClientFactory = Callable[..., Awaitable[TestClient]]


def listener(
    name: str, cluster: str, endpoints: tuple[str, ...], protocol: str = "http", **kw: Any
) -> ListenerInfo:
    direction, host, port = name.split(":")
    stats = ListenerStats(name, direction if protocol in ("http", "http2", "grpc") else "tcp")
    return ListenerInfo(name, direction, protocol, host, int(port), cluster, endpoints, stats, **kw)


class View:
    """A sidecar with an inbound (one 200), an outbound with two endpoints (one 503 UF), a TCP inbound,
    and an outbound retired by a reload whose counters still count."""

    def __init__(self) -> None:
        self.initialized = True
        self.health_failed = False
        self.drained: tuple[bool, bool] | None = None
        self.level: int | None = None
        self.inbound = listener("inbound:127.0.0.1:10001", "localhost:8080", ("127.0.0.1:8080",))
        self.inbound.stats.record(200, 0.003, 10, 20, "-")
        self.inbound.stats.connections_total = 1
        self.outbound = listener("outbound:127.0.0.1:10002", "backend", ("127.0.0.1:10021", "httpbin.org:80"))
        s = self.outbound.stats
        s.record(503, 0.2, 0, 19, "UF")
        s.upstream_rq.update({"127.0.0.1:10021": 2, "httpbin.org:80": 1})
        s.upstream_rq_error["127.0.0.1:10021"] = 1
        s.upstream_cx_total["127.0.0.1:10021"] = 1
        s.upstream_cx_connect_fail["127.0.0.1:10021"] = 1
        self.retired = listener(
            "outbound:127.0.0.1:10002", "backend", ("127.0.0.1:10021",), current=False, draining=True
        )
        self.retired.stats.upstream_rq["127.0.0.1:10021"] = 5
        self.tcp = listener("inbound:127.0.0.1:10003", "localhost:9000", ("127.0.0.1:9000",), protocol="tcp")
        self.tcp.stats.bytes_received = 42
        self.reporter = ReporterStats(spans_sent=7, reports_sent=2, reports_failed=1, timer_flushed=3)
        self.reporter.last_error = 'HTTP 503 "busy"'

    def state(self) -> str:
        if not self.initialized:
            return PRE_INITIALIZING
        return DRAINING if self.health_failed or self.drained else LIVE

    def config_dump(self) -> dict[str, Any]:
        return {"mesh": "default", "dataplane": "web-01"}

    def stats(self) -> StatsSnapshot:
        return StatsSnapshot(
            listeners=[self.inbound, self.outbound, self.tcp, self.retired],
            reporter=self.reporter,
            reloads_ok=1,
            reloads_failed=2,
            state=self.state(),
            uptime_seconds=12.5,
            concurrency=1,
            build_info={"version": "x"},
        )

    def server_info(self) -> ServerInfo:
        return ServerInfo("0.1.0", self.state(), 12.5, "default.web-01", "web", {"concurrency": 1})

    def set_health_failed(self, failed: bool) -> None:
        self.health_failed = failed

    async def drain_listeners(self, graceful: bool, inbound_only: bool) -> None:
        self.drained = (graceful, inbound_only)

    def set_log_level(self, level: int) -> None:
        self.level = level


@pytest.fixture
async def admin(aiohttp_client: ClientFactory) -> tuple[TestClient, View]:
    view = View()
    return await aiohttp_client(build_admin_app(view)), view


async def text(client: TestClient, path: str, status: int = 200, method: str = "GET") -> str:
    resp = await client.request(method, path)
    body = await resp.text()
    assert resp.status == status, (path, resp.status, body)
    return body


async def test_ready_says_the_state_with_envoys_names(admin: tuple[TestClient, View]) -> None:
    client, view = admin
    assert await text(client, "/ready") == "LIVE\n"
    view.initialized = False
    assert await text(client, "/ready", 503) == "PRE_INITIALIZING\n"


async def test_healthcheck_fail_and_ok_answer_post_only_and_ready_follows(
    admin: tuple[TestClient, View],
) -> None:
    client, view = admin
    resp = await client.get("/healthcheck/fail")
    assert resp.status == 405 and resp.headers["Allow"] == "POST" and not view.health_failed
    assert await text(client, "/healthcheck/fail", method="POST") == "OK\n"
    assert await text(client, "/ready", 503) == "DRAINING\n"
    assert (await client.get("/healthcheck/ok")).status == 405
    assert await text(client, "/healthcheck/ok", method="POST") == "OK\n"
    assert await text(client, "/ready") == "LIVE\n"


async def test_drain_listeners_post_only_with_graceful_and_inboundonly(
    admin: tuple[TestClient, View],
) -> None:
    client, view = admin
    assert (await client.get("/drain_listeners")).status == 405 and view.drained is None
    await text(client, "/drain_listeners", method="POST")
    assert view.drained == (False, False)
    await text(client, "/drain_listeners?graceful&inboundonly", method="POST")
    assert view.drained == (True, True)
    assert await text(client, "/ready", 503) == "DRAINING\n"


async def test_logging_sets_the_level_by_envoys_names(admin: tuple[TestClient, View]) -> None:
    client, view = admin
    assert (await client.get("/logging?level=debug")).status == 405 and view.level is None
    body = await text(client, "/logging?level=warn", method="POST")
    assert view.level == logging.WARNING and body.startswith("active loggers:\n")
    bad = await text(client, "/logging?level=verbose", 400, method="POST")
    assert "unknown log level 'verbose'; valid: trace, debug, info, warning, error, critical, off" in bad
    assert "unknown parameter 'paths'" in await text(client, "/logging?paths=a:debug", 400, method="POST")


async def test_stats_filter_is_a_regex_searched_in_names(admin: tuple[TestClient, View]) -> None:
    client, _ = admin
    body = await text(client, r"/stats?filter=^tracing\.zipkin\.")
    assert body.splitlines() == [
        "tracing.zipkin.reports_dropped: 0",
        "tracing.zipkin.reports_failed: 1",
        "tracing.zipkin.reports_sent: 2",
        "tracing.zipkin.reports_skipped_no_cluster: 0",
        "tracing.zipkin.spans_sent: 7",
        "tracing.zipkin.timer_flushed: 3",
    ]
    assert "invalid regex" in await text(client, "/stats?filter=(", 400)


async def test_stats_usedonly_hides_zero_values(admin: tuple[TestClient, View]) -> None:
    client, _ = admin
    body = await text(client, r"/stats?usedonly&filter=^tracing")
    assert body.splitlines() == [
        "tracing.zipkin.reports_failed: 1",
        "tracing.zipkin.reports_sent: 2",
        "tracing.zipkin.spans_sent: 7",
        "tracing.zipkin.timer_flushed: 3",
    ]


async def test_stats_json_and_prometheus_formats(admin: tuple[TestClient, View]) -> None:
    client, _ = admin
    resp = await client.get("/stats?format=json&filter=spans_sent|last_error")
    assert resp.content_type == "application/json"
    assert (await resp.json())["stats"] == [
        {"name": "sidecar_reporter_last_error", "value": 'HTTP 503 "busy"'},
        {"name": "sidecar_spans_sent_total", "value": 7},
        {"name": "tracing.zipkin.spans_sent", "value": 7},
    ]
    resp = await client.get("/stats?format=prometheus")
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "sidecar_spans_sent_total 7.0" in await resp.text()
    assert "unknown format 'xml'" in await text(client, "/stats?format=xml", 400)


async def test_stats_text_has_envoy_names_beside_sidecar_ones(admin: tuple[TestClient, View]) -> None:
    client, _ = admin
    lines = set((await text(client, "/stats")).splitlines())
    for line in (
        "http.localhost_8080.downstream_rq_2xx: 1",
        "http.localhost_8080.downstream_rq_total: 1",
        "http.localhost_8080.downstream_rq_completed: 1",
        "http.localhost_8080.downstream_cx_total: 1",
        "http.backend.downstream_rq_5xx: 1",
        "cluster.backend.upstream_rq_total: 8",  # 3 on the current listener + 5 on the retired one
        "cluster.backend.upstream_cx_connect_fail: 1",
        "cluster.backend.membership_total: 2",
        "cluster_manager.active_clusters: 3",
        "listener.127.0.0.1_10001.downstream_cx_total: 1",
        "listener_manager.total_listeners_active: 3",
        "tcp.localhost_9000.downstream_cx_rx_bytes_total: 42",
        "server.live: 1",
        "server.state: 0",
        "server.uptime: 12",
        "server.concurrency: 1",
        'sidecar_reporter_last_error: "HTTP 503 \\"busy\\""',
        "sidecar_reporter_timer_flushed_total: 3",
        'sidecar_local_replies_total{flag="UF",listener="outbound:127.0.0.1:10002"}: 1',
        'sidecar_config_reloads_total{result="failed"}: 2',
    ):
        assert line in lines, line
    assert not any("_bucket" in line for line in lines)


async def test_prometheus_endpoint_filters_whole_families(admin: tuple[TestClient, View]) -> None:
    client, _ = admin
    resp = await client.get("/stats/prometheus")
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
        "sidecar_build_info",
    ):
        assert name in families, name
    buckets = [s for s in families["sidecar_request_duration_seconds"].samples if s.name.endswith("_bucket")]
    assert [s.value for s in buckets if s.labels["le"] in ("0.005", "0.25", "+Inf")][:3] == [1, 1, 1]
    resp = await client.get("/stats/prometheus?filter=duration")
    assert {f.name for f in text_string_to_metric_families(await resp.text())} == {
        "sidecar_request_duration_seconds"
    }
    resp = await client.get("/stats/prometheus?usedonly&filter=sidecar_spans_dropped")
    assert [f.samples for f in text_string_to_metric_families(await resp.text())] == []


async def test_server_info_has_envoys_shape(admin: tuple[TestClient, View]) -> None:
    client, view = admin
    resp = await client.get("/server_info")
    assert resp.content_type == "application/json"
    info = await resp.json()
    assert info["version"] == "0.1.0" and info["state"] == "LIVE"
    assert info["uptime_current_epoch"] == info["uptime_all_epochs"] == "12s"
    assert info["command_line_options"] == {"concurrency": 1}
    assert info["build"] == build_label()
    assert info["node"]["id"] == "default.web-01" and info["node"]["cluster"] == "web"
    view.health_failed = True
    assert (await (await client.get("/server_info")).json())["state"] == "DRAINING"


async def test_listeners_text_and_json_show_current_listeners(admin: tuple[TestClient, View]) -> None:
    client, _ = admin
    assert (await text(client, "/listeners")).splitlines() == [
        "inbound:127.0.0.1:10001::127.0.0.1:10001",
        "outbound:127.0.0.1:10002::127.0.0.1:10002",
        "inbound:127.0.0.1:10003::127.0.0.1:10003",
    ]
    doc = await (await client.get("/listeners?format=json")).json()
    assert doc["listener_statuses"][0] == {
        "name": "inbound:127.0.0.1:10001",
        "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 10001}},
    }


async def test_clusters_list_endpoints_with_per_endpoint_counters(admin: tuple[TestClient, View]) -> None:
    client, _ = admin
    lines = (await text(client, "/clusters")).splitlines()
    backend = [line for line in lines if line.startswith("backend::")]
    assert backend == [
        "backend::added_via_api::false",
        "backend::127.0.0.1:10021::cx_connect_fail::1",
        "backend::127.0.0.1:10021::cx_total::1",
        "backend::127.0.0.1:10021::rq_error::1",
        "backend::127.0.0.1:10021::rq_total::7",  # 2 now + 5 before the reload
        "backend::127.0.0.1:10021::hostname::",
        "backend::127.0.0.1:10021::health_flags::healthy",
        "backend::127.0.0.1:10021::weight::1",
        "backend::httpbin.org:80::cx_connect_fail::0",
        "backend::httpbin.org:80::cx_total::0",
        "backend::httpbin.org:80::rq_error::0",
        "backend::httpbin.org:80::rq_total::1",
        "backend::httpbin.org:80::hostname::httpbin.org",
        "backend::httpbin.org:80::health_flags::healthy",
        "backend::httpbin.org:80::weight::1",
    ]
    assert "localhost:8080::127.0.0.1:8080::rq_total::0" in lines
    doc = await (await client.get("/clusters?format=json")).json()
    status = next(c for c in doc["cluster_statuses"] if c["name"] == "backend")
    host = status["host_statuses"][0]
    assert host["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": 10021}}
    assert {s["name"]: s["value"] for s in host["stats"]} == {
        "cx_connect_fail": "1",
        "cx_total": "1",
        "rq_error": "1",
        "rq_total": "7",
    }


async def test_help_lists_every_path_and_marks_posts(admin: tuple[TestClient, View]) -> None:
    client, _ = admin
    body = await text(client, "/help")
    assert body == await text(client, "/")
    for path, (method, _, params) in ENDPOINTS.items():
        post = " (POST)" if method == "POST" else ""
        assert re.search(f"^  {re.escape(path + post)}: ", body, re.M), path
        for name in params:
            assert f"      {name}: " in body


async def test_config_dump_is_json(admin: tuple[TestClient, View]) -> None:
    client, _ = admin
    resp = await client.get("/config_dump")
    assert resp.content_type == "application/json" and (await resp.json())["dataplane"] == "web-01"


async def test_stats_of_an_otlp_reporter_use_envoys_opentelemetry_names(
    admin: tuple[TestClient, View],
) -> None:
    client, view = admin
    view.reporter = ReporterStats(spans_sent=9, timer_flushed=2, reports_sent=1, reports_retried=3)
    view.reporter.protocol = "otlp_grpc"
    body = await text(client, r"/stats?filter=^tracing\.")
    assert body.splitlines() == [
        "tracing.opentelemetry.spans_sent: 9",
        "tracing.opentelemetry.timer_flushed: 2",
    ]
    lines = set((await text(client, "/stats?filter=^sidecar_re")).splitlines())
    assert 'sidecar_reporter_protocol{protocol="otlp_grpc"}: 1' in lines
    assert "sidecar_reports_retried_total: 3" in lines
    assert "sidecar_reports_sent_total: 1" in lines
