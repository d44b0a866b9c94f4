"""Reporter settings with production defaults, overridable by environment variables and CLI flags."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "SIDECAR_REPORTER_"


class SettingsError(ValueError):
    """A setting has an unusable value; the message names it."""


@dataclass(frozen=True, slots=True)
class ReporterSettings:
    """Envoy flushes every 5 spans or 5 s; at proxy rates that is a POST per few requests, so we batch
    more and flush sooner: spans reach the UI within a second and cost one POST per hundreds. Larger
    batches cost less CPU (a POST is ~0.3 ms of the loop: at 30,000 spans/s, batches of 1000 save ~1 us
    per span over 200) but stall the loop longer at once: with 1000, at 10,000 req/s the added p99 went
    from 0.64 to 1.25 ms (bench/run.py --rates), so 200 it is."""

    flush_interval: float = 1.0  # seconds between flushes of a non-empty buffer
    min_batch: int = 200  # a flush starts as soon as this many spans wait
    max_batch: int = 1000  # spans per POST: bounds a flush's CPU slice and the body size (~650 KB JSON)
    buffer_capacity: int = 20000  # spans kept while the collector is slow or down; more are dropped
    request_timeout: float = 5.0  # seconds for one POST
    retry_budget: float = 30.0  # seconds one batch may spend in retries before it is dropped

    def __post_init__(self) -> None:
        for name in ("flush_interval", "request_timeout"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.retry_budget < 0:
            raise SettingsError(f"retry_budget must be >= 0, got {self.retry_budget!r}")
        if not 1 <= self.min_batch <= self.max_batch:
            raise SettingsError(
                f"need 1 <= min_batch <= max_batch, got {self.min_batch} and {self.max_batch}"
            )
        if self.buffer_capacity < self.max_batch:
            raise SettingsError(
                f"buffer_capacity ({self.buffer_capacity}) must be >= max_batch ({self.max_batch})"
            )

    def min_batch_for(self, min_batch: int | None, max_batch: int | None) -> int | None:
        """The min_batch a change asks for (None: keep this one). A max_batch given alone below this
        min_batch lowers it too, so only a min_batch set as well can conflict with it."""
        if min_batch is None and max_batch is not None and max_batch < self.min_batch:
            return max_batch
        return min_batch

    def replace(self, **changes: Any) -> ReporterSettings:
        """A copy with the given (non-None) fields changed, e.g. from CLI flags (see `min_batch_for`)."""
        changes["min_batch"] = self.min_batch_for(changes.get("min_batch"), changes.get("max_batch"))
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str], base: ReporterSettings | None = None) -> ReporterSettings:
        """`SIDECAR_REPORTER_FLUSH_INTERVAL=0.5` etc.; an unparseable value raises SettingsError."""
        base = base or cls()
        changes: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            key = ENV_PREFIX + field.name.upper()
            if key not in env:
                continue
            kind = int if field.type in ("int", int) else float
            try:
                changes[field.name] = kind(env[key])
            except ValueError:
                raise SettingsError(
                    f"{key}: expected {'an integer' if kind is int else 'a number'}, got {env[key]!r}"
                ) from None
        return base.replace(**changes)
