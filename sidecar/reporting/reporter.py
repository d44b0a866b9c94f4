"""Ships encoded spans of one backend in batched Zipkin v2 POSTs; never blocks or fails traffic.

`submit` appends bytes to a bounded deque and wakes the flusher only when a batch is ready. One
flusher task sends one POST at a time, retrying connection errors, timeouts, 429 and 5xx with capped
exponential backoff and jitter for a bounded time; other 4xx drop the batch. When the buffer is full new
spans are dropped and counted, so memory stays bounded whatever the collector does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque

import aiohttp

from sidecar.reporting.settings import ReporterSettings
from sidecar.reporting.stats import ReporterStats

log = logging.getLogger(__name__)

JSON = "application/json"
PROTO = "application/x-protobuf"
_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 5.0


def batch_body(api_version: str, spans: list[bytes]) -> bytes:
    """JSON spans are objects joined into an array; proto spans are complete ListOfSpans entries."""
    if api_version == "httpProto":
        return b"".join(spans)
    return b"[" + b",".join(spans) + b"]"


class _Retry(Exception):
    pass


class Reporter:
    """Ships encoded spans of one backend in batches; `submit` never blocks and never raises."""

    def __init__(
        self,
        url: str,
        api_version: str = "httpJson",
        settings: ReporterSettings | None = None,
        *,
        stats: ReporterStats | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.api_version = api_version
        self.settings = settings or ReporterSettings()
        self.stats = stats or ReporterStats()
        self.stats.buffer_capacity = self.settings.buffer_capacity
        self._buffer: deque[bytes] = deque()
        self._capacity = self.settings.buffer_capacity
        self._min_batch = self.settings.min_batch
        self._wake = asyncio.Event()
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[bytes] | None = None  # the batch the flusher holds, re-queued on close
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self._headers = {"Content-Type": PROTO if api_version == "httpProto" else JSON, "b3": "0"}

    # Hot path -----------------------------------------------------------------------------------
    def submit(self, span: bytes) -> None:
        buffer = self._buffer
        stats = self.stats
        stats.spans_received += 1
        if len(buffer) >= self._capacity or self._closing:
            stats.spans_dropped["buffer_full" if not self._closing else "shutdown"] += 1
            return
        buffer.append(span)
        stats.spans_submitted += 1
        stats.buffer_size = size = len(buffer)
        if size >= self._min_batch and not self._wake.is_set():
            self._wake.set()

    # Life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        connector = aiohttp.TCPConnector(limit=1, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        self._task = asyncio.create_task(self._run(), name=f"reporter {self.url}")

    async def aclose(self, timeout: float = 2.0) -> None:
        """Stop the flusher, then one last flush of what is buffered within `timeout`; the rest is dropped."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:  # cancelled mid-send or mid-backoff: it gets the final flush like the rest
            self._buffer.extendleft(reversed(self._inflight))
            self._inflight = None
        deadline = time.monotonic() + timeout
        try:
            while self._buffer and time.monotonic() < deadline:
                batch = self._take()
                try:
                    async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                        await self._post(batch)
                except (_Retry, TimeoutError):
                    self._drop(batch, "shutdown")
        finally:
            if self._buffer:
                self._drop(list(self._buffer), "shutdown")
                self._buffer.clear()
            self.stats.buffer_size = 0
            if self._session is not None:
                await self._session.close()

    # Flusher ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        interval = self.settings.flush_interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            # After a wake-up send full batches; after the interval send whatever waits.
            while self._buffer:
                self._inflight = self._take()
                await self._send_with_retry(self._inflight)
                self._inflight = None
                if len(self._buffer) < self._min_batch:
                    break
            self.stats.buffer_size = len(self._buffer)

    def _take(self) -> list[bytes]:
        buffer = self._buffer
        n = min(len(buffer), self.settings.max_batch)
        batch = [buffer.popleft() for _ in range(n)]
        self.stats.buffer_size = len(buffer)
        return batch

    def _drop(self, batch: list[bytes], reason: str) -> None:
        self.stats.spans_dropped[reason] += len(batch)
        self.stats.reports_dropped += 1

    async def _send_with_retry(self, batch: list[bytes]) -> None:
        deadline = time.monotonic() + self.settings.retry_budget
        attempt = 0
        while True:
            try:
                await self._post(batch)
                return
            except _Retry as exc:
                self.stats.reports_failed += 1
                delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt) * self._rng.uniform(0.5, 1.0)
                attempt += 1
                if time.monotonic() + delay > deadline:
                    log.warning("dropping %d spans for %s: %s (retries exhausted)", len(batch), self.url, exc)
                    self._drop(batch, "retries_exhausted")
                    return
                log.debug("retrying %d spans for %s in %.2fs: %s", len(batch), self.url, delay, exc)
                await asyncio.sleep(delay)

    async def _post(self, batch: list[bytes]) -> None:
        """One POST; returns when the batch is settled (sent or rejected), raises _Retry otherwise."""
        assert self._session is not None, "start() first"
        body = batch_body(self.api_version, batch)
        try:
            async with self._session.post(self.url, data=body, headers=self._headers) as resp:
                status = resp.status
                detail = (await resp.read())[:200]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            self.stats.reports_sent += 1
            self.stats.spans_sent += len(batch)
        elif status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}")
        else:
            log.warning("collector %s rejected %d spans: HTTP %d %r", self.url, len(batch), status, detail)
            self._drop(batch, "rejected")
