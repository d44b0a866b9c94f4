"""The reporter against a real HTTP collector on loopback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import orjson
import pytest
from aiohttp.test_utils import TestServer

from sidecar.collector.proto import decode_list_of_spans
from sidecar.reporting import Reporter, ReporterSettings, SettingsError
from sidecar.tracing import encode_proto
from sidecar.tracing.span import Span
from tests.reporting.fake_collector import FakeCollector
from tests.util import free_port

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
    reporter = Reporter(await start_collector(aiohttp_server, collector), "httpJson", settings())
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
        "httpJson",
        settings(flush_interval=0.1, min_batch=50, max_batch=50),
    )
    await reporter.start()
    reporter.submit(json_span(0))
    await wait_for(lambda: reporter.stats.spans_sent == 1)
    assert names(collector) == ["s0"]
    await reporter.aclose()


async def test_max_batch_splits_posts(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector()
    reporter = Reporter(
        await start_collector(aiohttp_server, collector), "httpJson", settings(min_batch=10, max_batch=10)
    )
    await reporter.start()
    for i in range(25):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 20)
    assert [len(orjson.loads(p.body)) for p in collector.posts] == [10, 10]
    await reporter.aclose()  # the 5 left go out in the final flush
    assert names(collector) == [f"s{i}" for i in range(25)]


async def test_headers_on_every_post(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector(script=[(503, 0.0)])
    reporter = Reporter(await start_collector(aiohttp_server, collector), "httpJson", settings())
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 3)
    assert len(collector.posts) == 2
    for post in collector.posts:
        assert post.headers["b3"] == "0"
        assert post.headers["Content-Type"] == "application/json"
    await reporter.aclose()


async def test_protobuf_body(aiohttp_server: ServerFactory, zipkin_pb2: SimpleNamespace) -> None:
    collector = FakeCollector()
    reporter = Reporter(await start_collector(aiohttp_server, collector), "httpProto", settings())
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


async def test_503_then_recovery_delivers_once(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector(script=[(503, 0.0), (503, 0.0)])
    reporter = Reporter(
        await start_collector(aiohttp_server, collector), "httpJson", settings(), rng=random.Random(1)
    )
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 3)
    assert reporter.stats.reports_failed == 2 and reporter.stats.reports_sent == 1
    assert len(collector.posts) == 3
    assert orjson.loads(collector.posts[-1].body) == [orjson.loads(json_span(i)) for i in range(3)]
    await reporter.aclose()
    assert sum(reporter.stats.spans_dropped.values()) == 0


async def test_429_is_retried(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector(script=[(429, 0.0)])
    reporter = Reporter(await start_collector(aiohttp_server, collector), "httpJson", settings())
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 3)
    await reporter.aclose()


async def test_400_drops_the_batch_without_retry(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector(script=[(400, 0.0)])
    reporter = Reporter(await start_collector(aiohttp_server, collector), "httpJson", settings())
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_dropped["rejected"] == 3)
    await asyncio.sleep(0.2)
    assert (
        len(collector.posts) == 1 and reporter.stats.reports_dropped == 1 and reporter.stats.spans_sent == 0
    )
    await reporter.aclose()


async def test_hanging_collector_times_out_and_submit_stays_instant(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector(script=[(202, 30.0)] * 10)
    reporter = Reporter(
        await start_collector(aiohttp_server, collector),
        "httpJson",
        settings(request_timeout=0.2, retry_budget=0.5),
    )
    await reporter.start()
    for i in range(3):
        reporter.submit(json_span(i))
    await wait_for(lambda: reporter.stats.spans_dropped["retries_exhausted"] == 3)
    assert reporter.stats.reports_failed >= 2
    # While the flusher is stuck in a POST, submit still appends synchronously.
    before = reporter.stats.spans_submitted
    for i in range(50):
        reporter.submit(json_span(i))
    assert reporter.stats.spans_submitted == before + 50
    await reporter.aclose(timeout=0.3)


async def test_collector_down_bounded_memory_and_drops_counted() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v2/spans"
    reporter = Reporter(url, "httpJson", settings(buffer_capacity=50, retry_budget=0.3))
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


async def test_final_flush_on_close(aiohttp_server: ServerFactory) -> None:
    collector = FakeCollector()
    reporter = Reporter(
        await start_collector(aiohttp_server, collector), "httpJson", settings(min_batch=50, max_batch=50)
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
    assert s.flush_interval == 0.5 and s.max_batch == 500 and s.min_batch == ReporterSettings().min_batch
    with pytest.raises(SettingsError, match="SIDECAR_REPORTER_MIN_BATCH: expected an integer"):
        ReporterSettings.from_env({"SIDECAR_REPORTER_MIN_BATCH": "lots"})
    with pytest.raises(SettingsError, match="min_batch <= max_batch"):
        ReporterSettings(min_batch=10, max_batch=5)
    with pytest.raises(SettingsError, match="buffer_capacity"):
        ReporterSettings(buffer_capacity=10)
    assert ReporterSettings().replace(max_batch=None, min_batch=7).min_batch == 7
