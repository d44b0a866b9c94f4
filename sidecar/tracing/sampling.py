"""The local sampling decision, stable per request id as Envoy draws it, with Envoy's three knobs.

Envoy's meaning of a MeshTrace's sampling (a TrafficTrace sets only `overall`; the other two stay 100):

- `random`: a request is traced when `r < random`, where `r = int(first 8 hex chars of x-request-id) %
  10000` (the percentages are numerators out of 10000). Every hop that sees the same x-request-id draws
  the same `r`, so hops agree.
- `client`: a request carrying `x-client-trace-id` that `random` did not select is traced when its own
  draw `c < client`. `c` comes from the request id too (a CRC-32 of it, independent of `r`), so it is
  as stable across hops as `r`.
- `overall`: the upper bound after those: a request is traced only when also `r < overall`.

So a request without the header is traced with probability min(random, overall), one with it with
probability client x overall + (1 - client) x min(random, overall). An incoming sampling decision
(B3 or W3C) is not made here: it wins before this draw is made (tracing/decide.py).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from random import Random
from typing import Final

_HEX: Final = frozenset("0123456789abcdefABCDEF")
CLIENT_TRACE_ID: Final = b"x-client-trace-id"


def threshold(sampling_percent: float) -> int:
    """A sampling percentage as Envoy's numerator out of 10000."""
    return max(0, min(10000, round(sampling_percent * 100)))


def _draw(request_id: str, rng: Random) -> int:
    head = request_id[:8]
    return int(head, 16) % 10000 if len(head) == 8 and _HEX.issuperset(head) else rng.randrange(10000)


def sample(request_id: str, threshold_10000: int, rng: Random) -> bool:
    """Sampled when `int(first 8 hex chars of the request id) % 10000 < threshold`.

    Every hop that sees the same x-request-id decides alike. An id that does not start with 8 hex
    characters is never sampled by Envoy; we fall back to a random draw instead.
    """
    if threshold_10000 >= 10000:
        return True
    if threshold_10000 <= 0:
        return False
    return _draw(request_id, rng) < threshold_10000


def client_draw(request_id: str) -> int:
    """The `client` knob's draw, 0..9999: stable per request id, independent of `r`."""
    return zlib.crc32(b"client:" + request_id.encode("latin-1", "replace")) % 10000


@dataclass(frozen=True, slots=True)
class Sampling:
    """The three knobs as numerators out of 10000."""

    overall: int = 10000
    client: int = 10000
    random: int = 10000

    @classmethod
    def from_percent(cls, overall: float, client: float = 100.0, random: float = 100.0) -> Sampling:
        return cls(threshold(overall), threshold(client), threshold(random))

    @property
    def reads_client_header(self) -> bool:
        """Whether `x-client-trace-id` can change a decision: only when `random` is below `overall`
        (otherwise every request `overall` lets through is already selected by `random`)."""
        return self.random < self.overall and self.client > 0

    def decide(self, request_id: str, client_trace_id: bool, rng: Random) -> bool:
        """The local decision for a request with no incoming decision."""
        if not (client_trace_id and self.reads_client_header):
            return sample(request_id, min(self.random, self.overall), rng)
        if self.overall <= 0:
            return False
        r = _draw(request_id, rng)
        return r < self.overall and (r < self.random or client_draw(request_id) < self.client)
