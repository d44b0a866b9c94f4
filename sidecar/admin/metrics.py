"""Prometheus metric families (`sidecar_*`) built at scrape time from a StatsSnapshot of plain counters."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from sidecar.admin.view import StatsSnapshot, merged_stats
from sidecar.loop_lag import LAG_BUCKETS
from sidecar.proxy.stats import DURATION_BUCKETS
from sidecar.reporting.stats import ReporterStats


def metric_families(snapshot: StatsSnapshot) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "sidecar_requests",
        "HTTP requests by listener, direction and status class",
        labels=["listener", "direction", "status_class"],
    )
    local = CounterMetricFamily(
        "sidecar_local_replies",
        "Responses the proxy made itself or cut, by Envoy response flag",
        labels=["listener", "flag"],
    )
    duration = HistogramMetricFamily(
        "sidecar_request_duration_seconds",
        "Request duration from request head to end of response",
        labels=["listener", "direction"],
    )
    conns_total = CounterMetricFamily(
        "sidecar_downstream_connections", "Downstream connections accepted", labels=["listener"]
    )
    conns_active = GaugeMetricFamily(
        "sidecar_downstream_connections_active", "Open downstream connections", labels=["listener"]
    )
    bytes_rx = CounterMetricFamily(
        "sidecar_request_body_bytes",
        "Request body bytes received (tcp: from the client)",
        labels=["listener"],
    )
    bytes_tx = CounterMetricFamily(
        "sidecar_response_body_bytes", "Response body bytes sent (tcp: to the client)", labels=["listener"]
    )
    streams = GaugeMetricFamily(
        "sidecar_http2_streams_active", "Open HTTP/2 streams from clients", labels=["listener"]
    )
    h2_errors = CounterMetricFamily(
        "sidecar_http2_protocol_errors",
        "HTTP/2 client connections ended with GOAWAY, by kind (bad preface, rapid reset, flood, ...)",
        labels=["listener", "kind"],
    )
    for name, stats in merged_stats(snapshot.listeners):
        for status_class, value in stats.requests.items():
            requests.add_metric([name, stats.direction, status_class], value)
        for flag, value in sorted(stats.local_replies.items()):
            local.add_metric([name, flag], value)
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), stats.duration_buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        duration.add_metric([name, stats.direction], buckets, stats.duration_sum)
        conns_total.add_metric([name], stats.connections_total)
        conns_active.add_metric([name], stats.connections_active)
        bytes_rx.add_metric([name], stats.bytes_received)
        bytes_tx.add_metric([name], stats.bytes_sent)
        streams.add_metric([name], stats.streams_active)
        for kind, value in sorted(stats.h2_errors.items()):
            h2_errors.add_metric([name, kind], value)
    yield from (requests, local, duration, conns_total, conns_active, bytes_rx, bytes_tx, streams, h2_errors)

    r = snapshot.reporter or ReporterStats()
    yield CounterMetricFamily(
        "sidecar_spans_created", "Spans closed and handed to the reporter", value=r.spans_received
    )
    yield CounterMetricFamily("sidecar_spans_sent", "Spans the collector accepted", value=r.spans_sent)
    dropped = CounterMetricFamily("sidecar_spans_dropped", "Spans lost, by reason", labels=["reason"])
    for reason, value in r.spans_dropped.items():
        dropped.add_metric([reason], value)
    yield dropped
    yield CounterMetricFamily(
        "sidecar_reports_sent",
        "Span reports (POSTs or gRPC calls) the collector accepted",
        value=r.reports_sent,
    )
    yield CounterMetricFamily(
        "sidecar_reports_failed",
        "Span report attempts with no answer, or an answer asking to retry",
        value=r.reports_failed,
    )
    yield CounterMetricFamily(
        "sidecar_reports_retried", "Span report attempts sent again after a failure", value=r.reports_retried
    )
    if snapshot.reporter is not None:
        info = GaugeMetricFamily(
            "sidecar_reporter_protocol",
            "1 for the wire protocol spans are reported with",
            labels=["protocol"],
        )
        info.add_metric([r.protocol], 1)
        yield info
    yield CounterMetricFamily("sidecar_reports_dropped", "Span batches given up", value=r.reports_dropped)
    yield CounterMetricFamily(
        "sidecar_reporter_timer_flushed",
        "Flushes started by the flush interval rather than a full batch",
        value=r.timer_flushed,
    )
    yield GaugeMetricFamily(
        "sidecar_reporter_buffer_spans", "Spans waiting in the reporter buffer", value=r.buffer_size
    )
    yield GaugeMetricFamily(
        "sidecar_reporter_buffer_capacity", "Reporter buffer capacity in spans", value=r.buffer_capacity
    )
    reloads = CounterMetricFamily("sidecar_config_reloads", "Configuration reloads", labels=["result"])
    reloads.add_metric(["ok"], snapshot.reloads_ok)
    reloads.add_metric(["failed"], snapshot.reloads_failed)
    yield reloads
    yield GaugeMetricFamily(
        "sidecar_ready", "1 when every listener is bound and not draining", value=1 if snapshot.ready else 0
    )
    if snapshot.loop_lag is not None:
        lag = snapshot.loop_lag
        cumulative = 0
        lag_buckets: list[tuple[str, float]] = []
        for bound, count in zip((*LAG_BUCKETS, float("inf")), lag.buckets, strict=True):
            cumulative += count
            lag_buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        histogram = HistogramMetricFamily(
            "sidecar_event_loop_lag_seconds", "How late a periodic callback ran: what every request waits"
        )
        histogram.add_metric([], lag_buckets, lag.total)
        yield histogram
        yield GaugeMetricFamily(
            "sidecar_event_loop_lag_max_seconds", "The largest event-loop lag seen since start", value=lag.max
        )
    build = InfoMetricFamily("sidecar_build", "Version and identity of this sidecar")
    build.add_metric([], snapshot.build_info)
    yield build
