"""The reporter against a real HTTP collector on loopback."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.collector.proto import decode_list_of_spans
from sidecar.reporting import Reporter, ReporterSettings, SettingsError
from sidecar.reporting.reporter import MAX_INFLIGHT
from sidecar.tracing import encode_proto
from sidecar.tracing.encoding import JSON, PROTO
from sidecar.tracing.span import Span
from tests.reporting.fake_collector import RESET, FakeCollector, narrow_server

ServerFactory = Callable[..., Awaitable[TestServer]]


def json_span(i: int) -> bytes:
    return orjson.dumps({"traceId": f"{i + 1:016x}", "id": f"{i + 1:016x}", "name": f"s{i}"})


def proto_span(i: int) -> bytes:
    span = Span(
        trace_id=f"{i + 1:016x}",
        span_id=f"{i + 1:016x}",
        parent_id=None,
        kind="SERVER",
        name=f"s{i}",
        timestamp_us=1_700_000_000_000_000 + i,
        start_ns=0,
        local_service="web",
        tags={"i": str(i)},
    )
    span.duration_us = 5
    return encode_proto.encode_span(span)


def names(collector: FakeCollector, accepted_only: bool = False) -> list[str]:
    out: list[str] = []
    for post in collector.posts:
        out += [s["name"] for s in orjson.loads(post.body)]
    return out


async def start_collector(aiohttp_server: ServerFactory, collector: FakeCollector) -> str:
    server = await aiohttp_server(collector.app())
    return str(server.make_url("/api/v2/spans"))


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def settings(**kw: float) -> ReporterSettings:
    base = {
        "flush_interval": 30.0,
        "min_batch": 3,
        "max_batch": 10,
        "buffer_capacity": 100,
        "request_timeout": 2.0,
    }
    return ReporterSettings(**(base | kw))  # type: ignore[arg-type]


async def test_flush_by_size(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector()
    reporter = Reporter(await start_collector(aiohttp_server, collector), JSON, settings())
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 3)
    assert len(collector.posts) == 1 and names(collector) == ["s0", "s1", "s2"]
    await reporter.aclose()


async def test_flush_by_interval(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector()
    reporter = Reporter(
        await start_collector(aiohttp_server, collector),
        JSON,
        settings(flush_interval=0.1, min_batch=50, max_batch=50),
    )
    await reporter.start()
    reporter.submit(json_span(0))
    await wait_for(lambda: reporter.stats.spans_sent == 1)
    assert names(collector) == ["s0"]
    assert reporter.stats.timer_flushed == 1  # Envoy's tracing.zipkin.timer_flushed
    await reporter.aclose()


async def test_max_batch_splits_posts(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector()
    reporter = Reporter(
        await start_collector(aiohttp_server, collector), JSON, settings(min_batch=10, max_batch=10)
    )
    await reporter.start()
    for i in range(25):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 20)
    assert [len(orjson.loads(p.body)) for p in collector.posts] == [10, 10]
    await reporter.aclose()  # the 5 left go out in the final flush
    assert names(collector) == [f"s{i}" for i in range(25)]


# A plain http:// URL goes through the reporter's own client; one with credentials through aiohttp
# (as https:// does), which sends them as Basic authorization.
USERINFO = [pytest.param("", id="own-client"), pytest.param("user:pw@", id="aiohttp")]


def with_userinfo(url: str, userinfo: str) -> str:
    return url.replace("http://", f"http://{userinfo}", 1)


@pytest.mark.parametrize("userinfo", USERINFO)
async def test_headers_on_every_post(aiohttp_server: ServerFactory, userinfo: str) -> None:
    collector = FakeCollector()
    url = with_userinfo(await start_collector(aiohttp_server, collector), userinfo)
    reporter = Reporter(url, JSON, settings())
    await reporter.start()
    for batch in range(2):
        for i in range(3):
            reporter.submit(json_span(batch * 3 + i))
        await wait_for(lambda b=batch: reporter.stats.spans_sent == 3 * (b + 1))  # type: ignore[misc]
    assert len(collector.posts) == 2
    for post in collector.posts:
        assert post.headers["b3"] == "0"
        assert post.headers["Content-Type"] == "application/json"
        assert post.headers.get("Authorization") == ("Basic dXNlcjpwdw==" if userinfo else None)
        assert post.headers["User-Agent"].startswith("kuma-trace-sidecar/" if not userinfo else "Python")
    await reporter.aclose()


async def test_protobuf_body(aiohttp_server: ServerFactory, zipkin_pb2: SimpleNamespace) -> None:
    collector = FakeCollector()
    reporter = Reporter(await start_collector(aiohttp_server, collector), PROTO, settings())
    await reporter.start()
    for i in range(3):
        reporter.submit(proto_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 3)
    (post,) = collector.posts
    assert post.headers["Content-Type"] == "application/x-protobuf"
    msg = zipkin_pb2.ListOfSpans()
    msg.ParseFromString(post.body)
    assert [s.name for s in msg.spans] == ["s0", "s1", "s2"]
    assert [s["name"] for s in decode_list_of_spans(post.body)] == ["s0", "s1", "s2"]
    await reporter.aclose()


# Delivery semantics (module docstring of sidecar/reporting/reporter.py): at most once.
@pytest.mark.parametrize("status", [400, 429, 500, 503])
async def test_any_response_settles_the_batch(aiohttp_server: ServerFactory, status: int) -> None:
    collector = FakeCollector(script=[(status, 0.0)])
    reporter = Reporter(await start_collector(aiohttp_server, collector), JSON, settings())
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_dropped["rejected"] == 3)
    for i in range(3, 6):  # the next batch goes out normally: nothing of the first is sent again
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 3)
    await reporter.aclose()
    assert names(collector) == [f"s{i}" for i in range(6)]
    stats = reporter.stats
    assert (stats.reports_dropped, stats.reports_sent, stats.reports_failed) == (1, 1, 0)
    assert stats.last_error.startswith(f"HTTP {status}")


async def test_accepted_then_stalled_is_not_sent_again(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector(script=[(202, 5.0)])
    reporter = Reporter(await start_collector(aiohttp_server, collector), JSON, settings(request_timeout=0.3))
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_dropped["no_response"] == 3)
    # While the flusher waited on that POST, submit still appended synchronously.
    for i in range(3, 6):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 3)
    await reporter.aclose()
    assert names(collector) == [f"s{i}" for i in range(6)]
    assert reporter.stats.reports_failed == 1 and "TimeoutError" in reporter.stats.last_error


async def test_accepted_then_reset_is_not_sent_again(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector(script=[(RESET, 0.0)])
    reporter = Reporter(await start_collector(aiohttp_server, collector), JSON, settings())
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_dropped["no_response"] == 3)
    await reporter.aclose()
    assert names(collector) == ["s0", "s1", "s2"]
    assert reporter.stats.reports_failed == 1 and reporter.stats.spans_sent == 0


@pytest.mark.parametrize("userinfo", USERINFO)
async def test_reset_while_the_body_is_written_is_sent_again(userinfo: str) -> None:
    """The collector cuts the connection after the head, with most of the body not yet handed over:
    it cannot have stored the batch, so the batch goes again, on a new connection, and arrives once."""
    bodies: list[bytes] = []
    cut = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal cut
        head = await reader.readuntil(b"\r\n\r\n")
        if not cut:
            cut += 1
            writer.transport.abort()  # body bytes left unread in the socket: the close sends RST
            return
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        bodies.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        await reader.read()  # until the reporter closes its connection
        writer.close()

    server, port = await narrow_server(serve)  # a body of 12 MB cannot leave whole
    url = with_userinfo(f"http://127.0.0.1:{port}/api/v2/spans", userinfo)
    spans = [orjson.dumps({"traceId": f"{i + 1:016x}", "name": f"s{i}" + "x" * 4_000_000}) for i in range(3)]
    reporter = Reporter(url, JSON, settings(request_timeout=10.0), rng=random.Random(1))
    await reporter.start()
    try:
        for span in spans:
            reporter.submit(span)
        await wait_for(
            lambda: reporter.stats.spans_sent + sum(reporter.stats.spans_dropped.values()) == 3, 20
        )
        await reporter.aclose()
    finally:
        server.close()
        await server.wait_closed()
    assert cut == 1 and reporter.stats.reports_failed == 1
    assert reporter.stats.spans_sent == 3 and sum(reporter.stats.spans_dropped.values()) == 0
    assert bodies == [b"[" + b",".join(spans) + b"]"]


async def test_refused_connection_is_retried_and_delivered_once() -> None:
    collector = FakeCollector()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused, the port stays ours
    port = sock.getsockname()[1]
    reporter = Reporter(
        f"http://127.0.0.1:{port}/api/v2/spans", JSON, settings(retry_budget=30.0), rng=random.Random(1)
    )
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.reports_failed >= 2)
    assert "ConnectionRefusedError" in reporter.stats.last_error
    sock.listen()
    runner = web.AppRunner(collector.app())
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        await wait_for(lambda: reporter.stats.spans_sent == 3, timeout=10)
        await reporter.aclose()
        assert names(collector) == ["s0", "s1", "s2"]
        assert sum(reporter.stats.spans_dropped.values()) == 0
    finally:
        await runner.cleanup()


async def test_first_failure_logs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v2/spans"
    reporter = Reporter(url, JSON, settings(retry_budget=30.0))
    with caplog.at_level(logging.WARNING, logger="sidecar.reporting.reporter"):
        await reporter.start()
        for i in range(3):
            reporter.submit(json_span(i))
        await wait_for(lambda: reporter.stats.reports_failed >= 3)
        await reporter.aclose(timeout=0.1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and url in warnings[0] and "ConnectionRefusedError" in warnings[0]
    assert reporter.stats.spans_dropped["shutdown"] == 3  # cut by close, never sent
    sock.close()


async def test_close_lets_the_inflight_post_finish(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector(script=[(202, 0.3)])
    reporter = Reporter(await start_collector(aiohttp_server, collector), JSON, settings())
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await collector.arrived.wait()
    reporter.submit(json_span(3))  # buffered behind the in-flight POST
    await reporter.aclose(timeout=2.0)
    assert names(collector) == ["s0", "s1", "s2", "s3"]
    assert reporter.stats.spans_sent == 4 and sum(reporter.stats.spans_dropped.values()) == 0


async def test_close_timeout_drops_the_inflight_batch_without_resending(
    aiohttp_server: ServerFactory,
) -> None:
    collector = FakeCollector(script=[(202, 5.0)])
    reporter = Reporter(await start_collector(aiohttp_server, collector), JSON, settings())
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await collector.arrived.wait()
    await reporter.aclose(timeout=0.2)
    assert len(collector.posts) == 1
    assert reporter.stats.spans_dropped["shutdown"] == 3 and reporter.stats.spans_sent == 0


async def test_collector_down_bounded_memory_and_drops_counted() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v2/spans"
    reporter = Reporter(url, JSON, settings(buffer_capacity=50, retry_budget=0.3))
    await reporter.start()
    for i in range(500):
        reporter.submit(json_span(i))
        if i % 50 == 0:
            await asyncio.sleep(0.01)
    assert len(reporter._buffer) <= 50
    stats = reporter.stats
    assert stats.buffer_size == len(reporter._buffer)  # the gauge follows submit, not just flushes
    assert stats.spans_dropped["buffer_full"] >= 400
    await wait_for(lambda: stats.spans_dropped["retries_exhausted"] > 0)
    await reporter.aclose(timeout=0.2)
    accounted = stats.spans_sent + sum(stats.spans_dropped.values())
    assert accounted == 500 == stats.spans_received and stats.spans_sent == 0
    sock.close()


async def test_final_flush_on_close(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector()
    reporter = Reporter(
        await start_collector(aiohttp_server, collector), JSON, settings(min_batch=50, max_batch=50)
    )
    await reporter.start()
    for i in range(5):
        reporter.submit(json_span(i))
    await asyncio.sleep(0.05)
    assert collector.posts == []
    await reporter.aclose(timeout=2.0)
    assert names(collector) == [f"s{i}" for i in range(5)]
    reporter.submit(json_span(99))  # after close: counted, not kept
    assert reporter.stats.spans_dropped["shutdown"] == 1


def test_settings_from_env_and_errors() -> None:
    s = ReporterSettings.from_env(
        {"SIDECAR_REPORTER_FLUSH_INTERVAL": "0.5", "SIDECAR_REPORTER_MAX_BATCH": "500"}
    )
    # A max_batch below the default min_batch, set alone, lowers min_batch with it; above, it leaves it.
    assert s.flush_interval == 0.5 and s.max_batch == 500 and s.min_batch == ReporterSettings().min_batch
    s = ReporterSettings.from_env({"SIDECAR_REPORTER_MAX_BATCH": "100"})
    assert s.max_batch == 100 and s.min_batch == 100
    with pytest.raises(SettingsError, match="min_batch <= max_batch"):  # both given: a real conflict
        ReporterSettings.from_env({"SIDECAR_REPORTER_MIN_BATCH": "600", "SIDECAR_REPORTER_MAX_BATCH": "500"})
    with pytest.raises(SettingsError, match="SIDECAR_REPORTER_MIN_BATCH: expected an integer"):
        ReporterSettings.from_env({"SIDECAR_REPORTER_MIN_BATCH": "lots"})
    with pytest.raises(SettingsError, match="min_batch <= max_batch"):
        ReporterSettings(min_batch=10, max_batch=5)
    with pytest.raises(SettingsError, match="buffer_capacity"):
        ReporterSettings(buffer_capacity=10)
    assert ReporterSettings().replace(max_batch=None, min_batch=7).min_batch == 7


async def test_a_backlog_goes_out_in_parallel_a_trickle_one_post_at_a_time(
    aiohttp_server: ServerFactory,
) -> None:
    collector = FakeCollector(script=[(202, 0.3)] * 20)
    reporter = Reporter(
        await start_collector(aiohttp_server, collector), JSON, settings(min_batch=3, max_batch=10)
    )
    await reporter.start()
    for i in range(3):  # a trickle: one POST, and what comes meanwhile waits for it to grow
        reporter.submit(json_span(i))
    await collector.arrived.wait()
    for i in range(3, 9):
        reporter.submit(json_span(i))
        await asyncio.sleep(0)
    await wait_for(lambda: reporter.stats.spans_sent == 9)
    assert collector.most_active == 1 and [len(orjson.loads(p.body)) for p in collector.posts] == [3, 6]
    for i in range(9, 49):  # a backlog of 4 full batches: they go out together
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 49)
    assert collector.most_active == MAX_INFLIGHT
    await reporter.aclose()
    assert sorted(names(collector)) == sorted(f"s{i}" for i in range(49))
