"""Per-listener counters as plain numbers (the admin layer renders them; nothing here locks)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Final

DURATION_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
_bisect_left: Final = bisect.bisect_left  # Final: a C static when compiled, no lookup per request


@dataclass(slots=True)
class ListenerStats:
    name: str  # e.g. "inbound:127.0.0.1:10001"
    direction: str  # "inbound" | "outbound" | "tcp"
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_CLASSES, 0))
    local_replies: dict[str, int] = field(default_factory=dict)  # by response flag
    connections_total: int = 0
    connections_active: int = 0
    streams_active: int = 0  # open HTTP/2 streams
    h2_errors: dict[str, int] = field(default_factory=dict)  # by kind: GOAWAYs, streams nghttp2 reset
    bytes_received: int = 0  # request bodies (tcp: bytes from the client)
    bytes_sent: int = 0  # response bodies (tcp: bytes to the client)
    duration_buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    duration_count: int = 0
    # Per upstream endpoint ("host:port" as configured), for the admin's /clusters.
    upstream_rq: dict[str, int] = field(default_factory=dict)  # requests sent to it (or tried)
    upstream_rq_error: dict[str, int] = field(default_factory=dict)  # 5xx answers, resets, timeouts
    upstream_cx_total: dict[str, int] = field(default_factory=dict)  # connections opened
    upstream_cx_connect_fail: dict[str, int] = field(default_factory=dict)  # connections that failed
    upstream_cx_protocol_error: dict[str, int] = field(default_factory=dict)  # broken framing: closed
    # Request header fields whose name holds "_": dropped one by one, or the whole request refused.
    dropped_headers_with_underscores: int = 0
    requests_rejected_with_underscores_in_headers: int = 0

    def count_endpoint(self, table: dict[str, int], endpoint: str) -> None:
        table[endpoint] = table.get(endpoint, 0) + 1

    def h2_error(self, kind: str) -> None:
        """An HTTP/2 protocol error: a connection ended by GOAWAY, or a stream the codec reset itself."""
        self.h2_errors[kind] = self.h2_errors.get(kind, 0) + 1

    def local_reply(self, flag: str) -> None:
        """A reply the proxy made or a connection it refused, by Envoy flag (or our own reason)."""
        self.local_replies[flag] = self.local_replies.get(flag, 0) + 1

    def record(self, status: int, seconds: float, request_bytes: int, response_bytes: int, flag: str) -> None:
        if 100 <= status < 600:
            self.requests[STATUS_CLASSES[status // 100 - 1]] += 1
        if flag != "-":
            self.local_reply(flag)
        self.bytes_received += request_bytes
        self.bytes_sent += response_bytes
        self.duration_buckets[_bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds
        self.duration_count += 1
