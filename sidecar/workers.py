"""`sidecar run --workers N`: N forked processes share the listeners (SO_REUSEPORT); the parent serves
the one admin address, adds up the workers' counters, and forwards SIGTERM (drain) and SIGHUP (reload).

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
import sys
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web
from prometheus_client.core import Metric

from sidecar import __version__
from sidecar.admin.app import build_admin_app
from sidecar.admin.metrics import RuntimeCounters, metric_families
from sidecar.config import resolve
from sidecar.proxy.stats import ListenerStats
from sidecar.reporting.stats import ReporterStats
from sidecar.runtime import RunOptions, Runtime, export_state, loop_factory, serve, setup_logging

log = logging.getLogger("sidecar.workers")


def _child(options: RunOptions, conn: Connection) -> None:
    setup_logging()

    def send(runtime: Runtime) -> None:
        with contextlib.suppress(OSError, ValueError):  # the parent is gone; SIGTERM follows
            conn.send(export_state(runtime))

    def error(problems: list[str]) -> None:
        conn.send({"state": "failed", "problems": problems})

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        code = runner.run(serve(options, ready_message=False, on_tick=send, on_error=error))
    conn.close()
    os._exit(code)


class WorkersView:
    """The admin's view over every worker's last report."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.reports: dict[int, dict[str, Any]] = {}
        self.alive: set[int] = set(range(count))
        self.draining = False

    def ready(self) -> bool:
        return (
            not self.draining
            and len(self.alive) == self.count
            and all(self.reports.get(i, {}).get("state") == "live" for i in range(self.count))
        )

    def state(self) -> str:
        return "draining" if self.draining else ("live" if self.ready() else "starting")

    def config_dump(self) -> dict[str, Any]:
        for i in sorted(self.reports):
            snapshot = self.reports[i].get("snapshot")
            if snapshot:
                return dict(snapshot)
        return {}

    def metric_families(self) -> Iterable[Metric]:
        listeners: dict[str, ListenerStats] = {}
        reporter = ReporterStats()
        counters = RuntimeCounters()
        for report in self.reports.values():
            for raw in report.get("listeners", []):
                add = ListenerStats(**raw)
                total = listeners.setdefault(add.name, ListenerStats(add.name, add.direction))
                _sum_into(total, add)
            if report.get("reporter"):
                _sum_into(reporter, ReporterStats(**report["reporter"]))
            _sum_into(counters, RuntimeCounters(**report.get("counters", {})))
        snap = self.config_dump()
        info = {
            "version": __version__,
            "dataplane": str(snap.get("dataplane", "")),
            "mesh": str(snap.get("mesh", "")),
        }
        info["workers"] = str(self.count)
        return metric_families(
            listeners=[(s, name) for name, s in listeners.items()],
            reporter=reporter,
            counters=counters,
            ready=self.ready(),
            info=info,
        )


def _sum_into(total: Any, add: Any) -> None:
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


async def _supervise(
    options: RunOptions, children: list[tuple[multiprocessing.process.BaseProcess, Connection]]
) -> int:
    loop = asyncio.get_running_loop()
    view = WorkersView(len(children))
    failed: list[str] = []
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

    for i, (_, conn) in enumerate(children):
        loop.add_reader(conn.fileno(), readable, i, conn)
    admin = web.AppRunner(build_admin_app(view), access_log=None)
    await admin.setup()
    await web.TCPSite(admin, options.admin_host, options.admin_port).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def forward_hup() -> None:
        for process, _ in children:
            if process.pid and process.is_alive():
                os.kill(process.pid, signal.SIGHUP)

    loop.add_signal_handler(signal.SIGHUP, forward_hup)
    log.info(
        "sidecar %s: %d workers, admin %s:%d",
        __version__,
        len(children),
        options.admin_host,
        options.admin_port,
    )
    await stop.wait()
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
    await admin.cleanup()
    if failed:
        for problem in dict.fromkeys(failed):
            print(problem, file=sys.stderr)
        return 1
    if view.alive or any(p.exitcode not in (0, None) for p, _ in children):
        return 1 if any(p.exitcode not in (0, None, -signal.SIGKILL) for p, _ in children) else 0
    return 0


def run_workers(options: RunOptions, workers: int) -> int:
    # Resolve once up front so a bad config is reported once, not once per worker.
    snapshot, problems = resolve(options.config, options.dataplane, options.dataplane_file)
    if snapshot is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    setup_logging()
    ctx = multiprocessing.get_context("fork")  # before any event loop exists in this process
    child_options = dataclasses.replace(options, admin_port=-1, reuse_port=True)
    children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    for _ in range(workers):
        receiver, sender = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_child, args=(child_options, sender), name="sidecar-worker")
        process.start()
        sender.close()
        children.append((process, receiver))
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_supervise(options, children))
