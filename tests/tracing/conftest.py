"""A deterministic tracer for the tracing tests."""

from __future__ import annotations

import random

from sidecar.tracing.decide import Tracer, TracerSettings


class FakeClock:
    def __init__(self) -> None:
        self.now_ns = 1_000_000_000

    def __call__(self) -> int:
        return self.now_ns

    def advance_us(self, us: int) -> None:
        self.now_ns += us * 1000


def make_tracer(
    settings: TracerSettings | None = TracerSettings(), seed: int = 7
) -> tuple[Tracer, FakeClock]:
    clock = FakeClock()
    tracer = Tracer(
        settings,
        service_name="web",
        node_id="default.web-01",
        rng=random.Random(seed),
        monotonic_ns=clock,
        wall_anchor_ns=1_700_000_000_000_000_000 - clock.now_ns,
    )
    return tracer, clock
