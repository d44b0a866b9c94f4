"""The workers' parent view (sidecar/workers.py): counters added up, state, mutations told to every worker."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
from typing import Any

from sidecar.admin.view import DRAINING, LIVE, PRE_INITIALIZING
from sidecar.proxy.stats import ListenerStats
from sidecar.reporting.stats import ReporterStats
from sidecar.runtime import RunOptions
from sidecar.workers import WorkersView

SNAPSHOT = {
    "mesh": "default",
    "dataplane": "web-01",
    "inbound": [{"tags": {"kuma.io/service": "web"}}],
}


def report(state: str, requests: int, last_error: str = "") -> dict[str, Any]:
    stats = ListenerStats("inbound:127.0.0.1:10001", "inbound")
    for _ in range(requests):
        stats.record(200, 0.001, 0, 5, "-")
    stats.upstream_rq["127.0.0.1:8080"] = requests
    listener = {
        "name": stats.name,
        "direction": "inbound",
        "protocol": "http",
        "host": "127.0.0.1",
        "port": 10001,
        "cluster": "localhost:8080",
        "endpoints": ["127.0.0.1:8080"],
        "stats": dataclasses.asdict(stats),
        "draining": False,
        "current": True,
    }
    reporter = ReporterStats(spans_sent=requests, timer_flushed=1, last_error=last_error)
    return {
        "state": state,
        "snapshot": SNAPSHOT,
        "listeners": [listener],
        "reporter": dataclasses.asdict(reporter),
        "counters": {"reloads_ok": 1, "reloads_failed": 0},
    }


def view_with_pipes() -> tuple[WorkersView, list[Any]]:
    pairs = [multiprocessing.Pipe() for _ in range(2)]
    view = WorkersView(RunOptions(config=["c"], dataplane="web-01", workers=2), [a for a, _ in pairs])
    return view, [b for _, b in pairs]


def test_counters_of_every_worker_add_up() -> None:
    view, _ = view_with_pipes()
    view.reports = {0: report(LIVE, 2), 1: report(LIVE, 3, "HTTP 503")}
    stats = view.stats()
    [listener] = stats.listeners
    assert listener.stats.requests["2xx"] == 5 and listener.stats.upstream_rq == {"127.0.0.1:8080": 5}
    assert stats.reporter is not None and stats.reporter.spans_sent == 5 and stats.reporter.timer_flushed == 2
    assert stats.reporter.last_error == "HTTP 503"
    assert (stats.reloads_ok, stats.concurrency) == (2, 2)
    assert stats.build_info == {
        "version": stats.build_info["version"],
        "dataplane": "web-01",
        "mesh": "default",
        "workers": "2",
    }
    info = view.server_info()
    assert (info.node_id, info.node_cluster, info.command_line_options["concurrency"]) == (
        "default.web-01",
        "web",
        2,
    )


def test_state_is_live_only_when_every_worker_is() -> None:
    view, _ = view_with_pipes()
    assert view.state() == PRE_INITIALIZING
    view.reports = {0: report(LIVE, 0)}
    assert view.state() == PRE_INITIALIZING
    view.reports[1] = report(LIVE, 0)
    assert view.state() == LIVE
    view.set_health_failed(True)
    assert view.state() == DRAINING
    view.set_health_failed(False)
    assert view.state() == LIVE


async def test_mutations_are_told_to_every_worker() -> None:
    view, workers = view_with_pipes()
    view.reports = {0: report(LIVE, 0), 1: report(LIVE, 0)}
    await view.drain_listeners(graceful=True, inbound_only=False)
    assert view.state() == DRAINING
    for end in workers:
        assert end.recv() == {"command": "drain_listeners", "graceful": True, "inbound_only": False}
    before = logging.getLogger().level, logging.getLogger("sidecar").level
    try:
        view.set_log_level(logging.DEBUG)
        for end in workers:
            assert end.recv() == {"command": "log_level", "level": logging.DEBUG}
    finally:
        logging.getLogger().setLevel(before[0])
        logging.getLogger("sidecar").setLevel(before[1])


def test_the_reporters_protocol_survives_the_sum() -> None:
    view, _ = view_with_pipes()
    view.reports = {0: report(LIVE, 2), 1: report(LIVE, 3)}
    for r in view.reports.values():
        r["reporter"]["protocol"] = "otlp_grpc"
    stats = view.stats()
    assert stats.reporter is not None and stats.reporter.protocol == "otlp_grpc"
