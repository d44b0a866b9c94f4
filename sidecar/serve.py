"""One sidecar process: logging, the event loop, signals, the ready line and the final line.

`serve` runs a Runtime until SIGTERM/SIGINT (SIGHUP reloads; a second Ctrl-C exits without draining);
`export_state` is what a worker reports to the parent of `--workers N`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from sidecar import version_line
from sidecar.admin.levels import parse_level, set_level
from sidecar.config.address import join_host_port
from sidecar.config.snapshot import tracing_line
from sidecar.runtime import DrainSummary, RunOptions, Runtime, StartupError

log = logging.getLogger("sidecar")


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary_line(summary: DrainSummary, grace: float) -> str:
    """The final line: what was drained and flushed."""
    listeners = _count(summary.listeners, "listener")
    connections = _count(summary.connections, "open connection")
    if not summary.connections:
        drained = f"drained {listeners} (no open connections)"
    elif summary.grace_ran_out:
        drained = f"drained {listeners} ({connections}; the {grace:g}s grace ran out and the rest were cut)"
    else:
        drained = f"drained {listeners} ({connections} closed in {summary.seconds:.1f}s)"
    if not summary.backend:
        flushed = "; no tracing backend"
    elif not summary.spans_flushed and not summary.spans_dropped:
        flushed = f"; every span was already sent to {summary.backend}"
    else:
        flushed = f"; flushed {_count(summary.spans_flushed, 'span')} to {summary.backend}"
        if summary.spans_dropped:
            flushed += f" ({summary.spans_dropped} dropped)"
    logged = (
        f"; access log: {_count(summary.access_log_lines, 'line')}"
        if summary.access_log_lines is not None
        else ""
    )
    return f"stopped: {drained}{flushed}{logged}"


_WIRE = {"otlp_http": " (OTLP/HTTP)", "otlp_grpc": " (OTLP/gRPC)"}  # Zipkin: the URL says it


def _ready_line(runtime: Runtime) -> str:
    snap = runtime.snapshot
    assert snap is not None
    listeners = ", ".join(f"{k[0]} {join_host_port(k[1], k[2])}" for k in runtime.listeners)
    reporter = runtime.reporter
    # The reporter's own target: --otlp-endpoint may have replaced the backend's URL.
    target = reporter.url if reporter is not None else None
    wire = (
        {"otlp_http": " (OTLP/HTTP)", "otlp_grpc": " (OTLP/gRPC)"}.get(reporter.stats.protocol, "")
        if reporter
        else ""
    )
    trace = tracing_line(snap.to_json(), target, wire)
    if snap.backend:
        trace += f" (trace context {runtime.options.trace_context})"
    admin = runtime.admin_address
    where = join_host_port(*admin) if admin else "off"
    return f"{version_line()} for {snap.dataplane} ready: {listeners}; {trace}; admin {where}"


async def _ticker(runtime: Runtime, on_tick: Callable[[Runtime], None], every: float) -> None:
    while True:
        on_tick(runtime)
        await asyncio.sleep(every)


async def serve(
    options: RunOptions,
    ready_message: bool = True,
    on_tick: Callable[[Runtime], None] | None = None,
    on_error: Callable[[list[str]], None] | None = None,
    on_start: Callable[[Runtime], None] | None = None,
) -> int:
    """Start, run until SIGTERM/SIGINT, drain. `on_tick` sees the runtime every half second and
    `on_start` once it is live (workers); a second SIGINT exits at once without draining."""
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
        runtime.spawn(_ticker(runtime, on_tick, 0.5))
    if on_start is not None:
        on_start(runtime)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            stop.set()
        elif sig == signal.SIGINT:
            log.warning("second interrupt: exiting now without draining")
            if runtime.access_log is not None:
                runtime.access_log.flush()
            os._exit(130)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, lambda: runtime.spawn(runtime.reload(" (SIGHUP)")))
    if options.watch:
        runtime.spawn(runtime.watch())
    if ready_message:
        log.info("%s", _ready_line(runtime))
    await stop.wait()
    if ready_message:  # a worker: its parent says it once
        log.info("draining (grace %gs; Ctrl-C again to exit at once)", options.drain_grace)
    summary = await runtime.shutdown()
    if on_tick is not None:
        on_tick(runtime)  # the last report carries the summary
    if ready_message:
        log.info("%s", summary_line(summary, options.drain_grace))
    return 0


def export_state(runtime: Runtime) -> dict[str, Any]:
    """Plain data for a parent process: state, snapshot, listeners and every counter."""
    listeners = []
    for info in runtime.listener_infos():
        raw = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
        raw["stats"] = dataclasses.asdict(info.stats)
        listeners.append(raw)
    return {
        "state": runtime.state(),
        "snapshot": runtime.config_dump(),
        "listeners": listeners,
        "reporter": dataclasses.asdict(runtime.reporter.stats) if runtime.reporter else None,
        "counters": dataclasses.asdict(runtime.counters),
        "loop_lag": dataclasses.asdict(runtime.loop_lag),
        "summary": dataclasses.asdict(runtime.summary) if runtime.summary else None,
    }


def setup_logging(level: str = "info") -> None:
    """`level` was checked by the CLI (parse_level); the format is one line per record."""
    logging.basicConfig(level=parse_level(level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_level(parse_level(level))


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(options: RunOptions) -> int:
    """Run until SIGTERM/SIGINT; uvloop when installed."""
    setup_logging(options.log_level)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(serve(options))


__all__ = ["export_state", "loop_factory", "run", "serve", "setup_logging", "summary_line"]
