"""A real two-dataplane topology on loopback: `web` → `backend`, each app behind a `sidecar run` process.

The apps are aiohttp servers in the test process that record the headers they saw; `web` calls `backend`
through its sidecar's outbound listener, propagating the trace headers as an instrumented app does. The
collector is the project's Zipkin-compatible app, also on a real socket.
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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from sidecar.collector.app import build_collector_app
from sidecar.collector.store import TraceStore
from sidecar.demo.services import PROPAGATED
from tests.util import bound_socket, free_port, port_of

BIND_RETRIES = 3  # a sidecar port picked outside the ephemeral range can still be taken by another run


class PortTaken(Exception):
    """A sidecar could not bind a port picked for it: pick new ones and start again."""


@dataclass
class App:
    name: str
    sock: socket.socket  # bound to port 0 and listening before any config names it
    seen: list[dict[str, str]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        return port_of(self.sock)


@dataclass
class Sidecar:
    name: str
    admin: int
    process: subprocess.Popen[bytes]


class Topology:
    dataplanes = ("web-01", "backend-01")  # started in this order, each with its own `sidecar run`

    def __init__(
        self, tmp: Path, backend_conf: dict[str, Any] | None = None, sampling: float = 100.0
    ) -> None:
        self.tmp = tmp
        self._collector_sock = bound_socket()
        self.collector_port = port_of(self._collector_sock)
        self.web = App("web", bound_socket())
        self.backend = App("backend", bound_socket())
        self.web_in = self.web_out = self.backend_in = 0
        self.store = TraceStore()
        self.sidecars: list[Sidecar] = []
        self._collector: web.AppRunner | None = None
        self.backend_delay = 0.0
        self.config = tmp / "config"
        self.config.mkdir()
        conf: dict[str, Any] = {"url": f"http://127.0.0.1:{self.collector_port}/api/v2/spans"}
        conf.update(backend_conf or {})
        self.write_mesh(sampling, conf)
        self.pick_ports()

    def pick_ports(self) -> None:
        """Sidecar listener ports (written into the Dataplanes before the sidecars bind them)."""
        self.web_in, self.web_out, self.backend_in = free_port(), free_port(), free_port()
        docs = [
            {
                "type": "TrafficTrace",
                "name": "trace-all",
                "mesh": "default",
                "selectors": [{"match": {"kuma.io/service": "*"}}],
            },
            self._dataplane("web-01", "web", self.web_in, self.web.port, [(self.web_out, "backend")]),
            self._dataplane("backend-01", "backend", self.backend_in, self.backend.port, []),
        ]
        (self.config / "resources.yaml").write_text(yaml.safe_dump_all(docs))

    def write_mesh(self, sampling: float, conf: dict[str, Any]) -> None:
        mesh = {
            "type": "Mesh",
            "name": "default",
            "tracing": {
                "defaultBackend": "collector",
                "backends": [{"name": "collector", "type": "zipkin", "sampling": sampling, "conf": conf}],
            },
        }
        (self.config / "mesh.yaml").write_text(yaml.safe_dump(mesh))

    @staticmethod
    def _dataplane(
        name: str,
        service: str,
        port: int,
        app_port: int,
        outbound: list[tuple[int, str]],
        protocol: str = "http",
    ) -> dict[str, Any]:
        return {
            "type": "Dataplane",
            "name": name,
            "mesh": "default",
            "networking": {
                "address": "127.0.0.1",
                "inbound": [
                    {
                        "port": port,
                        "servicePort": app_port,
                        "tags": {"kuma.io/service": service, "kuma.io/protocol": protocol},
                    }
                ],
                "outbound": [{"port": p, "tags": {"kuma.io/service": s}} for p, s in outbound],
            },
        }

    # apps -----------------------------------------------------------------------------------------
    async def _serve(self, app: App, handler: Any) -> None:
        application = web.Application()
        application.router.add_route("*", "/{tail:.*}", handler)
        app.runner = web.AppRunner(application, access_log=None)
        await app.runner.setup()
        await web.SockSite(app.runner, app.sock).start()

    async def _web_handler(self, request: web.Request) -> web.Response:
        self.web.seen.append({k.lower(): v for k, v in request.headers.items()})
        forward = {k: v for k, v in request.headers.items() if k.lower() in PROPAGATED}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.web_out}/data", headers=forward) as resp,
        ):
            body = await resp.text()
        return web.Response(status=resp.status, text=f"web<-{body}")

    async def _backend_handler(self, request: web.Request) -> web.Response:
        self.backend.seen.append({k.lower(): v for k, v in request.headers.items()})
        if self.backend_delay:
            await asyncio.sleep(self.backend_delay)
        return web.Response(text="backend")

    # sidecars -------------------------------------------------------------------------------------
    def start_sidecar(self, dataplane: str, *extra: str) -> Sidecar:
        admin = free_port()
        cmd = [sys.executable, "-m", "sidecar", "run", "--config", str(self.config), "--dataplane", dataplane]
        cmd += [
            "--admin-address",
            f"127.0.0.1:{admin}",
            "--flush-interval",
            "0.05",
            "--drain-grace",
            "5",
            *extra,
        ]
        env = dict(os.environ, SIDECAR_LOG_LEVEL="WARNING")
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        sidecar = Sidecar(dataplane, admin, process)
        self.sidecars.append(sidecar)
        return sidecar

    async def wait_ready(self, sidecar: Sidecar, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if sidecar.process.poll() is not None:
                    _, err = sidecar.process.communicate()
                    if b"in use" in err:
                        raise PortTaken(err.decode())
                    raise AssertionError(f"sidecar {sidecar.name} exited: {err.decode()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{sidecar.admin}/ready") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"sidecar {sidecar.name} not ready in {timeout}s")

    async def start(self, *sidecar_args: str) -> None:
        self._collector = web.AppRunner(build_collector_app(self.store), access_log=None)
        await self._collector.setup()
        await web.SockSite(self._collector, self._collector_sock).start()
        await self.start_apps()
        for attempt in range(BIND_RETRIES):
            started = [self.start_sidecar(name, *sidecar_args) for name in self.dataplanes]
            try:
                for sidecar in started:
                    await self.wait_ready(sidecar)
                return
            except PortTaken:
                if attempt == BIND_RETRIES - 1:
                    raise
                for sidecar in started:
                    await asyncio.to_thread(self.stop_sidecar, sidecar)
                    self.sidecars.remove(sidecar)
                    for stream in (sidecar.process.stdout, sidecar.process.stderr):
                        if stream is not None:
                            stream.close()
                self.pick_ports()

    async def start_apps(self) -> None:
        await self._serve(self.web, self._web_handler)
        await self._serve(self.backend, self._backend_handler)

    async def stop_apps(self) -> None:
        for app in (self.web, self.backend):
            if app.runner is not None:
                await app.runner.cleanup()

    def stop_sidecar(self, sidecar: Sidecar, timeout: float = 15.0) -> int:
        if sidecar.process.poll() is None:
            sidecar.process.send_signal(signal.SIGTERM)
        try:
            return sidecar.process.wait(timeout)
        except subprocess.TimeoutExpired:
            sidecar.process.kill()
            sidecar.process.wait()
            raise

    async def stop(self) -> None:
        for sidecar in self.sidecars:
            await asyncio.to_thread(self.stop_sidecar, sidecar)
            for stream in (sidecar.process.stdout, sidecar.process.stderr):
                if stream is not None:
                    stream.close()
        await self.stop_apps()
        if self._collector is not None:
            await self._collector.cleanup()

    # helpers --------------------------------------------------------------------------------------
    async def call(
        self, headers: dict[str, str] | None = None, path: str = "/hello"
    ) -> aiohttp.ClientResponse:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.web_in}{path}", headers=headers or {}) as resp,
        ):
            await resp.read()
            return resp

    async def spans_sent(self, sidecar: Sidecar, count: int, timeout: float = 10.0) -> None:
        """Wait until `sidecar`'s reporter says the collector accepted `count` spans."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                async with session.get(f"http://127.0.0.1:{sidecar.admin}/stats/prometheus") as resp:
                    for line in (await resp.text()).splitlines():
                        if line.startswith("sidecar_spans_sent_total ") and float(line.split()[1]) >= count:
                            return
                await asyncio.sleep(0.02)
        raise AssertionError(f"sidecar {sidecar.name}: fewer than {count} spans sent in {timeout}s")

    async def trace(self, trace_id: str, spans: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.store.trace(trace_id) or []
            if len(found) >= spans:
                return list(found)
            await asyncio.sleep(0.02)
        raise AssertionError(f"trace {trace_id}: wanted {spans} spans, have {self.store.trace(trace_id)}")


@contextlib.asynccontextmanager
async def topology(tmp: Path, *sidecar_args: str, **kw: Any) -> AsyncIterator[Topology]:
    topo = Topology(tmp, **kw)
    try:
        await topo.start(*sidecar_args)
        yield topo
    finally:
        await topo.stop()
