"""Python opcodes the HTTP/1.1 data path runs per request: a cost figure that does not move with load.

    .venv/bin/python bench/opcodes.py [--by-function N]

bench/bench_proxy.py's loop (a request in, the upstream's answer out, 100 % sampling, JSON span) under
Python's opcode tracer. Wall-clock and CPU timings on a shared machine swing by tens of percent between
runs; the opcode count is the same on every run, so a change to the data path can be compared with the
code before it exactly (run this on both checkouts). It counts the interpreter's work only: llhttp, the
encoders written in C and the syscalls are not in it, and opcodes do not all cost the same.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_proxy
from sidecar.tracing.decide import TracerSettings


def count(requests: int) -> Counter[str]:
    """Opcodes run per function over `requests` requests (after a warm-up outside the count)."""
    bench_proxy.run(TracerSettings(), 50)
    counts: Counter[str] = Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            counts[frame.f_code.co_qualname] += 1
        return tracer

    # No collection inside the count: when one runs depends on what the process did before, and
    # callbacks others put in `gc.callbacks` (Hypothesis has one) would be counted as data-path work.
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    sys.settrace(tracer)
    try:
        bench_proxy.run(TracerSettings(), requests)
    finally:
        sys.settrace(None)
        if collecting:
            gc.enable()
    return counts


def per_request() -> float:
    """Opcodes per request: the difference of two runs, so the set-up of one run cancels out."""
    return (sum(count(300).values()) - sum(count(100).values())) / 200


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--by-function", type=int, default=0, metavar="N", help="also the N costliest functions"
    )
    args = parser.parse_args()
    print(f"opcodes per request: {per_request():.1f}")
    if args.by_function:
        for name, n in count(100).most_common(args.by_function):
            print(f"{n / 100:8.1f}  {name}")


if __name__ == "__main__":
    main()
