"""HTTP transports: Zipkin v2 POSTs and OTLP/HTTP, over one aiohttp session each.

Both know whether a failed request reached the backend whole: aiohttp reports every request chunk
written, so a connection error before the last byte is NotSent (safe to resend), after it NoResponse.
They differ in what a response means: Zipkin settles a batch on any HTTP answer (2xx sent, anything
else dropped), OTLP/HTTP retries 429, 502, 503 and 504 (after `Retry-After` when given) and reads
`partial_success` from a 2xx.
"""

from __future__ import annotations

import email.utils
import time
from types import SimpleNamespace

import aiohttp

from sidecar.reporting.transport import NoResponse, NotSent, Rejected, RetryLater
from sidecar.tracing.encode_otlp import decode_partial_success

MAX_CONNECTIONS = 4  # the reporter's MAX_INFLIGHT: one connection per request in flight
OTLP_RETRYABLE = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is capped (the retry budget drops the batch anyway)


async def _on_chunk_sent(
    _session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestChunkSentParams
) -> None:
    ctx.trace_request_ctx.sent += len(params.chunk)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


class HttpTransport:
    """POSTs each batch to one URL; `protocol` is `zipkin` or `otlp_http`."""

    def __init__(self, url: str, content_type: str, protocol: str, timeout: float) -> None:
        self.url = url
        self._protocol = protocol
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        # `b3: 0`: the collector must not trace its own intake (Envoy does the same for its reports).
        self._headers = {"Content-Type": content_type, "b3": "0"}

    @property
    def target(self) -> str:
        return self.url

    @property
    def protocol(self) -> str:
        return self._protocol

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=30)
        trace = aiohttp.TraceConfig(trace_config_ctx_factory=SimpleNamespace)
        trace.on_request_chunk_sent.append(_on_chunk_sent)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout), connector=connector, trace_configs=[trace]
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, body: bytes, spans: int) -> tuple[int, str]:
        assert self._session is not None, "start() first"
        progress = SimpleNamespace(sent=0)
        try:
            async with self._session.post(
                self.url, data=body, headers=self._headers, trace_request_ctx=progress
            ) as resp:
                status = resp.status
                answer = await resp.read()
                later = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if progress.sent >= len(body):
                raise NoResponse(reason) from None
            raise NotSent(reason) from None
        if 200 <= status < 300:
            if self._protocol == "otlp_http":
                return decode_partial_success(answer)
            return 0, ""
        reason = f"HTTP {status} {answer[:200].decode('utf-8', 'replace')!r}"
        if self._protocol == "otlp_http" and status in OTLP_RETRYABLE:
            raise RetryLater(reason, retry_after(later))
        raise Rejected(reason)
