"""Wiring: snapshot → listeners + reporter + admin; hot reload; signals; graceful drain.

The runtime owns the only mutable state of a running sidecar: the live snapshot, the listeners keyed by
(direction, address, port), and the reporter of the current backend. A reload builds a new snapshot
first and touches nothing unless it is valid; then it swaps routes on kept listeners (in-flight requests
keep the route they started with), opens new listeners, drains removed ones, and switches reporters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from sidecar import __version__, loop_lag
from sidecar.admin.levels import level_name, set_level
from sidecar.admin.server import AdminBindError, bind_admin, bound_address, start_admin
from sidecar.admin.view import DRAINING, LIVE, PRE_INITIALIZING, ListenerInfo, ServerInfo, StatsSnapshot
from sidecar.config import resolve_dataplane
from sidecar.config.address import join_host_port
from sidecar.config.snapshot import Snapshot
from sidecar.proxy import Listener, ProxySettings, Route, listener_class, start_listener
from sidecar.proxy.access_log import AccessLog
from sidecar.proxy.h2_codec import codec_name, load_codec
from sidecar.reporting import Reporter, ReporterSettings, otlp_transport
from sidecar.tracing.custom_tags import TagRule
from sidecar.tracing.decide import Tracer, TracerSettings
from sidecar.tracing.encoding import Encoding, encoding_for, otlp_encoding

log = logging.getLogger("sidecar")

ListenerKey = tuple[str, str, int]


class StartupError(Exception):
    """The sidecar cannot start: each line of `problems` is for the user."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(slots=True)
class RuntimeCounters:
    reloads_ok: int = 0
    reloads_failed: int = 0


@dataclass(frozen=True)
class RunOptions:
    config: list[str]
    dataplane: str | None = None
    dataplane_file: str | None = None
    admin_host: str = "127.0.0.1"
    admin_port: int = 9901  # -1: no admin server (a worker; the parent serves it)
    access_log: str | None = None  # a path, or "-" for stdout
    proxy: ProxySettings = field(default_factory=ProxySettings)
    reporter: ReporterSettings = field(default_factory=ReporterSettings)
    drain_grace: float = 10.0
    watch: bool = True
    reuse_port: bool = False
    workers: int = 1
    log_level: str = "info"
    lag_probe_interval: float = 0.1  # seconds between event-loop lag probes (the benchmark uses 0.001)
    otlp_endpoint: str | None = None  # replaces a Zipkin backend's URL: host:port = OTLP/gRPC, URL = HTTP
    trace_context: str = "b3+w3c"  # propagation formats read and written (TracerSettings.trace_context)


def build_info(snapshot: Mapping[str, Any], workers: int) -> dict[str, str]:
    """The labels of `sidecar_build_info`, from the inspect JSON (one process or the workers' parent)."""
    return {
        "version": __version__,
        "dataplane": str(snapshot.get("dataplane", "")),
        "mesh": str(snapshot.get("mesh", "")),
        "workers": str(workers),
    }


def command_line_options(options: RunOptions) -> dict[str, Any]:
    """/server_info's command_line_options: Envoy's field names where the option means the same."""
    return {
        "config_path": list(options.config),
        "concurrency": options.workers,
        "drain_time": f"{options.drain_grace:g}s",
        "log_level": options.log_level,
        "dataplane": options.dataplane,
        "dataplane_file": options.dataplane_file,
        "admin_address": join_host_port(options.admin_host, options.admin_port),
        "access_log": options.access_log,
        "watch": options.watch,
        "proxy": dataclasses.asdict(options.proxy),
        "http2_codec_in_use": codec_name(options.proxy),
        "reporter": dataclasses.asdict(options.reporter),
        "otlp_endpoint": options.otlp_endpoint,
        "trace_context": options.trace_context,
    }


@dataclass(frozen=True, slots=True)
class Export:
    """Where and how the spans of a snapshot go: a Zipkin URL, or an OTLP endpoint and its protocol."""

    target: str
    protocol: str  # "zipkin", "http" (OTLP/HTTP) or "grpc" (OTLP/gRPC)
    encoding: Encoding

    @property
    def otlp(self) -> bool:
        return self.protocol != "zipkin"


def export_for(snapshot: Snapshot, otlp_endpoint: str | None = None) -> Export | None:
    """An OpenTelemetry backend exports OTLP to its endpoint; a Zipkin one posts Zipkin v2 to its URL,
    unless `otlp_endpoint` (--otlp-endpoint) replaces it. An OTLP endpoint that is an http(s) URL is
    OTLP/HTTP, `host:port` is OTLP/gRPC (a backend's own `protocol` says it when set)."""
    b = snapshot.backend
    if b is None:
        return None
    if b.type == "openTelemetry":
        endpoint, protocol = b.endpoint, b.protocol
    elif otlp_endpoint:
        endpoint, protocol = otlp_endpoint, ""
    else:
        return Export(b.url, "zipkin", encoding_for(b.api_version))
    protocol = protocol or ("http" if endpoint.startswith(("http://", "https://")) else "grpc")
    return Export(endpoint, protocol, otlp_encoding(snapshot.service_name))


def _tracer_settings(
    snapshot: Snapshot, export: Export | None, trace_context: str = "b3+w3c"
) -> TracerSettings | None:
    b = snapshot.backend
    if b is None or export is None:
        return None
    return TracerSettings(
        sampling=b.sampling,
        # OTLP: 128-bit trace ids for new traces from an OpenTelemetry backend (W3C's size), and no
        # shared span context (OTLP has none: the inbound SERVER span is a child with its own id).
        trace_id_128bit=b.trace_id_128bit or b.type == "openTelemetry",
        shared_span_context=b.shared_span_context and not export.otlp,
        encoding=export.encoding,
        client_sampling=b.client_sampling,
        random_sampling=b.random_sampling,
        tags=tuple(
            TagRule(t.name, t.literal, t.header.encode("latin-1") if t.header else None, t.default)
            for t in b.tags
        ),
        trace_context=trace_context,
    )


class Runtime:
    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.snapshot: Snapshot | None = None
        self.listeners: dict[ListenerKey, Listener] = {}
        self.retired: list[Listener] = []  # drained after a reload, kept for their final stats
        self.reporter: Reporter | None = None
        self.counters = RuntimeCounters()
        self.loop_lag = loop_lag.LagStats()
        self.access_log: AccessLog | None = None
        self.started = time.monotonic()
        self._initialized = False
        self._health_failed = False
        self._listeners_stopped = False  # POST /drain_listeners
        self._shutting_down = False
        self._admin: web.AppRunner | None = None
        self._admin_sock: socket.socket | None = None
        self._drains: dict[int, asyncio.Task[None]] = {}  # id(listener) -> its drain
        self._closed: set[int] = set()  # ids of listeners stopped by /drain_listeners
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reload_lock = asyncio.Lock()
        self.summary: DrainSummary | None = None  # set by shutdown
        self._watch_paths = [p for p in [*options.config, options.dataplane_file] if p and Path(p).exists()]

    # AdminView ----------------------------------------------------------------------------------
    def state(self) -> str:
        if not self._initialized:
            return PRE_INITIALIZING
        if self._health_failed or self._listeners_stopped or self._shutting_down:
            return DRAINING
        return LIVE

    def config_dump(self) -> dict[str, Any]:
        return self.snapshot.to_json() if self.snapshot is not None else {}

    def listener_infos(self) -> list[ListenerInfo]:
        def info(listener: Listener, current: bool) -> ListenerInfo:
            host, port = listener.bound if listener.serving else (listener.host, listener.port)
            route = listener.route
            return ListenerInfo(
                name=listener.name,
                direction=route.direction,
                protocol=listener.protocol,
                host=host,
                port=port,
                cluster=route.cluster,
                endpoints=tuple(e.key for e in route.endpoints),
                stats=listener.stats,
                draining=listener.draining or id(listener) in self._drains or id(listener) in self._closed,
                current=current,
            )

        return [info(lst, True) for lst in self.listeners.values()] + [
            info(lst, False) for lst in self.retired
        ]

    def stats(self) -> StatsSnapshot:
        return StatsSnapshot(
            listeners=self.listener_infos(),
            reporter=self.reporter.stats if self.reporter else None,
            reloads_ok=self.counters.reloads_ok,
            reloads_failed=self.counters.reloads_failed,
            state=self.state(),
            uptime_seconds=time.monotonic() - self.started,
            concurrency=self.options.workers,
            build_info=build_info(self.config_dump(), self.options.workers),
            loop_lag=self.loop_lag,
        )

    def server_info(self) -> ServerInfo:
        snap = self.snapshot
        return ServerInfo(
            version=__version__,
            state=self.state(),
            uptime_seconds=time.monotonic() - self.started,
            node_id=snap.node_id if snap else "",
            node_cluster=snap.service_name if snap else "",
            command_line_options=command_line_options(self.options),
        )

    def set_health_failed(self, failed: bool) -> None:
        if failed != self._health_failed:
            log.warning("health check %s via the admin", "failed" if failed else "restored")
        self._health_failed = failed

    async def drain_listeners(self, graceful: bool, inbound_only: bool) -> None:
        """Envoy's /drain_listeners: stop accepting now; `graceful` also drains connections."""
        self._listeners_stopped = True
        chosen = [lst for key, lst in self.listeners.items() if not inbound_only or key[0] == "inbound"]
        for listener in chosen:
            listener.close()  # now, not when the drain task first runs: the caller may connect next
            self._closed.add(id(listener))
            if graceful:
                self._drain(listener)
        log.warning(
            "%d listeners stopped via the admin%s", len(chosen), " (graceful drain)" if graceful else ""
        )

    def set_log_level(self, level: int) -> None:
        set_level(level)
        log.warning("log level set to %s via the admin", level_name(level))

    # Life cycle ---------------------------------------------------------------------------------
    def resolve(self, initial: bool = False) -> Snapshot:
        options = self.options
        resolution = resolve_dataplane(options.config, options.dataplane, options.dataplane_file)
        if resolution.snapshot is None:
            raise StartupError(resolution.problems)
        if not (initial and options.reuse_port):  # workers: the parent warned once at start
            for warning in resolution.warnings:
                log.warning("%s", warning)
        return resolution.snapshot

    async def start(self) -> None:
        """Resolve, open the admin (PRE_INITIALIZING), bind every listener, then LIVE."""
        snapshot = self.resolve(initial=True)
        load_codec(self.options.proxy)
        if self.options.access_log:
            try:
                self.access_log = AccessLog(self.options.access_log)
            except OSError as exc:
                raise StartupError(
                    [f"--access-log {self.options.access_log}: {exc.strerror or exc}"]
                ) from None
        if self.options.admin_port >= 0:
            try:
                self._admin_sock = bind_admin(self.options.admin_host, self.options.admin_port)
            except AdminBindError as exc:
                raise StartupError([str(exc)]) from None
            self._admin = await start_admin(self, self._admin_sock)
        await self.apply(snapshot)
        self.spawn(self._flush_access_log())
        self.spawn(loop_lag.probe(self.loop_lag, self.options.lag_probe_interval))
        self._initialized = True

    @property
    def admin_address(self) -> tuple[str, int] | None:
        return bound_address(self._admin_sock) if self._admin_sock is not None else None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` as a task the runtime keeps (and cancels on shutdown)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drain(self, listener: Listener) -> asyncio.Task[None]:
        task = self._drains.get(id(listener))
        if task is None:
            task = self._drains[id(listener)] = asyncio.create_task(listener.drain(self.options.drain_grace))
        return task

    async def _flush_access_log(self) -> None:
        while self.access_log is not None:
            await asyncio.sleep(1.0)
            self.access_log.flush()

    async def _switch_reporter(self, snapshot: Snapshot) -> Reporter | None:
        export = export_for(snapshot, self.options.otlp_endpoint)
        if export is None or snapshot.backend is None:
            return None
        settings = self.options.reporter
        transport = None
        if export.otlp:
            try:
                transport = otlp_transport(export.target, export.protocol, settings.request_timeout)
            except ValueError as exc:
                raise StartupError([f"tracing backend {snapshot.backend.name}: {exc}"]) from None
        target = transport.target if transport is not None else export.target
        protocol = transport.protocol if transport is not None else "zipkin"
        current = self.reporter
        if (
            current is not None
            and current.url == target
            and current.encoding == export.encoding
            and current.stats.protocol == protocol
        ):
            return current
        reporter = Reporter(export.target, export.encoding, settings, transport=transport)
        await reporter.start()
        return reporter

    def _routes(
        self, snapshot: Snapshot, reporter: Reporter | None
    ) -> dict[ListenerKey, tuple[Route, str, str]]:
        """Each listener's route, its protocol, and the Dataplane field that sets its address."""
        tracer = Tracer(
            _tracer_settings(
                snapshot, export_for(snapshot, self.options.otlp_endpoint), self.options.trace_context
            ),
            service_name=snapshot.service_name,
            node_id=snapshot.node_id,
        )
        sink: Callable[[bytes], None] | None = reporter.submit if reporter is not None else None
        routes: dict[ListenerKey, tuple[Route, str, str]] = {}
        for i, spec_in in enumerate(snapshot.inbound):
            routes[("inbound", spec_in.address, spec_in.port)] = (
                Route.inbound(spec_in, tracer, sink, self.access_log),
                spec_in.protocol,
                f"networking.inbound[{i}]",
            )
        for i, spec_out in enumerate(snapshot.outbound):
            routes[("outbound", spec_out.address, spec_out.port)] = (
                Route.outbound(spec_out, tracer, sink, self.access_log),
                spec_out.protocol,
                f"networking.outbound[{i}]",
            )
        return routes

    @staticmethod
    def _bind_problem(snapshot: Snapshot, key: ListenerKey, path: str, exc: OSError) -> str:
        """One line naming the listener and the field to change (issue: every user error is one line)."""
        direction, host, port = key
        where = f"{snapshot.dataplane} {direction} {join_host_port(host, port)}"
        of = f"of Dataplane {snapshot.dataplane}"
        if isinstance(exc, socket.gaierror):
            address = "networking.address" if direction == "inbound" else f"{path}.address"
            return f"{where}: cannot resolve {host!r} ({exc.strerror}); change {address} {of}"
        reason = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio wraps strerror in prose
        return f"{where}: cannot listen: {reason}; change {path}.port {of}"

    async def apply(self, snapshot: Snapshot) -> None:
        """Make the listeners and the reporter match `snapshot` (first start or reload)."""
        reporter = await self._switch_reporter(snapshot)
        routes = self._routes(snapshot, reporter)
        started: list[tuple[ListenerKey, Listener]] = []
        old_to_drain: list[Listener] = []
        key: ListenerKey | None = None
        try:
            for key, (route, protocol, _) in routes.items():
                existing = self.listeners.get(key)
                if existing is not None and type(existing) is listener_class(protocol):
                    continue
                if existing is not None:  # protocol changed: the port must be free before rebinding
                    existing.close()
                    old_to_drain.append(existing)
                direction, host, port = key
                listener = await start_listener(
                    f"{direction}:{host}:{port}",
                    direction,
                    host,
                    port,
                    route,
                    self.options.proxy,
                    protocol=protocol,
                    reuse_port=self.options.reuse_port,
                )
                started.append((key, listener))
        except OSError as exc:
            for _, listener in started:
                await listener.drain(0)
            for closed in old_to_drain:  # a failed reload leaves the old listeners as they were
                with contextlib.suppress(OSError):
                    await closed.start(reuse_port=self.options.reuse_port)
            if reporter is not None and reporter is not self.reporter:
                await reporter.aclose(0.1)
            assert key is not None
            raise StartupError([self._bind_problem(snapshot, key, routes[key][2], exc)]) from None
        # Everything is bound: swap atomically (no await between these lines).
        for key, listener in started:
            self.listeners[key] = listener
        for key, (route, _, _) in routes.items():
            self.listeners[key].route = route
        removed = [k for k in self.listeners if k not in routes]
        for key in removed:
            old_to_drain.append(self.listeners.pop(key))
        previous_reporter, self.reporter = self.reporter, reporter
        self.snapshot = snapshot
        for listener in old_to_drain:
            self.retired.append(listener)
            self._drain(listener)
        if previous_reporter is not None and previous_reporter is not reporter:
            # In-flight requests of the old routes may still submit; give them the drain grace.
            self.spawn(self._close_later(previous_reporter, self.options.drain_grace))

    async def _close_later(self, reporter: Reporter, delay: float) -> None:
        await asyncio.sleep(delay)
        await reporter.aclose(2.0)

    async def reload(self, reason: str = "") -> bool:
        async with self._reload_lock:
            if self._listeners_stopped or self._shutting_down:
                log.warning("reload%s skipped: the listeners are drained", reason)
                return False
            try:
                snapshot = self.resolve()
                if snapshot != self.snapshot:
                    await self.apply(snapshot)
            except StartupError as exc:
                self.counters.reloads_failed += 1
                log.error(
                    "reload%s rejected, keeping the running configuration:\n  %s",
                    reason,
                    "\n  ".join(exc.problems),
                )
                return False
            self.counters.reloads_ok += 1
            log.info("reload%s applied", reason)
            return True

    async def watch(self) -> None:
        """Reload when a file under --config (or the --dataplane-file) changes."""
        from watchfiles import awatch

        paths = self._watch_paths
        if not paths:
            return
        async for _ in awatch(*paths, debounce=200, step=50, recursive=True):
            await self.reload(" (files changed)")

    async def shutdown(self) -> DrainSummary:
        """Drain: /ready says 503, listeners stop accepting, in-flight requests finish, spans flushed."""
        self._shutting_down = True
        listeners = list(self.listeners.values())
        summary = DrainSummary(
            listeners=len(listeners), connections=sum(len(lst.connections) for lst in listeners)
        )
        began = time.monotonic()
        await asyncio.gather(*(self._drain(lst) for lst in listeners), return_exceptions=True)
        summary.seconds = time.monotonic() - began
        summary.grace_ran_out = bool(summary.connections) and summary.seconds >= self.options.drain_grace
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.reporter is not None:
            stats = self.reporter.stats
            sent, dropped = stats.spans_sent, stats.spans_dropped.get("shutdown", 0)
            await self.reporter.aclose(2.0)
            summary.spans_flushed = stats.spans_sent - sent
            summary.spans_dropped = stats.spans_dropped.get("shutdown", 0) - dropped
            summary.backend = self.reporter.url
        if self.access_log is not None:
            self.access_log.close()
            summary.access_log_lines = self.access_log.lines
        if self._admin is not None:
            await self._admin.cleanup()
        elif self._admin_sock is not None:
            self._admin_sock.close()
        self.summary = summary
        return summary


@dataclass(slots=True)
class DrainSummary:
    """What a shutdown drained and flushed; workers add theirs up for the parent's final line."""

    listeners: int = 0
    connections: int = 0  # open when the drain began (idle keep-alive ones included)
    seconds: float = 0.0
    grace_ran_out: bool = False  # some connections were still open at the deadline and were cut
    spans_flushed: int = 0
    spans_dropped: int = 0
    backend: str = ""
    access_log_lines: int | None = None

    def add(self, other: DrainSummary) -> None:
        self.listeners += other.listeners
        self.connections += other.connections
        self.seconds = max(self.seconds, other.seconds)
        self.grace_ran_out = self.grace_ran_out or other.grace_ran_out
        self.spans_flushed += other.spans_flushed
        self.spans_dropped += other.spans_dropped
        self.backend = self.backend or other.backend
        if other.access_log_lines is not None:
            self.access_log_lines = (self.access_log_lines or 0) + other.access_log_lines


__all__ = [
    "DrainSummary",
    "Export",
    "RunOptions",
    "Runtime",
    "RuntimeCounters",
    "StartupError",
    "build_info",
    "command_line_options",
    "export_for",
]
