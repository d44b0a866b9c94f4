"""Reporter counters as plain numbers: cheap to bump on the hot path, read by the admin layer."""

from __future__ import annotations

from dataclasses import dataclass, field

DROP_REASONS = ("buffer_full", "rejected", "retries_exhausted", "no_response", "shutdown")


@dataclass(slots=True)
class ReporterStats:
    spans_received: int = 0  # every span handed to `submit`
    spans_submitted: int = 0  # of those, the ones that found room in the buffer
    spans_sent: int = 0
    spans_dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    reports_sent: int = 0  # requests the collector accepted (in whole or, OTLP, in part)
    reports_failed: int = 0  # attempts with no answer (connection error, reset, timeout) or a retryable one
    reports_retried: int = 0  # attempts sent again after a failure
    reports_dropped: int = 0  # batches given up (rejected, retries exhausted, no response, shutdown)
    buffer_size: int = 0
    buffer_capacity: int = 0
    timer_flushed: int = 0  # flushes started by the flush interval rather than a full batch
    protocol: str = "zipkin"  # the transport's: zipkin, otlp_http or otlp_grpc
    last_error: str = ""  # the reason of the last failed or rejected POST ("" when none yet)
