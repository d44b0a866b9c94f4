"""Ships encoded spans of one backend in batches over one transport; never blocks or fails traffic.

`submit` appends bytes to a bounded deque and wakes the flusher only when a batch is ready. The
flusher sends one request at a time, and up to MAX_INFLIGHT while full batches wait (one at a time
cannot keep up on a loop busy with a thousand connections, where each request waits several turns).
The wire protocol is the transport's (Zipkin v2 over HTTP, OTLP over HTTP or gRPC: transport.py says
how each reports a failure); buffering, batching, retries and counting are the same for all. Delivery is
at most once, because Zipkin and Jaeger deduplicate nothing (a span sent twice shows twice in the UI):

- a batch whose request got an answer is settled: accepted is sent (less the spans an OTLP
  `partial_success` says were rejected), a refusal dropped (`rejected`);
- a batch whose request was not fully handed to the connection (connection refused, reset while
  sending, connect timeout), or that the backend answered it did not process (OTLP's retryable
  statuses), is retried with capped exponential backoff and jitter, or after the delay the backend
  asked for, within `retry_budget`, then dropped (`retries_exhausted`);
- a batch sent in full that got no response (timeout, reset while waiting) may have been stored: never
  sent again, dropped (`no_response`);
- on close the flusher gets `timeout` seconds to send what is buffered, an in-flight POST included; what
  is left then is dropped (`shutdown`), the in-flight batch too, never re-queued.

When the buffer is full new spans are dropped (`buffer_full`), so memory stays bounded whatever the
collector does: every span handed to `submit` ends up counted once, sent or dropped by reason. The first
failure logs one WARNING with the target and the reason (then one a minute), and `stats.last_error`
keeps the latest reason for the admin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque

from sidecar.reporting.http import HttpTransport
from sidecar.reporting.settings import ReporterSettings
from sidecar.reporting.stats import ReporterStats
from sidecar.reporting.transport import NoResponse, NotSent, Rejected, ReportError, RetryLater, Transport
from sidecar.tracing.encoding import JSON, Encoding

log = logging.getLogger(__name__)

MAX_INFLIGHT = 4  # POSTs at once: on a busy loop each takes several turns, so one at a time falls behind
_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 5.0
_WARN_EVERY = 60.0  # seconds between warnings about the same collector


class Reporter:
    """Ships encoded spans of one backend in batches; `submit` never blocks and never raises."""

    def __init__(
        self,
        url: str,  # the transport's target; with no transport given, a Zipkin v2 URL
        encoding: Encoding = JSON,
        settings: ReporterSettings | None = None,
        *,
        stats: ReporterStats | None = None,
        rng: random.Random | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.settings = settings or ReporterSettings()
        self.transport: Transport = transport or HttpTransport(
            url, encoding.content_type, "zipkin", self.settings.request_timeout
        )
        self.url = self.transport.target
        self.encoding = encoding
        self.stats = stats or ReporterStats()
        self.stats.protocol = self.transport.protocol
        self.stats.buffer_capacity = self.settings.buffer_capacity
        self._buffer: deque[bytes] = deque()
        self._capacity = self.settings.buffer_capacity
        self._min_batch = self.settings.min_batch
        self._wake = asyncio.Event()
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[asyncio.Task[None], list[bytes]] = {}  # POSTs under way and their batch
        self._slots = asyncio.Semaphore(MAX_INFLIGHT)
        self._settled = asyncio.Event()  # a POST finished, or a full batch waits
        self._max_batch = self.settings.max_batch
        self._closing = False
        self._last_warning = -_WARN_EVERY

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
        if size >= self._max_batch and not self._settled.is_set():
            self._settled.set()

    # Life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.transport.start()
        self._task = asyncio.create_task(self._run(), name=f"reporter {self.url}")

    async def aclose(self, timeout: float = 2.0) -> None:
        """Send what is buffered within `timeout` (an in-flight POST may finish); drop the rest."""
        self._closing = True
        self._wake.set()
        self._settled.set()
        deadline = asyncio.get_running_loop().time() + timeout
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        sending = list(self._inflight)
        if sending:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            _, late = await asyncio.wait(sending, timeout=left)
            for post in late:
                post.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for batch in self._inflight.values():  # cut off by the timeout: maybe sent, never re-queued
            self._drop(batch, "shutdown")
        self._inflight.clear()
        if self._buffer:
            self._drop(list(self._buffer), "shutdown")
            self._buffer.clear()
        self.stats.buffer_size = 0
        await self.transport.aclose()

    # Flusher ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        interval = self.settings.flush_interval
        while True:
            woken = True
            if not self._closing:
                try:
                    async with asyncio.timeout(interval):
                        await self._wake.wait()
                except TimeoutError:
                    woken = False
            self._wake.clear()
            if not woken and self._buffer:
                self.stats.timer_flushed += 1
            # After a wake-up send full batches; after the interval (or on close) whatever waits.
            while self._buffer:
                if self._inflight and len(self._buffer) < self._max_batch and not self._closing:
                    # Less than a full batch waits: let it grow while the POST under way finishes
                    # (fewer, larger POSTs); a second POST starts only for a backlog.
                    self._settled.clear()
                    await self._settled.wait()
                    if len(self._buffer) < self._min_batch and not self._closing:
                        break
                    continue
                await self._slots.acquire()  # at most MAX_INFLIGHT POSTs at once
                batch = self._take()
                post = asyncio.create_task(self._send(batch))
                self._inflight[post] = batch
                post.add_done_callback(self._posted)
                if len(self._buffer) < self._min_batch and not self._closing:
                    break
            self.stats.buffer_size = len(self._buffer)
            if self._closing:
                return

    def _posted(self, post: asyncio.Task[None]) -> None:
        if not post.cancelled():
            self._inflight.pop(post, None)  # a cancelled one is dropped by aclose
        self._slots.release()
        self._settled.set()

    def _take(self) -> list[bytes]:
        buffer = self._buffer
        n = min(len(buffer), self.settings.max_batch)
        batch = [buffer.popleft() for _ in range(n)]
        self.stats.buffer_size = len(buffer)
        return batch

    def _drop(self, batch: list[bytes], reason: str) -> None:
        self.stats.spans_dropped[reason] += len(batch)
        self.stats.reports_dropped += 1

    async def _send(self, batch: list[bytes]) -> None:
        """Send `batch` until it is settled; retries only what certainly was not processed."""
        deadline = time.monotonic() + self.settings.retry_budget
        attempt = 0
        body = self.encoding.encode_batch(batch)
        stats = self.stats
        while True:
            try:
                rejected, message = await self.transport.send(body, len(batch))
            except (NotSent, RetryLater) as exc:
                stats.reports_failed += 1
                self._note_error(str(exc), batch)
                backoff = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt) * self._rng.uniform(0.5, 1.0)
                delay = exc.delay if isinstance(exc, RetryLater) and exc.delay is not None else backoff
                attempt += 1
                if time.monotonic() + delay > deadline:
                    log.warning("dropping %d spans for %s: %s (retries exhausted)", len(batch), self.url, exc)
                    self._drop(batch, "retries_exhausted")
                    return
                stats.reports_retried += 1
                await asyncio.sleep(delay)
                continue
            except NoResponse as exc:
                stats.reports_failed += 1
                self._note_error(str(exc), batch)
                self._drop(batch, "no_response")
                return
            except Rejected as exc:
                self._note_error(str(exc), batch)
                self._drop(batch, "rejected")
                return
            except ReportError as exc:  # a transport's own subclass: treated as a refusal
                self._note_error(str(exc), batch)
                self._drop(batch, "rejected")
                return
            rejected = min(max(rejected, 0), len(batch))
            stats.reports_sent += 1
            stats.spans_sent += len(batch) - rejected
            if rejected:
                stats.spans_dropped["rejected"] += rejected
                self._note_error(f"the backend rejected {rejected} of {len(batch)} spans: {message}", batch)
            return

    def _note_error(self, reason: str, batch: list[bytes]) -> None:
        self.stats.last_error = reason
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            log.warning("span report to %s failed (%d spans): %s", self.url, len(batch), reason)
