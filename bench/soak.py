"""Soak and fault runs against one `sidecar run` (100 % sampling) on loopback; prints a summary.

    .venv/bin/python bench/soak.py                                  # 1,000,000 requests, 500 connections
    .venv/bin/python bench/soak.py --fault collector --outage 60    # collector down for 60 s mid-run
    .venv/bin/python bench/soak.py --fault upstream --outage 5      # upstream killed, then restarted
    .venv/bin/python bench/soak.py --requests 50000 --connections 100   # a quick one

Pass criteria printed at the end: steady and collector runs need 0 failed requests and a bounded RSS
(spans dropped are counted, never requests); the upstream run may only see 503s while the upstream is
down, and 200s again after it is back. Runs minutes, not in CI; bounded in requests and time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import re
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import PY, Harness, peak_rss_mb


class Counts:
    def __init__(self) -> None:
        self.by_second: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.total = 0
        self.start = time.monotonic()

    def add(self, outcome: str) -> None:
        self.by_second[int(time.monotonic() - self.start)][outcome] += 1
        self.total += 1


async def client(port: int, budget: list[int], counts: Counts, deadline: float) -> None:
    request = b"GET /soak HTTP/1.1\r\nHost: soak\r\n\r\n"
    while budget[0] > 0 and time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts.add("connect-error")
            await asyncio.sleep(0.05)
            continue
        try:
            while budget[0] > 0 and time.monotonic() < deadline:
                budget[0] -= 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(m.group(1)) if m else 0)
                counts.add(head[9:12].decode())
                if b"connection: close" in head.lower():
                    break
        except (OSError, asyncio.IncompleteReadError):
            counts.add("reset")
        finally:
            writer.close()


def admin_metric(admin: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=5) as resp:
        total = 0.0
        for line in resp.read().decode().splitlines():
            if line.startswith(name):
                total += float(line.rsplit(":", 1)[1])
        return total


async def drive(
    args: argparse.Namespace, port: int, fault: collections.abc.Callable[[float], None]
) -> Counts:
    counts = Counts()
    budget = [args.requests]
    deadline = time.monotonic() + args.max_seconds
    tasks = [asyncio.create_task(client(port, budget, counts, deadline)) for _ in range(args.connections)]
    while not all(t.done() for t in tasks):
        fault(time.monotonic() - counts.start)
        await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--fault", choices=("none", "collector", "upstream"), default="none")
    parser.add_argument("--fault-at", type=float, default=3.0, help="seconds into the run")
    parser.add_argument(
        "--outage", type=float, default=60.0, help="seconds the collector/upstream stays down"
    )
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args()

    import tempfile

    h = Harness(Path(tempfile.mkdtemp(prefix="sidecar-soak-")))
    try:
        h.start_collector()
        upstream = h.start_upstream()
        sidecar = h.start_sidecar("soak", upstream.port, 100.0)
        admin = int(re.search(r"127.0.0.1:(\d+)", " ".join(sidecar.procs[0].args)).group(1))  # type: ignore[union-attr, arg-type]
        state = {"down": False, "done": False, "down_at": 0.0, "up_at": 0.0}
        collector_proc = h.procs[0]

        def fault(elapsed: float) -> None:
            if args.fault == "none" or state["done"]:
                return
            target = collector_proc if args.fault == "collector" else upstream.procs[0]
            if not state["down"] and elapsed >= args.fault_at:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(target.pid, 9)
                state.update(down=True, down_at=elapsed)
                print(f"[{elapsed:6.1f}s] {args.fault} killed", flush=True)
            elif state["down"] and elapsed >= args.fault_at + args.outage:
                if args.fault == "collector":
                    h.spawn(
                        [PY, "-m", "sidecar.collector", "--listen", f"127.0.0.1:{h.collector_port}"],
                        "collector2",
                    )
                else:
                    upstream.procs = h.start_upstream(upstream.port).procs
                state.update(done=True, up_at=elapsed)
                print(f"[{elapsed:6.1f}s] {args.fault} restarted", flush=True)

        counts = asyncio.run(drive(args, sidecar.port, fault))
        time.sleep(2.0)
        outcomes: collections.Counter[str] = collections.Counter()
        for c in counts.by_second.values():
            outcomes.update(c)
        elapsed = max(counts.by_second) + 1 if counts.by_second else 0
        rss = peak_rss_mb(sidecar.pids)
        dropped = admin_metric(admin, "sidecar_spans_dropped_total")
        sent = admin_metric(admin, "sidecar_spans_sent_total")
        print(
            f"\n{counts.total} requests in ~{elapsed}s over {args.connections} connections, fault: {args.fault}"
        )
        print("outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
        if args.fault != "none":
            for second in sorted(counts.by_second):
                c = counts.by_second[second]
                print(f"  t={second:3d}s " + ", ".join(f"{k}: {v}" for k, v in sorted(c.items())))
        print(f"sidecar peak RSS {rss:.1f} MB; spans sent {sent:.0f}, dropped {dropped:.0f}")
        failures = sum(v for k, v in outcomes.items() if k != "200")
        if args.fault == "upstream":
            late = [
                (s, c)
                for s, c in counts.by_second.items()
                if s >= state["up_at"] + 1 and any(k != "200" for k in c)  # a second after the restart
            ]
            early = [
                (s, c)
                for s, c in counts.by_second.items()
                if s + 1 <= state["down_at"] and any(k != "200" for k in c)  # seconds wholly before the kill
            ]
            ok = bool(state["done"]) and not late and not early and outcomes.get("503", 0) > 0
            if not state["done"]:
                print("the run ended before the restart: give it more --requests")
            print(
                f"{'PASS' if ok else 'FAIL'}: non-200 only while the upstream was down ({outcomes.get('503', 0)} x 503)"
            )
        else:
            ok = failures == 0
            print(f"{'PASS' if ok else 'FAIL'}: {failures} failed requests")
        return 0 if ok else 1
    finally:
        h.stop()


if __name__ == "__main__":
    raise SystemExit(main())
