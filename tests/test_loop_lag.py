"""The event-loop lag probe: a periodic callback records how late it ran; a blocked loop shows."""

from __future__ import annotations

import asyncio
import contextlib
import time

from sidecar.loop_lag import LAG_BUCKETS, LagStats, probe


async def wait_for_samples(stats: LagStats, at_least: int) -> None:
    for _ in range(500):
        if stats.samples >= at_least:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {stats.samples} samples")


async def test_a_blocked_loop_shows_as_lag_and_cancel_stops_the_probe() -> None:
    stats = LagStats()
    task = asyncio.create_task(probe(stats, 0.01))
    await wait_for_samples(stats, 3)
    seen = stats.samples
    time.sleep(0.07)  # noqa: ASYNC251 (blocking the loop is the point: the next tick runs >= 60 ms late)
    await wait_for_samples(stats, seen + 1)
    assert stats.max >= 0.05
    assert sum(stats.buckets) == stats.samples and sum(stats.buckets[LAG_BUCKETS.index(0.05) :]) >= 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stopped = stats.samples
    await asyncio.sleep(0.05)
    assert stats.samples == stopped  # no callback left scheduled
