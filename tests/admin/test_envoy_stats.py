"""Envoy's stat names for every kind of listener: an HTTP/2 or gRPC listener is an HTTP connection
manager (`http.<prefix>.*`), only a passthrough is `tcp.<prefix>.*`."""

from __future__ import annotations

import pytest

from sidecar.admin.envoy_stats import envoy_stats
from sidecar.admin.view import LIVE, StatsSnapshot
from tests.admin.test_app import listener


@pytest.mark.parametrize("protocol", ["http", "http2", "grpc"])
def test_http2_and_grpc_listeners_have_http_connection_manager_stats(protocol: str) -> None:
    info = listener("inbound:127.0.0.1:10004", "localhost:9100", ("127.0.0.1:9100",), protocol=protocol)
    info.stats.record(200, 0.001, 5, 7, "-")
    info.stats.record(503, 0.001, 5, 7, "UF")
    info.stats.connections_total = 1
    snapshot = StatsSnapshot([info], None, 0, 0, LIVE, 1.0, 1, {})
    stats = dict(envoy_stats(snapshot))
    p = "http.localhost_9100."
    assert stats[p + "downstream_rq_2xx"] == 1
    assert stats[p + "downstream_rq_5xx"] == 1
    assert stats[p + "downstream_rq_total"] == 2
    assert stats[p + "downstream_cx_total"] == 1
    assert not [name for name in stats if name.startswith("tcp.")]


def test_a_passthrough_listener_has_tcp_stats_only() -> None:
    info = listener("inbound:127.0.0.1:10003", "localhost:9000", ("127.0.0.1:9000",), protocol="tcp")
    info.stats.bytes_received = 42
    stats = dict(envoy_stats(StatsSnapshot([info], None, 0, 0, LIVE, 1.0, 1, {})))
    assert stats["tcp.localhost_9000.downstream_cx_rx_bytes_total"] == 42
    assert not [name for name in stats if name.startswith("http.")]
