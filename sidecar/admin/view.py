"""What the admin server sees of a running sidecar: a small Protocol and the plain data it returns.

The runtime (one process) and the workers' parent (N processes) both implement `AdminView`; the admin
layer never imports either of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

from sidecar import build_label
from sidecar.loop_lag import LagStats
from sidecar.proxy.stats import ListenerStats
from sidecar.reporting.stats import ReporterStats

# Envoy's server states (admin.v3.ServerInfo.State) as /ready and /server_info print them.
PRE_INITIALIZING = "PRE_INITIALIZING"
LIVE = "LIVE"
DRAINING = "DRAINING"


@dataclass(frozen=True, slots=True)
class ListenerInfo:
    """One listener as the admin shows it; `current` is False for listeners retired by a reload."""

    name: str  # Kuma's listener name: "inbound:127.0.0.1:10001"
    direction: str  # "inbound" | "outbound"
    protocol: str  # the kuma.io/protocol served: "http", "http2", "grpc", or "tcp" for a passthrough
    host: str
    port: int  # the bound port (differs from the configured one only when that was 0)
    cluster: str  # Kuma's cluster name: "localhost:8080" inbound, the service name outbound
    endpoints: tuple[str, ...]
    stats: ListenerStats
    draining: bool = False
    current: bool = True


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Every number /stats and /stats/prometheus render, read at scrape time."""

    listeners: list[ListenerInfo]
    reporter: ReporterStats | None  # None: no tracing backend, so no reporter
    reloads_ok: int
    reloads_failed: int
    state: str
    uptime_seconds: float
    concurrency: int  # worker processes
    build_info: dict[str, str]
    loop_lag: LagStats | None = None  # the event loop's lag (summed over workers; max is the max)

    @property
    def ready(self) -> bool:
        return self.state == LIVE


@dataclass(frozen=True, slots=True)
class ServerInfo:
    version: str
    state: str
    uptime_seconds: float
    node_id: str  # "<mesh>.<dataplane>", the span tag node_id
    node_cluster: str  # the dataplane's service name (localEndpoint.serviceName)
    command_line_options: dict[str, Any] = field(default_factory=dict)
    build: str = field(default_factory=build_label)  # "compiled" (mypyc) or "pure Python[: why]"


class AdminView(Protocol):
    def state(self) -> str: ...  # PRE_INITIALIZING | LIVE | DRAINING

    def config_dump(self) -> dict[str, Any]: ...

    def stats(self) -> StatsSnapshot: ...

    def server_info(self) -> ServerInfo: ...

    def set_health_failed(self, failed: bool) -> None: ...

    async def drain_listeners(self, graceful: bool, inbound_only: bool) -> None: ...

    def set_log_level(self, level: int) -> None: ...


def sum_into(total: Any, add: Any) -> None:
    """Add the counters of dataclass `add` to `total` (workers, retired listeners); strings and flags stay."""
    for f in dataclasses.fields(total):
        a, b = getattr(total, f.name), getattr(add, f.name)
        if isinstance(a, bool | str):
            continue
        if isinstance(a, int | float):
            setattr(total, f.name, a + b)
        elif isinstance(a, dict):
            for k, v in b.items():
                a[k] = a.get(k, 0) + v
        elif isinstance(a, list):
            setattr(total, f.name, [x + y for x, y in zip(a, b, strict=True)])


def merged_stats(listeners: list[ListenerInfo]) -> list[tuple[str, ListenerStats]]:
    """One ListenerStats per listener name and kind: a listener rebuilt by a reload keeps counting."""
    merged: dict[tuple[str, str], ListenerStats] = {}
    for info in listeners:
        key = (info.name, info.stats.direction)
        total = merged.get(key)
        if total is None:
            merged[key] = total = ListenerStats(info.name, info.stats.direction)
        sum_into(total, info.stats)
    return [(name, stats) for (name, _), stats in merged.items()]
