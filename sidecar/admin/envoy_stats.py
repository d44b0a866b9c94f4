"""Envoy's stat names (`http.<prefix>.downstream_rq_2xx`, `tracing.zipkin.spans_sent`, ...) computed from the
same plain counters as the `sidecar_*` families, so an Envoy or Kuma user's queries carry over.

Prefixes follow Kuma's legacy (`kuma.io/service`) naming: an HTTP connection manager's stat prefix is its
cluster name made metric-safe (`localhost:8080` -> `localhost_8080` inbound, the service name outbound),
a listener's is `<address>_<port>`, a cluster's is its name made metric-safe.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from sidecar.admin.view import DRAINING, LIVE, PRE_INITIALIZING, ListenerInfo, StatsSnapshot, sum_into
from sidecar.proxy.stats import ListenerStats

Stat = tuple[str, int | float | str]

# Envoy's server.state gauge: the ServerInfo.State enum values.
_STATE_VALUE = {LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def metric_safe(name: str) -> str:
    """Kuma's SanitizeMetric: ':' and other characters a stat name cannot hold become '_'."""
    return _UNSAFE.sub("_", name)


def _merge_by(listeners: list[ListenerInfo], key: str) -> dict[str, ListenerStats]:
    out: dict[str, ListenerStats] = {}
    for info in listeners:
        name = getattr(info, key)
        total = out.get(name)
        if total is None:
            out[name] = total = ListenerStats(name, info.stats.direction)
        sum_into(total, info.stats)
    return out


def _connection_managers(snapshot: StatsSnapshot) -> Iterator[Stat]:
    # HTTP/2 and gRPC listeners are HTTP connection managers too: the listener's class (its stats'
    # direction) says how it proxies, whatever the kuma.io/protocol spelling.
    http = [i for i in snapshot.listeners if i.stats.direction != "tcp"]
    tcp = [i for i in snapshot.listeners if i.stats.direction == "tcp"]
    for cluster, s in sorted(_merge_by(http, "cluster").items()):
        p = f"http.{metric_safe(cluster)}."
        yield p + "downstream_cx_total", s.connections_total
        yield p + "downstream_cx_active", s.connections_active
        yield p + "downstream_rq_total", s.duration_count
        yield p + "downstream_rq_completed", sum(s.requests.values())
        for status_class, value in sorted(s.requests.items()):
            yield p + f"downstream_rq_{status_class}", value
        yield p + "dropped_headers_with_underscores", s.dropped_headers_with_underscores
        yield (
            p + "requests_rejected_with_underscores_in_headers",
            s.requests_rejected_with_underscores_in_headers,
        )
    for cluster, s in sorted(_merge_by(tcp, "cluster").items()):
        p = f"tcp.{metric_safe(cluster)}."
        yield p + "downstream_cx_total", s.connections_total
        yield p + "downstream_cx_rx_bytes_total", s.bytes_received
        yield p + "downstream_cx_tx_bytes_total", s.bytes_sent


def _listeners(snapshot: StatsSnapshot) -> Iterator[Stat]:
    by_address: dict[str, ListenerStats] = {}
    for info in snapshot.listeners:
        address = metric_safe(f"{info.host}_{info.port}")
        total = by_address.setdefault(address, ListenerStats(address, info.stats.direction))
        sum_into(total, info.stats)
    for address, s in sorted(by_address.items()):
        yield f"listener.{address}.downstream_cx_total", s.connections_total
        yield f"listener.{address}.downstream_cx_active", s.connections_active
    active = sum(1 for i in snapshot.listeners if i.current and not i.draining)
    yield "listener_manager.total_listeners_active", active


def _clusters(snapshot: StatsSnapshot) -> Iterator[Stat]:
    endpoints: dict[str, set[str]] = {}
    for info in snapshot.listeners:
        if info.current:
            endpoints.setdefault(info.cluster, set()).update(info.endpoints)
    for cluster, s in sorted(_merge_by(snapshot.listeners, "cluster").items()):
        p = f"cluster.{metric_safe(cluster)}."
        yield p + "membership_total", len(endpoints.get(cluster, ()))
        yield p + "upstream_cx_connect_fail", sum(s.upstream_cx_connect_fail.values())
        yield p + "upstream_cx_total", sum(s.upstream_cx_total.values())
        yield p + "upstream_cx_protocol_error", sum(s.upstream_cx_protocol_error.values())
        yield p + "upstream_rq_total", sum(s.upstream_rq.values())
    yield "cluster_manager.active_clusters", len(endpoints)


def _tracer(snapshot: StatsSnapshot) -> Iterator[Stat]:
    r = snapshot.reporter
    if r is None:  # Envoy has no zipkin tracer stats without a tracer either
        return
    if r.protocol != "zipkin":
        # Envoy's OpenTelemetry tracer counts only these two; the sidecar_* families have the rest.
        yield "tracing.opentelemetry.spans_sent", r.spans_sent
        yield "tracing.opentelemetry.timer_flushed", r.timer_flushed
        return
    p = "tracing.zipkin."
    yield p + "spans_sent", r.spans_sent
    yield p + "reports_sent", r.reports_sent
    yield p + "reports_dropped", r.reports_dropped
    yield p + "reports_failed", r.reports_failed
    yield p + "timer_flushed", r.timer_flushed
    # Envoy counts flushes skipped because the collector cluster is unknown; a backend here is a URL,
    # so there is never a cluster to miss. Kept at 0 so dashboards that read it find it.
    yield p + "reports_skipped_no_cluster", 0


def _server(snapshot: StatsSnapshot) -> Iterator[Stat]:
    yield "server.live", 1 if snapshot.state == LIVE else 0
    yield "server.state", _STATE_VALUE.get(snapshot.state, 2)
    yield "server.uptime", int(snapshot.uptime_seconds)
    yield "server.concurrency", snapshot.concurrency


def envoy_stats(snapshot: StatsSnapshot) -> list[Stat]:
    """Every Envoy-named stat, unsorted."""
    return [
        *_connection_managers(snapshot),
        *_listeners(snapshot),
        *_clusters(snapshot),
        *_tracer(snapshot),
        *_server(snapshot),
    ]
