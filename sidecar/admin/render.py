"""The admin's documents as text and JSON, in Envoy's shapes: /stats, /clusters, /listeners, /server_info.

Pure functions of the view's plain data; the aiohttp handlers in `app.py` only pick one and answer.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric

from sidecar.admin.envoy_stats import Stat, envoy_stats
from sidecar.admin.metrics import metric_families
from sidecar.admin.view import ListenerInfo, ServerInfo, StatsSnapshot, sum_into
from sidecar.proxy.stats import ListenerStats


def _format_labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def family_stats(families: Iterable[Metric]) -> list[Stat]:
    """`name{labels}` and value of every sample but histogram buckets (those are for machines)."""
    out: list[Stat] = []
    for family in families:
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                continue
            value = sample.value
            out.append((f"{sample.name}{_format_labels(dict(sample.labels))}", value))
    return out


def all_stats(snapshot: StatsSnapshot) -> list[Stat]:
    """`sidecar_*` samples, Envoy-named stats and the reporter's last error (a text readout), sorted."""
    stats = family_stats(metric_families(snapshot)) + envoy_stats(snapshot)
    if snapshot.reporter is not None:
        stats.append(("sidecar_reporter_last_error", snapshot.reporter.last_error))
    return sorted(stats, key=lambda s: s[0])


def select(stats: list[Stat], pattern: re.Pattern[str] | None, used_only: bool) -> list[Stat]:
    """Envoy's `?filter=` (a regex searched in the name) and `?usedonly` (here: non-zero, non-empty)."""
    return [
        (name, value)
        for name, value in stats
        if (pattern is None or pattern.search(name)) and not (used_only and not value)
    ]


def _shown(value: int | float | str) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'  # a text readout
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def stats_text(stats: list[Stat]) -> str:
    return "".join(f"{name}: {_shown(value)}\n" for name, value in stats)


def stats_json(stats: list[Stat]) -> dict[str, Any]:
    def plain(value: int | float | str) -> int | float | str:
        return int(value) if isinstance(value, float) and value.is_integer() else value

    return {"stats": [{"name": name, "value": plain(value)} for name, value in stats]}


def select_families(
    families: Iterable[Metric], pattern: re.Pattern[str] | None, used_only: bool
) -> list[Metric]:
    """The same parameters for /stats/prometheus: a family is kept whole when its name or a sample's
    name matches (a histogram cut into pieces would not parse); `usedonly` drops zero samples of
    counters and gauges."""
    out: list[Metric] = []
    for family in families:
        names = [family.name, *(s.name for s in family.samples)]
        if pattern is not None and not any(pattern.search(n) for n in names):
            continue
        if used_only and family.type in ("counter", "gauge"):
            family.samples = [s for s in family.samples if s.value]
        if family.samples:
            out.append(family)
    return out


# /clusters -------------------------------------------------------------------------------------------
def _clusters(listeners: list[ListenerInfo]) -> dict[str, tuple[list[str], ListenerStats]]:
    """Cluster name -> (current endpoints, counters summed over every listener routing to it)."""
    out: dict[str, tuple[list[str], ListenerStats]] = {}
    for info in listeners:
        endpoints, total = out.setdefault(info.cluster, ([], ListenerStats(info.cluster, info.direction)))
        if info.current:
            endpoints.extend(e for e in info.endpoints if e not in endpoints)
        sum_into(total, info.stats)
    return dict(sorted(out.items()))


def _host_stats(stats: ListenerStats, endpoint: str) -> list[tuple[str, int]]:
    return [
        ("cx_connect_fail", stats.upstream_cx_connect_fail.get(endpoint, 0)),
        ("cx_total", stats.upstream_cx_total.get(endpoint, 0)),
        ("rq_error", stats.upstream_rq_error.get(endpoint, 0)),
        ("rq_total", stats.upstream_rq.get(endpoint, 0)),
    ]


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


def _hostname(host: str) -> str:
    """Envoy fills `hostname` for endpoints given by name (an ExternalService), not for IPs."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return ""


def clusters_text(listeners: list[ListenerInfo]) -> str:
    lines = []
    for name, (endpoints, stats) in _clusters(listeners).items():
        lines.append(f"{name}::added_via_api::false")
        for endpoint in endpoints:
            prefix = f"{name}::{endpoint}::"
            lines.extend(f"{prefix}{stat}::{value}" for stat, value in _host_stats(stats, endpoint))
            lines.append(f"{prefix}hostname::{_hostname(_split(endpoint)[0])}")
            lines.append(f"{prefix}health_flags::healthy")
            lines.append(f"{prefix}weight::1")
    return "".join(line + "\n" for line in lines)


def clusters_json(listeners: list[ListenerInfo]) -> dict[str, Any]:
    statuses = []
    for name, (endpoints, stats) in _clusters(listeners).items():
        hosts = []
        for endpoint in endpoints:
            host, port = _split(endpoint)
            hosts.append(
                {
                    "address": {"socket_address": {"address": host, "port_value": port}},
                    "stats": [
                        {"name": stat, "type": "COUNTER", "value": str(value)}
                        for stat, value in _host_stats(stats, endpoint)
                    ],
                    "health_status": {"eds_health_status": "HEALTHY"},
                    "weight": 1,
                    "hostname": _hostname(host),
                }
            )
        statuses.append({"name": name, "added_via_api": False, "host_statuses": hosts})
    return {"cluster_statuses": statuses}


# /listeners ------------------------------------------------------------------------------------------
def listeners_text(listeners: list[ListenerInfo]) -> str:
    return "".join(f"{i.name}::{i.host}:{i.port}\n" for i in listeners if i.current)


def listeners_json(listeners: list[ListenerInfo]) -> dict[str, Any]:
    return {
        "listener_statuses": [
            {"name": i.name, "local_address": {"socket_address": {"address": i.host, "port_value": i.port}}}
            for i in listeners
            if i.current
        ]
    }


# /server_info ----------------------------------------------------------------------------------------
def server_info_json(info: ServerInfo) -> dict[str, Any]:
    uptime = f"{int(info.uptime_seconds)}s"  # a proto3 JSON Duration, as Envoy prints it
    return {
        "version": info.version,
        "state": info.state,
        "uptime_current_epoch": uptime,
        "uptime_all_epochs": uptime,
        "hot_restart_version": "disabled",
        "command_line_options": info.command_line_options,
        "build": info.build,  # ours: which build of the hot path runs
        "node": {"id": info.node_id, "cluster": info.node_cluster, "user_agent_name": "kuma-trace-sidecar"},
    }
