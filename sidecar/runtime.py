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
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from aiohttp import web
from prometheus_client.core import Metric

from sidecar import __version__
from sidecar.admin.app import build_admin_app
from sidecar.admin.metrics import RuntimeCounters, metric_families
from sidecar.config import resolve
from sidecar.config.snapshot import Snapshot
from sidecar.proxy import Listener, ProxySettings, Route, listener_class, start_listener
from sidecar.reporting import Reporter, ReporterSettings
from sidecar.tracing.decide import Tracer, TracerSettings
from sidecar.tracing.encoding import encoding_for

log = logging.getLogger("sidecar")

ListenerKey = tuple[str, str, int]


class StartupError(Exception):
    """The sidecar cannot start: each line of `problems` is for the user."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RunOptions:
    config: list[str]
    dataplane: str | None = None
    dataplane_file: str | None = None
    admin_host: str = "127.0.0.1"
    admin_port: int = 9901
    access_log: str | None = None  # a path, or "-" for stdout
    proxy: ProxySettings = field(default_factory=ProxySettings)
    reporter: ReporterSettings = field(default_factory=ReporterSettings)
    drain_grace: float = 10.0
    watch: bool = True
    reuse_port: bool = False


class AccessLog:
    """One JSON line per request; buffered writes, flushed by the runtime every second and at exit."""

    def __init__(self, target: str) -> None:
        self._out: IO[bytes] = sys.stdout.buffer if target == "-" else open(target, "ab")  # noqa: SIM115

    def __call__(self, record: dict[str, Any]) -> None:
        self._out.write(orjson.dumps(record) + b"\n")

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._out.flush()

    def close(self) -> None:
        self.flush()
        if self._out is not sys.stdout.buffer:
            self._out.close()


def _tracer_settings(snapshot: Snapshot) -> TracerSettings | None:
    b = snapshot.backend
    if b is None:
        return None
    return TracerSettings(
        sampling=b.sampling,
        trace_id_128bit=b.trace_id_128bit,
        shared_span_context=b.shared_span_context,
        encoding=encoding_for(b.api_version),
    )


class Runtime:
    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.snapshot: Snapshot | None = None
        self.listeners: dict[ListenerKey, Listener] = {}
        self.retired: list[Listener] = []  # drained after a reload, kept for their final stats
        self.reporter: Reporter | None = None
        self.counters = RuntimeCounters()
        self.access_log = AccessLog(options.access_log) if options.access_log else None
        self._state = "starting"
        self._admin: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reload_lock = asyncio.Lock()
        self._watch_paths = [p for p in [*options.config, options.dataplane_file] if p and Path(p).exists()]

    # AdminView ----------------------------------------------------------------------------------
    def ready(self) -> bool:
        return self._state == "live"

    def state(self) -> str:
        return self._state

    def config_dump(self) -> dict[str, Any]:
        return self.snapshot.to_json() if self.snapshot is not None else {}

    def metric_families(self) -> Iterable[Metric]:
        listeners = [*self.listeners.values(), *self.retired]
        return metric_families(
            listeners=[(lst.stats, lst.name) for lst in listeners],
            reporter=self.reporter.stats if self.reporter else None,
            counters=self.counters,
            ready=self.ready(),
            info={
                "version": __version__,
                "dataplane": self.snapshot.dataplane if self.snapshot else "",
                "mesh": self.snapshot.mesh if self.snapshot else "",
            },
        )

    # Life cycle ---------------------------------------------------------------------------------
    def resolve(self) -> Snapshot:
        snapshot, problems = resolve(self.options.config, self.options.dataplane, self.options.dataplane_file)
        if snapshot is None:
            raise StartupError(problems)
        return snapshot

    async def start(self) -> None:
        snapshot = self.resolve()
        await self.apply(snapshot)
        if self.options.admin_port >= 0:
            self._admin = web.AppRunner(build_admin_app(self), access_log=None)
            await self._admin.setup()
            await web.TCPSite(self._admin, self.options.admin_host, self.options.admin_port).start()
        self._spawn(self._flush_access_log())
        self._state = "live"

    @property
    def admin_address(self) -> tuple[str, int] | None:
        if self._admin is None:
            return None
        for site in self._admin.sites:
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                host, port = server.sockets[0].getsockname()[:2]
                return str(host), int(port)
        return None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_access_log(self) -> None:
        while self.access_log is not None:
            await asyncio.sleep(1.0)
            self.access_log.flush()

    async def _switch_reporter(self, snapshot: Snapshot) -> Reporter | None:
        backend = snapshot.backend
        current = self.reporter
        if backend is None:
            return None
        encoding = encoding_for(backend.api_version)
        if current is not None and current.url == backend.url and current.encoding == encoding:
            return current
        reporter = Reporter(backend.url, encoding, self.options.reporter)
        await reporter.start()
        return reporter

    def _routes(self, snapshot: Snapshot, reporter: Reporter | None) -> dict[ListenerKey, tuple[Route, str]]:
        tracer = Tracer(
            _tracer_settings(snapshot), service_name=snapshot.service_name, node_id=snapshot.node_id
        )
        sink: Callable[[bytes], None] | None = reporter.submit if reporter is not None else None
        routes: dict[ListenerKey, tuple[Route, str]] = {}
        for spec_in in snapshot.inbound:
            routes[("inbound", spec_in.address, spec_in.port)] = (
                Route.inbound(spec_in, tracer, sink, self.access_log),
                spec_in.protocol,
            )
        for spec_out in snapshot.outbound:
            routes[("outbound", spec_out.address, spec_out.port)] = (
                Route.outbound(spec_out, tracer, sink, self.access_log),
                spec_out.protocol,
            )
        return routes

    async def apply(self, snapshot: Snapshot) -> None:
        """Make the listeners and the reporter match `snapshot` (first start or reload)."""
        reporter = await self._switch_reporter(snapshot)
        routes = self._routes(snapshot, reporter)
        started: list[tuple[ListenerKey, Listener]] = []
        old_to_drain: list[Listener] = []
        try:
            for key, (route, protocol) in routes.items():
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
            raise StartupError([f"cannot listen: {exc}"]) from None
        # Everything is bound: swap atomically (no await between these lines).
        for key, listener in started:
            self.listeners[key] = listener
        for key, (route, _) in routes.items():
            self.listeners[key].route = route
        removed = [k for k in self.listeners if k not in routes]
        for key in removed:
            old_to_drain.append(self.listeners.pop(key))
        previous_reporter, self.reporter = self.reporter, reporter
        self.snapshot = snapshot
        for listener in old_to_drain:
            self.retired.append(listener)
            self._spawn(listener.drain(self.options.drain_grace))
        if previous_reporter is not None and previous_reporter is not reporter:
            # In-flight requests of the old routes may still submit; give them the drain grace.
            self._spawn(self._close_later(previous_reporter, self.options.drain_grace))

    async def _close_later(self, reporter: Reporter, delay: float) -> None:
        await asyncio.sleep(delay)
        await reporter.aclose(2.0)

    async def reload(self, reason: str = "") -> bool:
        async with self._reload_lock:
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

    async def shutdown(self) -> None:
        """Drain: /ready says 503, listeners stop accepting, in-flight requests finish, spans flushed."""
        self._state = "draining"
        listeners = list(self.listeners.values())
        await asyncio.gather(
            *(lst.drain(self.options.drain_grace) for lst in listeners), return_exceptions=True
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.reporter is not None:
            await self.reporter.aclose(2.0)
        if self.access_log is not None:
            self.access_log.close()
        if self._admin is not None:
            await self._admin.cleanup()


async def _ticker(runtime: Runtime, on_tick: Callable[[Runtime], None], every: float) -> None:
    while True:
        on_tick(runtime)
        await asyncio.sleep(every)


async def serve(
    options: RunOptions,
    ready_message: bool = True,
    on_tick: Callable[[Runtime], None] | None = None,
    on_error: Callable[[list[str]], None] | None = None,
) -> int:
    """Start, run until SIGTERM/SIGINT, drain. `on_tick` sees the runtime every half second (workers)."""
    runtime = Runtime(options)
    try:
        await runtime.start()
    except StartupError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        if on_error is not None:
            on_error(exc.problems)
        await runtime.shutdown()
        return 1
    if on_tick is not None:
        runtime._spawn(_ticker(runtime, on_tick, 0.5))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: runtime._spawn(runtime.reload(" (SIGHUP)")))
    if options.watch:
        runtime._spawn(runtime.watch())
    if ready_message:
        snap = runtime.snapshot
        assert snap is not None
        admin = runtime.admin_address
        listeners = ", ".join(f"{k[0]} {k[1]}:{k[2]}" for k in runtime.listeners)
        trace = f"traffic trace {snap.traffic_trace} -> {snap.backend.url}" if snap.backend else "no tracing"
        log.info(
            "sidecar %s for %s ready: %s; %s; admin %s", __version__, snap.dataplane, listeners, trace, admin
        )
    await stop.wait()
    log.info("draining (grace %.1fs)", options.drain_grace)
    await runtime.shutdown()
    if on_tick is not None:
        on_tick(runtime)
    return 0


def export_state(runtime: Runtime) -> dict[str, Any]:
    """Plain data for a parent process: state, snapshot and every counter."""
    return {
        "state": runtime.state(),
        "snapshot": runtime.config_dump(),
        "listeners": [
            dataclasses.asdict(lst.stats) for lst in [*runtime.listeners.values(), *runtime.retired]
        ],
        "reporter": dataclasses.asdict(runtime.reporter.stats) if runtime.reporter else None,
        "counters": dataclasses.asdict(runtime.counters),
    }


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("SIDECAR_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(options: RunOptions) -> int:
    """Run until SIGTERM/SIGINT; uvloop when installed."""
    setup_logging()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(serve(options))


__all__ = ["RunOptions", "Runtime", "StartupError", "run", "serve"]
