"""The runtime in-process: reload swaps listener kinds on the same port, a failed reload changes nothing;
the admin's reads and mutations over a live runtime; start-up failures as one line; the drain summary."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from sidecar import __version__
from sidecar.proxy import HttpListener, TcpListener, h2_nghttp2
from sidecar.runtime import RunOptions, Runtime, StartupError
from sidecar.serve import summary_line
from tests.util import free_port


def write(config: Path, port: int, app_port: int, protocol: str, outbound_port: int | None = None) -> None:
    dataplane = {
        "type": "Dataplane",
        "name": "web-01",
        "mesh": "default",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {
                    "port": port,
                    "servicePort": app_port,
                    "tags": {"kuma.io/service": "web", "kuma.io/protocol": protocol},
                }
            ],
        },
    }
    if outbound_port:
        dataplane["networking"]["outbound"] = [{"port": outbound_port, "tags": {"kuma.io/service": "web"}}]  # type: ignore[index]
    config.write_text(yaml.safe_dump_all([{"type": "Mesh", "name": "default"}, dataplane]))


async def get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_reload_swaps_protocol_on_the_same_port_and_rejects_a_busy_port(tmp_path: Path) -> None:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    app_port, port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", app_port).start()
    config = tmp_path / "all.yaml"
    write(config, port, app_port, "http")
    runtime = Runtime(
        RunOptions(config=[str(config)], dataplane="web-01", admin_port=-1, watch=False, drain_grace=0.5)
    )
    try:
        await runtime.start()
        assert isinstance(runtime.listeners["inbound", "127.0.0.1", port], HttpListener)
        assert (await get(port)).endswith(b"hello")

        write(config, port, app_port, "tcp")
        assert await runtime.reload()
        assert isinstance(runtime.listeners["inbound", "127.0.0.1", port], TcpListener)
        assert (await get(port)).endswith(b"hello")  # bytes pass through untouched now

        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        try:
            write(config, port, app_port, "http", outbound_port=busy.getsockname()[1])
            assert not await runtime.reload()  # the new outbound port is taken
            assert runtime.counters.reloads_failed == 1
            assert isinstance(runtime.listeners["inbound", "127.0.0.1", port], TcpListener)
            assert (await get(port)).endswith(b"hello")  # the running configuration still serves
        finally:
            busy.close()
    finally:
        await runtime.shutdown()
        await runner.cleanup()


# Admin over a real runtime ----------------------------------------------------------------------------
class Running:
    """A runtime serving `web-01` (inbound -> an aiohttp app, outbound -> the same inbound) with its
    admin on an ephemeral port."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = tmp_path / "all.yaml"
        self.app_port, self.port, self.out_port = free_port(), free_port(), free_port()
        write(self.config, self.port, self.app_port, "http", outbound_port=self.out_port)
        self.options = RunOptions(
            config=[str(self.config)], dataplane="web-01", admin_port=0, watch=False, drain_grace=0.5
        )
        self.runtime = Runtime(self.options)

    async def __aenter__(self) -> Running:
        async def hello(_: web.Request) -> web.Response:
            return web.Response(text="hello")

        app = web.Application()
        app.router.add_get("/", hello)
        self.app = web.AppRunner(app)
        await self.app.setup()
        await web.TCPSite(self.app, "127.0.0.1", self.app_port).start()
        await self.runtime.start()
        assert self.runtime.admin_address is not None
        self.admin = f"http://127.0.0.1:{self.runtime.admin_address[1]}"
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.session.close()
        await self.runtime.shutdown()
        await self.app.cleanup()

    async def admin_get(self, path: str, method: str = "GET") -> tuple[int, str]:
        async with self.session.request(method, self.admin + path) as resp:
            return resp.status, await resp.text()


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def test_admin_reads_of_a_live_runtime(tmp_path: Path) -> None:
    async with Running(tmp_path) as r:
        assert (await get(r.port)).endswith(b"hello")
        status, body = await r.admin_get("/server_info")
        info = json.loads(body)
        assert status == 200 and info["state"] == "LIVE" and info["version"] == __version__
        assert info["node"] == {
            "id": "default.web-01",
            "cluster": "web",
            "user_agent_name": "kuma-trace-sidecar",
        }
        assert info["command_line_options"]["concurrency"] == 1
        assert info["command_line_options"]["config_path"] == [str(r.config)]
        assert info["command_line_options"]["trace_context"] == "b3+w3c"
        codec = info["command_line_options"]["http2_codec_in_use"]
        assert codec.startswith("nghttp2" if h2_nghttp2.available() else "h2")
        _, listeners = await r.admin_get("/listeners")
        assert listeners.splitlines() == [
            f"inbound:127.0.0.1:{r.port}::127.0.0.1:{r.port}",
            f"outbound:127.0.0.1:{r.out_port}::127.0.0.1:{r.out_port}",
        ]
        _, clusters = await r.admin_get("/clusters")
        assert f"localhost:{r.app_port}::127.0.0.1:{r.app_port}::rq_total::1" in clusters.splitlines()
        assert clusters.splitlines()[-1] == "web::added_via_api::false"  # only web-01 itself is `web`
        _, stats = await r.admin_get(rf"/stats?filter=^http\.localhost_{r.app_port}\.downstream_rq_2xx$")
        assert stats == f"http.localhost_{r.app_port}.downstream_rq_2xx: 1\n"


async def test_healthcheck_fail_turns_ready_503_and_traffic_still_flows(tmp_path: Path) -> None:
    async with Running(tmp_path) as r:
        assert await r.admin_get("/healthcheck/fail") == (405, "405: Method Not Allowed")
        assert await r.admin_get("/ready") == (200, "LIVE\n")
        assert await r.admin_get("/healthcheck/fail", "POST") == (200, "OK\n")
        assert await r.admin_get("/ready") == (503, "DRAINING\n")
        assert (await get(r.port)).endswith(b"hello")
        assert await r.admin_get("/healthcheck/ok", "POST") == (200, "OK\n")
        assert await r.admin_get("/ready") == (200, "LIVE\n")


async def test_logging_changes_the_level(tmp_path: Path) -> None:
    before = logging.getLogger().level, logging.getLogger("sidecar").level
    try:
        async with Running(tmp_path) as r:
            status, body = await r.admin_get("/logging?level=debug", "POST")
            assert status == 200 and "  sidecar: debug" in body.splitlines()
            assert logging.getLogger("sidecar").getEffectiveLevel() == logging.DEBUG
    finally:
        logging.getLogger().setLevel(before[0])
        logging.getLogger("sidecar").setLevel(before[1])


async def test_drain_listeners_stops_accepting_while_open_connections_carry_on(tmp_path: Path) -> None:
    async with Running(tmp_path) as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await reader.readuntil(b"hello")).startswith(b"HTTP/1.1 200")
        assert await r.admin_get("/drain_listeners") == (405, "405: Method Not Allowed")
        assert await r.admin_get("/drain_listeners", "POST") == (200, "OK\n")
        assert await refused(r.port) and await refused(r.out_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).endswith(b"hello")
        writer.close()
        assert await r.admin_get("/ready") == (503, "DRAINING\n")
        assert await r.admin_get("/stats?filter=total_listeners_active") == (
            200,
            "listener_manager.total_listeners_active: 0\n",
        )
        assert not await r.runtime.reload()  # the drained listeners are not opened again


async def test_drain_listeners_graceful_inbound_only(tmp_path: Path) -> None:
    async with Running(tmp_path) as r:
        assert await r.admin_get("/drain_listeners?graceful&inboundonly", "POST") == (200, "OK\n")
        assert await refused(r.port)
        assert not await refused(r.out_port)
        _, stats = await r.admin_get("/stats?filter=total_listeners_active")
        assert stats == "listener_manager.total_listeners_active: 1\n"


async def test_a_busy_listener_port_names_the_listener_and_the_field(tmp_path: Path) -> None:
    config = tmp_path / "all.yaml"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        write(config, port, free_port(), "http")
        runtime = Runtime(RunOptions(config=[str(config)], dataplane="web-01", admin_port=0, watch=False))
        try:
            with pytest.raises(StartupError) as err:
                await runtime.start()
        finally:
            await runtime.shutdown()
    assert err.value.problems == [
        f"web-01 inbound 127.0.0.1:{port}: cannot listen: Address already in use; "
        "change networking.inbound[0].port of Dataplane web-01"
    ]


async def test_a_busy_admin_port_fails_before_any_listener_is_bound(tmp_path: Path) -> None:
    config = tmp_path / "all.yaml"
    port = free_port()
    write(config, port, free_port(), "http")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        admin = busy.getsockname()[1]
        runtime = Runtime(RunOptions(config=[str(config)], dataplane="web-01", admin_port=admin, watch=False))
        try:
            with pytest.raises(StartupError) as err:
                await runtime.start()
            assert await refused(port)
        finally:
            await runtime.shutdown()
    assert err.value.problems == [
        f"admin 127.0.0.1:{admin}: cannot listen: Address already in use; change --admin-address"
    ]


async def test_shutdown_says_what_it_drained_and_flushed(tmp_path: Path) -> None:
    async with Running(tmp_path) as r:
        _, writer = await asyncio.open_connection("127.0.0.1", r.port)  # an idle keep-alive connection
        await asyncio.sleep(0)
        summary = await r.runtime.shutdown()
        writer.close()
    assert (summary.listeners, summary.connections, summary.backend) == (2, 1, "")
    assert summary_line(summary, 0.5).startswith("stopped: drained 2 listeners (1 open connection ")
    assert summary_line(summary, 0.5).endswith("; no tracing backend")


async def test_starts_and_reloads_past_an_unrelated_broken_dataplane(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = {
        "type": "Dataplane",
        "name": "other-01",
        "mesh": "default",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": 0, "tags": {"kuma.io/service": "other"}}],
        },
    }
    async with Running(tmp_path) as r:
        (tmp_path / "other.yaml").write_text(yaml.safe_dump(broken))
        r.runtime.options = dataclasses.replace(
            r.options, config=[str(r.config), str(tmp_path / "other.yaml")]
        )
        with caplog.at_level(logging.WARNING, logger="sidecar"):
            assert await r.runtime.reload()
        [record] = [rec for rec in caplog.records if rec.levelname == "WARNING"]
        assert record.message.startswith(
            "skipping Dataplane/other-01, it is invalid and not this dataplane's: "
        )
        caplog.clear()
    fresh = Runtime(r.runtime.options)  # and a fresh start with the same files
    try:
        with caplog.at_level(logging.WARNING, logger="sidecar"):
            await fresh.start()
        assert [rec.message.split(",")[0] for rec in caplog.records] == ["skipping Dataplane/other-01"]
    finally:
        await fresh.shutdown()


async def test_an_outbound_nobody_serves_answers_503_uh_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A typo in an outbound's service used to become a TCP passthrough with no endpoint: the caller saw a
    closed socket and the log said nothing."""
    config = tmp_path / "all.yaml"
    port, out_port = free_port(), free_port()
    write(config, port, free_port(), "http")
    docs = list(yaml.safe_load_all(config.read_text()))
    docs[1]["networking"]["outbound"] = [{"port": out_port, "tags": {"kuma.io/service": "nobody"}}]
    config.write_text(yaml.safe_dump_all(docs))
    runtime = Runtime(RunOptions(config=[str(config)], dataplane="web-01", admin_port=-1, watch=False))
    try:
        await runtime.start()
        with caplog.at_level(logging.WARNING, logger="sidecar"):
            replies = [await get(out_port) for _ in range(3)]
    finally:
        await runtime.shutdown()
    for reply in replies:
        assert reply.startswith(b"HTTP/1.1 503 ") and reply.endswith(b"no healthy upstream")
    warned = [r.getMessage() for r in caplog.records if "has no endpoint" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith('outbound "nobody" has no endpoint'), warned
