"""`sidecar run --workers N`: N forked processes share the listeners (SO_REUSEPORT); the parent serves
the one admin address, adds up the workers' counters, and forwards SIGTERM (drain), SIGHUP (reload) and
the admin's mutations (/drain_listeners, /logging) to every worker.

Each worker sends its state and counters to the parent over a pipe every half second, so /stats is at
most that stale; /ready is 200 only while every worker is live.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from sidecar import __version__, version_line
from sidecar.admin.levels import level_name, set_level
from sidecar.admin.server import AdminBindError, bind_admin, bound_address, start_admin
from sidecar.admin.view import (
    DRAINING,
    LIVE,
    PRE_INITIALIZING,
    ListenerInfo,
    ServerInfo,
    StatsSnapshot,
    sum_into,
)
from sidecar.config import resolve_dataplane
from sidecar.config.address import join_host_port
from sidecar.config.snapshot import tracing_line
from sidecar.loop_lag import LagStats
from sidecar.proxy.stats import ListenerStats
from sidecar.reporting.stats import ReporterStats
from sidecar.runtime import (
    DrainSummary,
    RunOptions,
    Runtime,
    RuntimeCounters,
    build_info,
    command_line_options,
)
from sidecar.serve import export_state, loop_factory, serve, setup_logging, summary_line

log = logging.getLogger("sidecar.workers")


def _child(options: RunOptions, conn: Connection, admin: socket.socket) -> None:
    admin.close()  # inherited from the parent by fork; only the parent serves it
    setup_logging(options.log_level)

    def send(runtime: Runtime) -> None:
        with contextlib.suppress(OSError, ValueError):  # the parent is gone; SIGTERM follows
            conn.send(export_state(runtime))

    def error(problems: list[str]) -> None:
        conn.send({"state": "failed", "problems": problems})

    def listen(runtime: Runtime) -> None:
        loop = asyncio.get_running_loop()

        def command() -> None:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                loop.remove_reader(conn.fileno())
                return
            if message.get("command") == "drain_listeners":
                runtime.spawn(runtime.drain_listeners(message["graceful"], message["inbound_only"]))
            elif message.get("command") == "log_level":
                set_level(message["level"])

        loop.add_reader(conn.fileno(), command)

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        code = runner.run(serve(options, ready_message=False, on_tick=send, on_error=error, on_start=listen))
    conn.close()
    os._exit(code)


def _ready_line(view: WorkersView, admin: tuple[str, int]) -> str:
    """The one-process ready line (serve.py), for N workers."""
    snap = view.config_dump()
    listeners = ", ".join(
        f"{i.direction} {join_host_port(i.host, i.port)}" for i in view.stats().listeners if i.current
    )
    backend = snap.get("backend")
    target = None
    if backend and backend.get("type") == "zipkin" and view.options.otlp_endpoint:
        target = f"{view.options.otlp_endpoint} (OTLP)"
    trace = tracing_line(snap, target)
    if backend:
        trace += f" (trace context {view.options.trace_context})"
    return (
        f"{version_line()} for {snap.get('dataplane')} ready: {listeners}; {trace}; "
        f"admin {join_host_port(*admin)} ({view.count} workers)"
    )


def _listener_info(raw: dict[str, Any]) -> ListenerInfo:
    fields = dict(raw, stats=ListenerStats(**raw["stats"]), endpoints=tuple(raw["endpoints"]))
    return ListenerInfo(**fields)


class WorkersView:
    """The admin's view over every worker's last report (implements AdminView)."""

    def __init__(self, options: RunOptions, conns: list[Connection]) -> None:
        self.options = options
        self.count = len(conns)
        self.conns = conns
        self.reports: dict[int, dict[str, Any]] = {}
        self.alive: set[int] = set(range(self.count))
        self.draining = False  # shutting down
        self.health_failed = False
        self.listeners_stopped = False
        self.started = time.monotonic()

    def _tell(self, message: dict[str, Any]) -> None:
        for i, conn in enumerate(self.conns):
            if i in self.alive:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(message)

    def state(self) -> str:
        live = len(self.alive) == self.count and all(
            self.reports.get(i, {}).get("state") in (LIVE, DRAINING) for i in range(self.count)
        )
        if not live and not self.draining:
            return PRE_INITIALIZING
        if self.draining or self.health_failed or self.listeners_stopped:
            return DRAINING
        if any(r.get("state") == DRAINING for r in self.reports.values()):
            return DRAINING
        return LIVE

    def config_dump(self) -> dict[str, Any]:
        for i in sorted(self.reports):
            snapshot = self.reports[i].get("snapshot")
            if snapshot:
                return dict(snapshot)
        return {}

    def stats(self) -> StatsSnapshot:
        listeners: dict[tuple[str, str, bool], ListenerInfo] = {}
        reporter: ReporterStats | None = None
        counters = RuntimeCounters()
        lag = LagStats()
        for report in self.reports.values():
            for raw in report.get("listeners", []):
                add = _listener_info(raw)
                key = (add.name, add.protocol, add.current)
                if key not in listeners:
                    listeners[key] = dataclasses.replace(
                        add, stats=ListenerStats(add.name, add.stats.direction)
                    )
                total = listeners[key]
                sum_into(total.stats, add.stats)
                if add.draining and not total.draining:
                    listeners[key] = dataclasses.replace(total, draining=True)
            if report.get("reporter"):
                one = ReporterStats(**report["reporter"])
                if reporter is None:
                    reporter = ReporterStats()
                sum_into(reporter, one)
                reporter.last_error = one.last_error or reporter.last_error
                reporter.protocol = one.protocol  # the same in every worker: one configuration
            sum_into(counters, RuntimeCounters(**report.get("counters", {})))
            if report.get("loop_lag"):
                one_lag = LagStats(**report["loop_lag"])
                top = max(lag.max, one_lag.max)
                sum_into(lag, one_lag)
                lag.max = top  # the worst worker's, not a sum
        return StatsSnapshot(
            listeners=list(listeners.values()),
            reporter=reporter,
            reloads_ok=counters.reloads_ok,
            reloads_failed=counters.reloads_failed,
            state=self.state(),
            uptime_seconds=time.monotonic() - self.started,
            concurrency=self.count,
            build_info=build_info(self.config_dump(), self.count),
            loop_lag=lag,
        )

    def server_info(self) -> ServerInfo:
        snap = self.config_dump()
        services = sorted(i["tags"].get("kuma.io/service", "") for i in snap.get("inbound", []))
        return ServerInfo(
            version=__version__,
            state=self.state(),
            uptime_seconds=time.monotonic() - self.started,
            node_id=f"{snap['mesh']}.{snap['dataplane']}" if snap else "",
            node_cluster=services[0] if services else "",
            command_line_options=command_line_options(self.options),
        )

    def set_health_failed(self, failed: bool) -> None:
        if failed != self.health_failed:
            log.warning("health check %s via the admin", "failed" if failed else "restored")
        self.health_failed = failed

    async def drain_listeners(self, graceful: bool, inbound_only: bool) -> None:
        self.listeners_stopped = True
        self._tell({"command": "drain_listeners", "graceful": graceful, "inbound_only": inbound_only})
        log.warning(
            "listeners of %d workers stopped via the admin%s", self.count, " (graceful)" if graceful else ""
        )

    def set_log_level(self, level: int) -> None:
        set_level(level)
        self._tell({"command": "log_level", "level": level})
        log.warning("log level set to %s via the admin", level_name(level))

    def summary(self) -> DrainSummary:
        total = DrainSummary()
        for report in self.reports.values():
            if report.get("summary"):
                total.add(DrainSummary(**report["summary"]))
        return total


async def _supervise(
    options: RunOptions,
    children: list[tuple[multiprocessing.process.BaseProcess, Connection]],
    admin_sock: socket.socket,
) -> int:
    loop = asyncio.get_running_loop()
    view = WorkersView(options, [conn for _, conn in children])
    failed: list[str] = []
    announced: list[bool] = []  # the ready line is said once, when every worker is live
    stop = asyncio.Event()

    def readable(i: int, conn: Connection) -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            view.alive.discard(i)
            if not view.draining:
                log.error("worker %d exited", i)
                if not view.alive:
                    stop.set()
            return
        if message.get("state") == "failed":
            failed.extend(message.get("problems", []))
            stop.set()
        view.reports[i] = message
        if not announced and view.state() == LIVE:
            announced.append(True)
            log.info("%s", _ready_line(view, bound_address(admin_sock)))

    for i, (_, conn) in enumerate(children):
        loop.add_reader(conn.fileno(), readable, i, conn)
    admin = await start_admin(view, admin_sock)

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            stop.set()
        elif sig == signal.SIGINT:  # a second Ctrl-C: no drain
            log.warning("second interrupt: exiting now without draining")
            for process, _ in children:
                if process.is_alive():
                    process.kill()
            os._exit(130)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    def forward_hup() -> None:
        for process, _ in children:
            if process.pid and process.is_alive():
                os.kill(process.pid, signal.SIGHUP)

    loop.add_signal_handler(signal.SIGHUP, forward_hup)
    await stop.wait()
    log.info(
        "draining %d workers (grace %gs; Ctrl-C again to exit at once)", len(children), options.drain_grace
    )
    view.draining = True
    for process, _ in children:
        if process.is_alive() and process.pid:
            os.kill(process.pid, signal.SIGTERM)
    deadline = loop.time() + options.drain_grace + 5.0
    while any(p.is_alive() for p, _ in children) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for process, _ in children:
        if process.is_alive():
            process.kill()
        process.join(1.0)
    # The workers' last reports arrived before they exited; read what is still in the pipes.
    for i, (_, conn) in enumerate(children):
        with contextlib.suppress(EOFError, OSError):
            while conn.poll():
                view.reports[i] = conn.recv()
    await admin.cleanup()
    if failed:
        for problem in dict.fromkeys(failed):
            print(problem, file=sys.stderr)
        return 1
    log.info("%s (%d workers)", summary_line(view.summary(), options.drain_grace), len(children))
    if view.alive or any(p.exitcode not in (0, None) for p, _ in children):
        return 1 if any(p.exitcode not in (0, None, -signal.SIGKILL) for p, _ in children) else 0
    return 0


def run_workers(options: RunOptions, workers: int) -> int:
    # Resolve once up front so a bad config is reported once, not once per worker.
    resolution = resolve_dataplane(options.config, options.dataplane, options.dataplane_file)
    if resolution.snapshot is None:
        for problem in resolution.problems:
            print(problem, file=sys.stderr)
        return 1
    setup_logging(options.log_level)
    for warning in resolution.warnings:
        log.warning("%s", warning)
    try:  # bound before forking: a busy admin port fails once, before any worker starts
        admin_sock = bind_admin(options.admin_host, options.admin_port)
    except AdminBindError as exc:
        print(exc, file=sys.stderr)
        return 1
    ctx = multiprocessing.get_context("fork")  # before any event loop exists in this process
    child_options = dataclasses.replace(options, admin_port=-1, reuse_port=True, workers=workers)
    children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    for _ in range(workers):
        parent_end, child_end = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=_child, args=(child_options, child_end, admin_sock), name="sidecar-worker"
        )
        process.start()
        child_end.close()
        children.append((process, parent_end))
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_supervise(dataclasses.replace(options, workers=workers), children, admin_sock))
