"""`sidecar run --workers N`: N processes share the listeners (SO_REUSEPORT); one admin in the parent."""

from __future__ import annotations

from sidecar.runtime import RunOptions, run


def run_workers(options: RunOptions, workers: int) -> int:
    raise SystemExit("not yet")  # replaced below in this change
    return run(options)
