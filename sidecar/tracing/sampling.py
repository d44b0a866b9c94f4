"""The local sampling decision, stable per request id as Envoy draws it (KUMA.md section 3)."""

from __future__ import annotations

import random

_HEX = frozenset("0123456789abcdefABCDEF")


def threshold(sampling_percent: float) -> int:
    """Envoy's overall_sampling as a numerator out of 10000."""
    return max(0, min(10000, round(sampling_percent * 100)))


def sample(request_id: str, threshold_10000: int, rng: random.Random) -> bool:
    """Sampled when `int(first 8 hex chars of the request id) % 10000 < threshold`.

    Every hop that sees the same x-request-id decides alike. An id that does not start with 8 hex
    characters is never sampled by Envoy; we fall back to a random draw instead.
    """
    if threshold_10000 >= 10000:
        return True
    if threshold_10000 <= 0:
        return False
    head = request_id[:8]
    r = int(head, 16) % 10000 if len(head) == 8 and _HEX.issuperset(head) else rng.randrange(10000)
    return r < threshold_10000
