"""The access-log writer: one JSON line per request the data path records, buffered, flushed by the runtime.

The exchange hands over a plain dict; this module owns how it is written: `start_time` as ISO-8601 UTC
with milliseconds, like Envoy's `%START_TIME%` (e.g. `2024-05-01T12:00:00.123Z`).
"""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson


def iso_time(epoch_seconds: float) -> str:
    stamp = datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class AccessLog:
    """Writes to a file (appending) or to stdout (`-`); `flush` every second and `close` at exit."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._out: IO[bytes] = sys.stdout.buffer if target == "-" else open(target, "ab")  # noqa: SIM115
        self.lines = 0

    def __call__(self, record: dict[str, Any]) -> None:
        start = record.get("start_time")
        if isinstance(start, float | int):
            record["start_time"] = iso_time(start)
        self._out.write(orjson.dumps(record) + b"\n")
        self.lines += 1

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._out.flush()

    def close(self) -> None:
        self.flush()
        if self._out is not sys.stdout.buffer:
            self._out.close()


__all__ = ["AccessLog", "iso_time"]
