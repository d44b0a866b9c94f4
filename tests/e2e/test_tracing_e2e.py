"""End to end: real `sidecar run` processes, real apps, a real collector; assertions on what crossed the wire."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.topology import topology

CALLER_TRACE = "463ac35c9f6413ad"
CALLER_SPAN = "a2fb4a1d1a96d312"


def by_kind(spans: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["localEndpoint"]["serviceName"], s["kind"]): s for s in spans}


async def test_one_trace_shared_span_context(tmp_path: Path) -> None:
    async with topology(tmp_path) as topo:
        resp = await topo.call()
        assert resp.status == 200
        web_seen, backend_seen = topo.web.seen[0], topo.backend.seen[0]
        trace_id = web_seen["x-b3-traceid"]
        spans = by_kind(await topo.trace(trace_id, 3))
        server, client, remote = spans["web", "SERVER"], spans["web", "CLIENT"], spans["backend", "SERVER"]
        # web SERVER is a root; its id is what the web app saw.
        assert "parentId" not in server and server["id"] == web_seen["x-b3-spanid"]
        assert "x-b3-parentspanid" not in web_seen
        # CLIENT is the child of web's SERVER; backend's SERVER shares the CLIENT's id.
        assert client["parentId"] == server["id"]
        assert (
            remote["id"] == client["id"] and remote["parentId"] == server["id"] and remote["shared"] is True
        )
        assert "shared" not in client and "shared" not in server
        assert (
            backend_seen["x-b3-spanid"] == client["id"] and backend_seen["x-b3-parentspanid"] == server["id"]
        )
        assert {s["traceId"] for s in spans.values()} == {trace_id}
        # x-request-id: one value at every hop and on every span.
        rid = web_seen["x-request-id"]
        assert backend_seen["x-request-id"] == rid
        assert {s["tags"]["guid:x-request-id"] for s in spans.values()} == {rid}
        assert (
            client["tags"]["upstream_cluster"] == "backend"
            and client["remoteEndpoint"]["serviceName"] == "backend"
        )
        assert server["tags"]["http.status_code"] == "200" and server["tags"]["node_id"] == "default.web-01"
        assert (
            remote["localEndpoint"]["serviceName"] == "backend"
            and remote["tags"]["node_id"] == "default.backend-01"
        )
        assert web_seen["x-forwarded-proto"] == "http"


async def test_unshared_span_context_makes_child_server_spans(tmp_path: Path) -> None:
    async with topology(tmp_path, backend_conf={"sharedSpanContext": False}) as topo:
        await topo.call({"x-b3-traceid": CALLER_TRACE, "x-b3-spanid": CALLER_SPAN, "x-b3-sampled": "1"})
        spans = by_kind(await topo.trace(CALLER_TRACE, 3))
        server, client, remote = spans["web", "SERVER"], spans["web", "CLIENT"], spans["backend", "SERVER"]
        assert server["parentId"] == CALLER_SPAN and server["id"] != CALLER_SPAN
        assert client["parentId"] == server["id"]
        assert remote["parentId"] == client["id"] and remote["id"] != client["id"] and "shared" not in remote
        assert topo.backend.seen[0]["x-b3-spanid"] == remote["id"]


async def test_caller_context_is_continued_and_shared(tmp_path: Path) -> None:
    async with topology(tmp_path) as topo:
        await topo.call(
            {"x-b3-traceid": CALLER_TRACE, "x-b3-spanid": CALLER_SPAN, "x-request-id": "caller-id-1"}
        )
        spans = by_kind(await topo.trace(CALLER_TRACE, 3))
        assert spans["web", "SERVER"]["id"] == CALLER_SPAN and spans["web", "SERVER"]["shared"] is True
        assert topo.web.seen[0]["x-request-id"] == "caller-id-1" == topo.backend.seen[0]["x-request-id"]


async def test_unsampled_is_propagated_and_records_nothing(tmp_path: Path) -> None:
    async with topology(tmp_path) as topo:
        await topo.call({"x-b3-traceid": CALLER_TRACE, "x-b3-spanid": CALLER_SPAN, "x-b3-sampled": "0"})
        assert topo.web.seen[0]["x-b3-sampled"] == "0" and topo.backend.seen[0]["x-b3-sampled"] == "0"
        assert topo.backend.seen[0]["x-b3-traceid"] == CALLER_TRACE  # ids still travel
        # A sampled request afterwards: once its spans are in, the unsampled ones would have been too.
        await topo.call()
        await topo.trace(topo.web.seen[1]["x-b3-traceid"], 3)
        assert topo.store.trace(CALLER_TRACE) is None
        assert topo.store.span_count == 3


async def test_sampling_zero_percent_and_debug_flag(tmp_path: Path) -> None:
    async with topology(tmp_path, sampling=0.0) as topo:
        await topo.call()
        assert topo.web.seen[0]["x-b3-sampled"] == "0"
        await topo.call({"x-b3-flags": "1"})
        seen = topo.backend.seen[1]
        assert seen["x-b3-flags"] == "1" and seen["x-b3-sampled"] == "1"
        spans = await topo.trace(seen["x-b3-traceid"], 3)
        assert all(s.get("debug") is True for s in spans)
        assert topo.store.span_count == 3


async def test_single_b3_header_in_and_no_stale_b3_out(tmp_path: Path) -> None:
    async with topology(tmp_path) as topo:
        await topo.call({"b3": f"{CALLER_TRACE}-{CALLER_SPAN}-1"})
        assert "b3" not in topo.web.seen[0] and "b3" not in topo.backend.seen[0]
        assert topo.web.seen[0]["x-b3-traceid"] == CALLER_TRACE
        spans = by_kind(await topo.trace(CALLER_TRACE, 3))
        assert spans["web", "SERVER"]["id"] == CALLER_SPAN


async def test_128bit_trace_ids(tmp_path: Path) -> None:
    async with topology(tmp_path, backend_conf={"traceId128bit": True}) as topo:
        await topo.call()
        trace_id = topo.web.seen[0]["x-b3-traceid"]
        assert len(trace_id) == 32 and topo.backend.seen[0]["x-b3-traceid"] == trace_id
        spans = await topo.trace(trace_id, 3)
        assert {s["traceId"] for s in spans} == {trace_id}


async def test_protobuf_reporting(tmp_path: Path) -> None:
    async with topology(tmp_path, backend_conf={"apiVersion": "httpProto"}) as topo:
        await topo.call()
        trace_id = topo.web.seen[0]["x-b3-traceid"]
        spans = by_kind(await topo.trace(trace_id, 3))
        assert spans["backend", "SERVER"]["shared"] is True
        assert spans["web", "CLIENT"]["remoteEndpoint"]["serviceName"] == "backend"


async def test_malformed_request_gets_400_and_process_carries_on(tmp_path: Path) -> None:
    async with topology(tmp_path) as topo:
        reader, writer = await asyncio.open_connection("127.0.0.1", topo.web_in)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 5)
        assert reply.startswith(b"HTTP/1.1 400 ") and b"connection: close" in reply
        writer.close()
        assert topo.web.seen == []
        assert (await topo.call()).status == 200


async def test_upstream_down_gives_503_uf_and_error_span(tmp_path: Path) -> None:
    async with topology(tmp_path) as topo:
        assert topo.backend.runner is not None
        await topo.backend.runner.cleanup()
        topo.backend.runner = None
        resp = await topo.call()
        assert resp.status == 503  # web saw 503 from its outbound sidecar and passed it on
        trace_id = topo.web.seen[0]["x-b3-traceid"]
        spans = await topo.trace(trace_id, 3)
        backend_server = by_kind(spans)["backend", "SERVER"]
        assert backend_server["tags"]["response_flags"] == "UF" and backend_server["tags"]["error"] == "true"


async def test_sigterm_drains_in_flight_requests_and_flushes_spans(tmp_path: Path) -> None:
    async with topology(tmp_path) as topo:
        topo.backend_delay = 1.0
        call = asyncio.create_task(topo.call())
        while not topo.backend.seen:
            await asyncio.sleep(0.01)
        web_sidecar = topo.sidecars[0]
        web_sidecar.process.terminate()
        resp = await call
        assert resp.status == 200
        code = await asyncio.to_thread(web_sidecar.process.wait, 15)
        assert code == 0  # it exited: whatever it sent is at the collector now
        await topo.trace(topo.web.seen[0]["x-b3-traceid"], 3)
        await topo.spans_sent(topo.sidecars[1], 1)  # and the backend sidecar's only span too
        spans = topo.store.trace(topo.web.seen[0]["x-b3-traceid"]) or []
        assert len(spans) == 3, [
            (
                s["localEndpoint"]["serviceName"],
                s["kind"],
                s["id"],
                s.get("parentId"),
                s.get("shared"),
                s["tags"]["http.status_code"],
                s["tags"]["response_flags"],
            )
            for s in spans
        ]


@pytest.mark.parametrize("workers", [2])
async def test_workers_share_listeners(tmp_path: Path, workers: int) -> None:
    async with topology(tmp_path, "--workers", str(workers)) as topo:
        for _ in range(10):
            assert (await topo.call()).status == 200
        assert len(topo.backend.seen) == 10
        await topo.trace(topo.web.seen[-1]["x-b3-traceid"], 3)


async def test_curl_http2_prior_knowledge_through_an_http_inbound(tmp_path: Path) -> None:
    """An h2c client on an `http` listener: its streams go to the HTTP/1.1 app, traced as HTTP/2."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (.ci/run installs it)")
    async with topology(tmp_path) as topo:
        out = await asyncio.to_thread(
            subprocess.run,
            [curl, "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
             f"http://127.0.0.1:{topo.web_in}/h2"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert out.stdout.splitlines() == ["web<-backend", "2 200"], out
        web_seen = topo.web.seen[-1]
        spans = by_kind(await topo.trace(web_seen["x-b3-traceid"], 3))
        assert spans["web", "SERVER"]["tags"]["http.protocol"] == "HTTP/2"
        assert spans["web", "CLIENT"]["tags"]["http.protocol"] == "HTTP/1.1"  # the app's own call
