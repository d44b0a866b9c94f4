"""The seam between the reporter and a wire protocol: one request per batch, and how it ended.

A transport sends one encoded batch and returns how many of its spans the backend said it rejected
(OTLP's partial_success; 0 otherwise), or raises one of the exceptions below, which tell the reporter
whether the batch may be sent again without risking a duplicate:

    Exception
     +-- ReportError            a request that did not settle the batch as accepted
          +-- NotSent           the request did not reach the backend whole: safe to send again
          +-- RetryLater        the backend answered that it did not take the batch, try later
          +-- NoResponse        sent in full, no answer: it may have been stored, never sent again
          +-- Rejected          the backend answered no for good: dropped
"""

from __future__ import annotations

from typing import Protocol


class ReportError(Exception):
    """A request that did not settle its batch as accepted; the message is for logs and the admin."""


class NotSent(ReportError):
    """The request did not reach the backend whole (refused, reset while sending): safe to resend."""


class RetryLater(ReportError):
    """The backend answered that it did not process the batch (HTTP 429/502/503/504, gRPC UNAVAILABLE,
    RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED): send again after `delay` seconds if it said, else back off."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class NoResponse(ReportError):
    """The request was sent in full but no answer came: it may have been stored."""


class Rejected(ReportError):
    """The backend refused the batch for good (a 4xx, a gRPC status that is not retryable)."""


class Transport(Protocol):
    """One wire protocol to one backend (Zipkin HTTP, OTLP/HTTP, OTLP/gRPC)."""

    @property
    def target(self) -> str:
        """The URL or host:port requests go to, for logs and the drain summary."""
        ...

    @property
    def protocol(self) -> str:
        """`zipkin`, `otlp_http` or `otlp_grpc`: names the admin's stats."""
        ...

    async def start(self) -> None: ...

    async def send(self, body: bytes, spans: int) -> tuple[int, str]:
        """Send one batch; (spans rejected by the backend, its message) or a ReportError."""
        ...

    async def aclose(self) -> None: ...
