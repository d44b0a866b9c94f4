"""Operations against real sidecar processes: admin endpoints and metrics, hot reload under load, access log."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from sidecar.collector.app import build_collector_app
from sidecar.collector.store import TraceStore
from sidecar.config import resolve
from tests.e2e.topology import Topology, topology
from tests.util import free_port


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_admin_endpoints_and_metric_values(tmp_path: Path) -> None:
    async with topology(tmp_path) as topo:
        for _ in range(3):
            assert (await topo.call()).status == 200
        web_admin = topo.sidecars[0].admin
        status, text = await get(web_admin, "/ready")
        assert (status, text.strip()) == (200, "LIVE")
        status, dump = await get(web_admin, "/config_dump")
        snapshot, _ = resolve([str(topo.config)], "web-01")
        assert snapshot is not None and json.loads(dump) == snapshot.to_json()

        async def spans_sent() -> bool:
            _, text = await get(web_admin, "/stats/prometheus")
            return samples(text).get(("sidecar_spans_sent_total", ()), 0) >= 6

        await wait_until(spans_sent)
        _, text = await get(web_admin, "/stats/prometheus")
        m = samples(text)
        inbound = f"inbound:127.0.0.1:{topo.web_in}"
        outbound = f"outbound:127.0.0.1:{topo.web_out}"
        assert (
            m[
                (
                    "sidecar_requests_total",
                    (("direction", "inbound"), ("listener", inbound), ("status_class", "2xx")),
                )
            ]
            == 3
        )
        assert (
            m[
                (
                    "sidecar_requests_total",
                    (("direction", "outbound"), ("listener", outbound), ("status_class", "2xx")),
                )
            ]
            == 3
        )
        assert (
            m[("sidecar_request_duration_seconds_count", (("direction", "inbound"), ("listener", inbound)))]
            == 3
        )
        assert m[("sidecar_spans_created_total", ())] == 6
        assert m[("sidecar_spans_dropped_total", (("reason", "buffer_full"),))] == 0
        assert m[("sidecar_reports_failed_total", ())] == 0 and m[("sidecar_reports_sent_total", ())] >= 1
        assert m[("sidecar_reporter_buffer_spans", ())] == 0
        assert m[("sidecar_config_reloads_total", (("result", "ok"),))] == 0
        assert m[("sidecar_ready", ())] == 1
        status, stats = await get(web_admin, "/stats")
        assert (
            status == 200
            and f'sidecar_requests_total{{direction="inbound",listener="{inbound}",status_class="2xx"}}: 3'
            in stats
        )


async def test_reload_under_load_switches_sampling_and_backend_without_failures(tmp_path: Path) -> None:
    second = TraceStore()
    second_port = free_port()
    runner = web.AppRunner(build_collector_app(second), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", second_port).start()
    try:
        async with topology(tmp_path) as topo:
            failures: list[int] = []
            done = asyncio.Event()

            async def load() -> int:
                n = 0
                async with aiohttp.ClientSession() as session:
                    deadline = time.monotonic() + 20
                    while not done.is_set() and time.monotonic() < deadline:
                        async with session.get(f"http://127.0.0.1:{topo.web_in}/load") as resp:
                            await resp.read()
                            if resp.status != 200:
                                failures.append(resp.status)
                        n += 1
                return n

            task = asyncio.create_task(load())
            await asyncio.sleep(0.5)
            # New backend URL and 0 % sampling, written while requests flow.
            topo.write_mesh(
                0.0, {"url": f"http://127.0.0.1:{second_port}/api/v2/spans", "apiVersion": "httpProto"}
            )

            async def reloaded() -> bool:
                results = []
                for sc in topo.sidecars:
                    _, text = await get(sc.admin, "/stats/prometheus")
                    results.append(
                        samples(text).get(("sidecar_config_reloads_total", (("result", "ok"),)), 0) >= 1
                    )
                return all(results)

            await wait_until(reloaded)
            await asyncio.sleep(0.3)
            done.set()
            count = await task
            assert failures == [] and count > 20
            # After the reload: unsampled by default, and a forced one goes to the new backend.
            await topo.call({"x-b3-flags": "1"})
            trace_id = topo.web.seen[-1]["x-b3-traceid"]
            deadline = time.monotonic() + 10
            while len(second.trace(trace_id) or []) < 3:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await topo.call()
            assert topo.web.seen[-1]["x-b3-sampled"] == "0"
            _, dump = await get(topo.sidecars[0].admin, "/config_dump")
            assert json.loads(dump)["backend"]["sampling"] == 0.0
    finally:
        await runner.cleanup()


async def test_invalid_reload_keeps_running_config_and_counts_failure(tmp_path: Path) -> None:
    async with topology(tmp_path) as topo:
        web_admin = topo.sidecars[0].admin
        _, before = await get(web_admin, "/config_dump")
        (topo.config / "mesh.yaml").write_text(
            "type: Mesh\nname: default\ntracing:\n  backends:\n  - name: x\n    sampling: 500\n"
        )

        async def failed() -> bool:
            _, text = await get(web_admin, "/stats/prometheus")
            return samples(text).get(("sidecar_config_reloads_total", (("result", "failed"),)), 0) >= 1

        await wait_until(failed)
        assert (await topo.call()).status == 200
        _, after = await get(web_admin, "/config_dump")
        assert after == before


async def test_sighup_reloads(tmp_path: Path) -> None:
    topo = Topology(tmp_path)
    try:
        await topo.start("--no-watch")
        topo.write_mesh(0.0, {"url": f"http://127.0.0.1:{topo.collector_port}/api/v2/spans"})
        for sc in topo.sidecars:
            sc.process.send_signal(signal.SIGHUP)

        async def applied() -> bool:
            _, dump = await get(topo.sidecars[0].admin, "/config_dump")
            return bool(json.loads(dump)["backend"]["sampling"] == 0.0)

        await wait_until(applied)
    finally:
        await topo.stop()


async def test_access_log_lines(tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    async with topology(tmp_path, "--access-log", str(log)) as topo:
        await topo.call({"x-request-id": "rid-42"}, path="/orders?id=7")
        trace_id = topo.web.seen[0]["x-b3-traceid"]
        deadline = time.monotonic() + 10
        while not (log.exists() and len(log.read_text().splitlines()) >= 3):  # web in + out, backend in
            assert time.monotonic() < deadline, "access log not written"
            await asyncio.sleep(0.1)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    inbound = next(r for r in lines if r["direction"] == "inbound" and r["path"] == "/orders?id=7")
    assert inbound["method"] == "GET" and inbound["status"] == 200 and inbound["response_flags"] == "-"
    assert inbound["x_request_id"] == "rid-42" and inbound["trace_id"] == trace_id and inbound["span_id"]
    assert (
        inbound["bytes_sent"] > 0
        and inbound["duration_ms"] > 0
        and inbound["upstream_host"].startswith("127.0.0.1:")
    )
    assert {r["x_request_id"] for r in lines} == {"rid-42"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", inbound["start_time"])  # %START_TIME%


async def post(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


async def test_workers_parent_answers_the_admin_and_tells_every_worker(tmp_path: Path) -> None:
    async with topology(tmp_path, "--workers", "2") as topo:
        for _ in range(4):
            assert (await topo.call()).status == 200
        admin = topo.sidecars[0].admin
        _, info = await get(admin, "/server_info")
        assert json.loads(info)["command_line_options"]["concurrency"] == 2

        async def counted() -> bool:
            _, text = await get(
                admin, f"/stats?filter=^http\\.localhost_{topo.web.port}\\.downstream_rq_2xx$"
            )
            return text == f"http.localhost_{topo.web.port}.downstream_rq_2xx: 4\n"

        await wait_until(counted)  # both workers' counters, added up by the parent
        status, loggers = await post(admin, "/logging?level=debug")
        assert status == 200 and "sidecar: debug" in loggers
        assert await post(admin, "/drain_listeners?inboundonly") == (200, "OK\n")
        assert await get(admin, "/ready") == (503, "DRAINING\n")

        async def inbound_closed() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", topo.web_in)
            except OSError:
                return True
            writer.close()
            return False

        await wait_until(inbound_closed)  # every worker stopped accepting on the shared port
