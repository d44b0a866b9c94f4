"""`sidecar demo`: the demo topology as local processes, a collector in-process, the traces printed.

Everything comes from the Kuma resources (the embedded `sidecar/demo/config/` unless --config says
otherwise): one app and one `sidecar run` per Dataplane (the app listens on the inbound's servicePort and
calls the next service through the dataplane's first outbound), and one collector per tracing backend
URL. Then a few requests go to the first dataplane's inbound and every trace is printed as a tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from sidecar.collector.app import build_collector_app
from sidecar.collector.store import TraceStore
from sidecar.collector.tree import render_trace
from sidecar.config import load_config
from sidecar.config.snapshot import Snapshot, build_snapshot

EMBEDDED_CONFIG = Path(__file__).resolve().parent / "config"
MESHTRACE_CONFIG = Path(__file__).resolve().parent / "config-meshtrace"  # the same, traced by MeshTrace
INSTRUMENT = {"frontend": "otel", "backend": "py_zipkin"}  # others: plain


class DemoError(Exception):
    pass


@dataclass
class Proc:
    label: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])


@dataclass
class Collector:
    name: str
    host: str
    port: int
    store: TraceStore


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # SO_REUSEADDR as the servers use it: a port left in TIME_WAIT is free for them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class Demo:
    def __init__(self, config: Path, requests: int, admin_base: int, workdir: Path) -> None:
        self.config = config
        self.requests = requests
        self.admin_base = admin_base
        self.workdir = workdir
        self.procs: list[Proc] = []
        self.collectors: list[Collector] = []
        self._runners: list[web.AppRunner] = []
        self.snapshots = self._resolve()

    def _resolve(self) -> list[Snapshot]:
        result = load_config([str(self.config)])
        if not result.ok:
            raise DemoError("the demo config is invalid:\n  " + "\n  ".join(result.problems))
        snaps = [
            build_snapshot(result.resources, d.name)
            for d in sorted(result.resources.dataplanes, key=lambda d: d.source.line)
        ]
        if not snaps:
            raise DemoError(f"no Dataplane in {self.config}")
        return snaps

    def planned_ports(self) -> list[tuple[str, str, int]]:
        ports: list[tuple[str, str, int]] = []
        for i, snap in enumerate(self.snapshots):
            ports += [(f"{snap.dataplane} inbound", i.address, i.port) for i in snap.inbound]
            ports += [(f"{snap.dataplane} outbound", o.address, o.port) for o in snap.outbound]
            ports += [(f"{snap.dataplane} app", i.service_address, i.service_port) for i in snap.inbound]
            ports.append((f"{snap.dataplane} admin", "127.0.0.1", self.admin_base + i))
        for name, host, port in self.backend_addresses():
            ports.append((f"collector {name}", host, port))
        return ports

    def backend_addresses(self) -> list[tuple[str, str, int]]:
        seen: dict[tuple[str, int], str] = {}
        for snap in self.snapshots:
            if snap.backend is not None:
                url = urlsplit(snap.backend.url)
                seen.setdefault((url.hostname or "127.0.0.1", url.port or 9411), snap.backend.name)
        return [(name, host, port) for (host, port), name in seen.items()]

    # start ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        busy = [
            f"{label} {host}:{port}"
            for label, host, port in self.planned_ports()
            if not _port_free(host, port)
        ]
        if busy:
            raise DemoError(
                "ports in use: "
                + ", ".join(busy)
                + "\n  stop what uses them (another demo?) or pass --config with other ports"
            )
        for name, host, port in self.backend_addresses():
            store = TraceStore()
            runner = web.AppRunner(build_collector_app(store), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            self._runners.append(runner)
            self.collectors.append(Collector(name, host, port, store))
        first = self.collectors[0] if self.collectors else None
        app_collector = (
            f"http://{first.host}:{first.port}/api/v2/spans"
            if first
            else "http://127.0.0.1:9411/api/v2/spans"
        )
        for snap in self.snapshots:
            inbound = snap.inbound[0]
            cmd = [
                sys.executable,
                "-m",
                "sidecar.demo.services",
                snap.service_name,
                "--host",
                inbound.service_address,
            ]
            cmd += ["--port", str(inbound.service_port), "--collector", app_collector]
            cmd += ["--instrument", INSTRUMENT.get(snap.service_name, "plain")]
            if snap.outbound:
                out = snap.outbound[0]
                cmd += ["--next", f"http://{out.address}:{out.port}/{out.service}"]
            self._spawn(f"app {snap.service_name}", cmd)
        for i, snap in enumerate(self.snapshots):
            cmd = [
                sys.executable,
                "-m",
                "sidecar",
                "run",
                "--config",
                str(self.config),
                "--dataplane",
                snap.dataplane,
            ]
            cmd += [
                "--admin-address",
                f"127.0.0.1:{self.admin_base + i}",
                "--flush-interval",
                "0.2",
                "--no-watch",
            ]
            self._spawn(f"sidecar {snap.dataplane}", cmd)
        await self._wait_ready()

    def _spawn(self, label: str, cmd: list[str]) -> None:
        log = self.workdir / (label.replace(" ", "-") + ".log")
        out = log.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        out.close()
        self.procs.append(Proc(label, process, log))

    async def _wait_ready(self, timeout: float = 45.0) -> None:
        checks: list[tuple[Proc, str]] = []
        apps = [p for p in self.procs if p.label.startswith("app ")]
        sidecars = [p for p in self.procs if p.label.startswith("sidecar ")]
        for proc, snap in zip(apps, self.snapshots, strict=True):
            inbound = snap.inbound[0]
            checks.append((proc, f"http://{inbound.service_address}:{inbound.service_port}/healthz"))
        for i, proc in enumerate(sidecars):
            checks.append((proc, f"http://127.0.0.1:{self.admin_base + i}/ready"))
        deadline = time.monotonic() + timeout
        pending = list(checks)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while pending:
                for proc, url in list(pending):
                    if proc.process.poll() is not None:
                        raise DemoError(
                            f"{proc.label} exited with code {proc.process.returncode}:\n{proc.tail()}"
                        )
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(url) as resp:
                            if resp.status == 200:
                                pending.remove((proc, url))
                if not pending:
                    break
                if time.monotonic() > deadline:
                    names = ", ".join(p.label for p, _ in pending)
                    raise DemoError(f"not ready after {timeout:.0f}s: {names}\n{pending[0][0].tail()}")
                await asyncio.sleep(0.1)

    # traffic and traces -----------------------------------------------------------------------------
    async def send_requests(self) -> list[str]:
        entry = self.snapshots[0].inbound[0]
        url = f"http://{entry.address}:{entry.port}/"
        lines = []
        async with aiohttp.ClientSession() as session:
            for i in range(self.requests):
                async with session.get(url + f"?order={i + 1}") as resp:
                    await resp.read()
                    lines.append(f"GET {url}?order={i + 1} -> {resp.status}")
        return lines

    async def wait_for_spans(self, timeout: float = 10.0, quiet: float = 1.0) -> None:
        """Until no new span arrived for `quiet` seconds (reporters flush every 0.2 s here)."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            count = sum(c.store.accepted for c in self.collectors)
            if count != last:
                last, last_change = count, time.monotonic()
            elif count and time.monotonic() - last_change >= quiet:
                return
            await asyncio.sleep(0.1)

    def traces(self) -> list[tuple[list[dict[str, Any]], dict[int, str]]]:
        """Every trace, merged across backends; the second map names the backend of each span."""
        merged: dict[str, list[dict[str, Any]]] = {}
        where: dict[str, dict[int, str]] = {}
        for collector in self.collectors:
            for spans in reversed(collector.store.traces(limit=10**6)):
                for span in spans:
                    merged.setdefault(span["traceId"], []).append(span)
                    where.setdefault(span["traceId"], {})[id(span)] = collector.name
        return [(spans, where[tid]) for tid, spans in merged.items()]

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            while proc.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)
                proc.process.wait()
        for runner in self._runners:
            await runner.cleanup()


def _backend_note(where: dict[int, str]) -> Callable[[dict[str, Any]], str]:
    """Marks the spans that went to another backend than the first (a TrafficTrace of their own)."""
    return lambda span: f"  -> {where[id(span)]}" if id(span) in where else ""


def _is_proxy(span: dict[str, Any]) -> bool:
    return bool(span.get("tags", {}).get("component") == "proxy")


def _report(demo: Demo, responses: list[str]) -> tuple[str, int]:
    """Requests, trace trees, then two lines whose counts add up: what is shown, and what the
    collectors received (including traces that are not shown, and why)."""
    out = ["Requests:"] + ["  " + line for line in responses] + [""]
    shown: list[tuple[list[dict[str, Any]], dict[int, str]]] = []
    hidden: list[list[dict[str, Any]]] = []
    for spans, where in demo.traces():
        # Traces without a sidecar span are the apps' own health checks, not the demo's subject.
        if any(_is_proxy(s) for s in spans):
            shown.append((spans, where))
        else:
            hidden.append(spans)
    best: list[str] = []
    for spans, where in shown:
        default = demo.collectors[0].name if demo.collectors else ""
        note = {k: v for k, v in where.items() if v != default}
        out.append(render_trace(spans, note=_backend_note(note)))
        out.append("")
        by_start = sorted((s for s in spans if _is_proxy(s)), key=lambda s: s.get("timestamp", 0))
        sidecars = list(dict.fromkeys(s["localEndpoint"]["serviceName"] for s in by_start))  # in call order
        if len(sidecars) > len(best):
            best = sidecars
    shown_spans = sum(len(spans) for spans, _ in shown)
    out.append(
        f"{_count(len(shown), 'trace')} shown ({_count(len(responses), 'request')} sent), "
        f"{_count(shown_spans, 'span')}, up to {_count(len(best), 'sidecar')} per trace ({', '.join(best)})"
    )
    received = sum(c.store.accepted for c in demo.collectors)
    per_backend = ", ".join(f"{c.name} ({c.host}:{c.port}) {c.store.accepted}" for c in demo.collectors)
    line = f"collectors received {_count(received, 'span')}: {per_backend}"
    if hidden:
        hidden_spans = sum(len(spans) for spans in hidden)
        line += (
            f"; not shown: {_count(len(hidden), 'trace')} without a sidecar span "
            f"({_count(hidden_spans, 'span')}, the apps' health checks)"
        )
    out.append(line)
    return "\n".join(out), len(best)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


async def run_demo_async(config: Path, requests: int, admin_base: int, keep_running: bool) -> int:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sidecar-demo-") as tmp:
        demo = Demo(config, requests, admin_base, Path(tmp))
        n = len(demo.snapshots)
        print(
            f"Starting {n} services, {n} sidecars and {len(demo.backend_addresses())} collectors "
            f"from {config} ...\n",
            flush=True,
        )
        try:
            await demo.start()
            responses = await demo.send_requests()
            await demo.wait_for_spans()
            text, services = _report(demo, responses)
            print(text, flush=True)
            if keep_running:
                entry = demo.snapshots[0].inbound[0]
                print(
                    f"\nRunning. Try: curl http://{entry.address}:{entry.port}/   Traces: "
                    + ", ".join(f"http://{c.host}:{c.port}/api/v2/traces" for c in demo.collectors)
                    + "\nAdmin: "
                    + ", ".join(
                        f"http://127.0.0.1:{admin_base + i}/stats" for i in range(len(demo.snapshots))
                    )
                    + "\nCtrl-C to stop.",
                    flush=True,
                )
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
            return 0 if services >= min(3, len(demo.snapshots)) else 1
        except DemoError as exc:
            print(f"sidecar demo: {exc}", file=sys.stderr)
            return 1
        finally:
            await demo.stop()


def run_demo(
    argv_config: str | None, requests: int = 3, admin_base: int = 9901, keep_running: bool = False
) -> int:
    config = Path(argv_config) if argv_config else EMBEDDED_CONFIG
    try:
        return asyncio.run(run_demo_async(config, requests, admin_base, keep_running))
    except KeyboardInterrupt:
        return 130
    except DemoError as exc:
        print(f"sidecar demo: {exc}", file=sys.stderr)
        return 1
