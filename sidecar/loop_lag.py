"""Event-loop lag: how late a periodic callback runs. Lag is what every request waiting on the loop pays,
so a flush or a batch that stalls the loop shows up here before it shows in p99.

A probe asks to run every `interval` seconds and records how much later than asked it ran. The default
interval (100 ms) costs nothing measurable; the benchmark sets 1 ms (`SIDECAR_LAG_PROBE_INTERVAL=0.001`).
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from dataclasses import dataclass, field

LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(slots=True)
class LagStats:
    samples: int = 0
    total: float = 0.0  # seconds
    max: float = 0.0  # seconds, since start
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))

    def add(self, lag: float) -> None:
        self.samples += 1
        self.total += lag
        if lag > self.max:
            self.max = lag
        self.buckets[bisect_left(LAG_BUCKETS, lag)] += 1


async def probe(stats: LagStats, interval: float) -> None:
    """Records, until cancelled, how late a callback asked for every `interval` seconds runs. A plain
    timer callback, not a task that sleeps: at 1 ms a sleeping task cost ~2 % of a saturated loop (a
    future and a task step per tick) and its lag counted one more turn than a callback waits."""
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def tick(asked: float) -> None:
        nonlocal handle
        now = loop.time()
        stats.add(max(0.0, now - asked))
        handle = loop.call_at(now + interval, tick, now + interval)

    first = loop.time() + interval
    handle = loop.call_at(first, tick, first)
    try:
        await loop.create_future()  # only cancellation ends it
    finally:
        handle.cancel()
