"""HTTP transports: Zipkin v2 POSTs and OTLP/HTTP; to a plain http:// URL over the reporter's own
client (http_client.py), to https:// or a URL with credentials over an aiohttp session.

Both know whether a failed request reached the backend whole, so that a connection error before that
is NotSent (safe to resend), after it NoResponse. The own client knows it exactly (every byte left the
process); over aiohttp the body marks itself handed over once aiohttp's write of it returns, every byte
in the connection's transport, so there the error can only lean one way: a reset while the transport
still buffers the last bytes counts as NoResponse, a lost batch, never a duplicate.

Zipkin and OTLP/HTTP differ in what a response means: Zipkin settles a batch on any HTTP answer (2xx
sent, anything else dropped), OTLP/HTTP retries 429, 502, 503 and 504 (after `Retry-After` when
given) and reads `partial_success` from a 2xx.
"""

from __future__ import annotations

import email.utils
import time
import urllib.parse

import aiohttp
from aiohttp.abc import AbstractStreamWriter

from sidecar import __version__
from sidecar.reporting.http_client import Failed, HttpClient
from sidecar.reporting.transport import NoResponse, NotSent, Rejected, RetryLater
from sidecar.tracing.encode_otlp import decode_partial_success

MAX_CONNECTIONS = 4  # the reporter's MAX_INFLIGHT: one connection per request in flight
OTLP_RETRYABLE = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is capped (the retry budget drops the batch anyway)
USER_AGENT = f"kuma-trace-sidecar/{__version__}"


class Body(aiohttp.BytesPayload):
    """A batch's body that knows whether it was handed to the connection whole. aiohttp writes a body
    through `write` (up to 3.11) or `write_with_length` (3.12 on); either returns once the bytes are
    in the transport, or raises if the connection broke first. (A request-progress trace hook did this
    job before: a sixth of a POST's instructions, and it counted a chunk as sent before writing it.)"""

    handed = False

    async def write(self, writer: AbstractStreamWriter) -> None:
        await super().write(writer)
        self.handed = True

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        await super().write_with_length(writer, content_length)
        self.handed = True


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
    """POSTs each batch to one URL; `protocol` is `zipkin` or `otlp_http`. A plain http:// URL goes
    through the reporter's own client (`http_client.py`, cheaper on the proxy's loop); https:// and a
    URL with credentials through aiohttp."""

    def __init__(self, url: str, content_type: str, protocol: str, timeout: float) -> None:
        self.url = url
        self._protocol = protocol
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._client: HttpClient | None = None
        # `b3: 0`: the collector must not trace its own intake (Envoy does the same for its reports).
        self._headers = {"Content-Type": content_type, "b3": "0"}
        self._head = self._plain_head(url, content_type)

    @staticmethod
    def _plain_head(url: str, content_type: str) -> bytes | None:
        """The request head up to the body's length, for a plain http:// URL without credentials
        whose host is ASCII (an IDN goes through aiohttp, which encodes it); else None."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or parts.username is not None or parts.password is not None:
            return None
        # What aiohttp would send: spaces and non-ASCII escaped, escapes already there kept.
        target = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
        if parts.query:
            target += "?" + urllib.parse.quote(parts.query, safe="/%:@!$&'()*+,;=~?")
        try:
            return (
                f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: {USER_AGENT}\r\n"
                f"Content-Type: {content_type}\r\nb3: 0\r\nContent-Length: "
            ).encode("ascii")
        except UnicodeEncodeError:
            return None

    @property
    def target(self) -> str:
        return self.url

    @property
    def protocol(self) -> str:
        return self._protocol

    async def start(self) -> None:
        if self._head is not None:
            parts = urllib.parse.urlsplit(self.url)
            self._client = HttpClient(parts.hostname or "", parts.port or 80, limit=MAX_CONNECTIONS)
            return
        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout), connector=connector
        )

    async def aclose(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._session is not None:
            await self._session.close()

    async def send(self, body: bytes, spans: int) -> tuple[int, str]:
        if self._client is not None:
            assert self._head is not None
            try:
                answer = await self._client.request(
                    self._head + b"%d\r\n\r\n" % len(body), body, self._timeout
                )
            except Failed as exc:
                if exc.handed:
                    raise NoResponse(str(exc)) from None
                raise NotSent(str(exc)) from None
            return self._settle(answer.status, answer.body, answer.retry_after)
        assert self._session is not None, "start() first"
        payload = Body(body)
        try:
            async with self._session.post(self.url, data=payload, headers=self._headers) as resp:
                status = resp.status
                answer_body = await resp.read()
                later = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if payload.handed:
                raise NoResponse(reason) from None
            raise NotSent(reason) from None
        return self._settle(status, answer_body, later)

    def _settle(self, status: int, answer: bytes, later: str | None) -> tuple[int, str]:
        """What an answer means for the batch: (spans rejected, message), or a ReportError."""
        if 200 <= status < 300:
            if self._protocol == "otlp_http":
                return decode_partial_success(answer)
            return 0, ""
        reason = f"HTTP {status} {answer[:200].decode('utf-8', 'replace')!r}"
        if self._protocol == "otlp_http" and status in OTLP_RETRYABLE:
            raise RetryLater(reason, retry_after(later))
        raise Rejected(reason)
