"""Where one request's time goes at a fixed rate: a per-request timeline read off the proxy's system calls.

    apt-get install -y strace nginx hey
    .venv/bin/python bench/timeline.py                  # sidecar (100 % sampling) and nginx, 1000 req/s
    .venv/bin/python bench/timeline.py --compiled --rate 1000 --connections 10 --duration 3

Each proxy runs in front of the same upstream (nginx `return 200`) under hey at a fixed rate while
`strace -ttt -T` records its event-loop thread's waits, reads and writes. Every request is then followed
through them: the poll that reported it, the read of its head from the client, the write of it to the
upstream, the read of the answer, the write of the answer to the client. The printout gives, for each
step, the percentiles over all requests, and how many client reads each loop turn held (how bursty the
load is, and how long the last of a burst waits behind the others).

strace stops the proxy at every system call (tens of µs each here), so the absolute times are inflated
several times over, for both proxies alike: read the structure (which step is long, how many requests
share a turn, where a request waits) and compare the proxies, not the µs with an untraced run.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import Harness, Peer

CALLS = "epoll_wait,epoll_pwait,read,readv,recvfrom,write,writev,sendto,sendmsg"
_LINE = re.compile(r"^(\d+\.\d+) (\w+)\((\d+), (.*) = (-?\d+)(?: \w+ \([^)]*\))? <(\d+\.\d+)>$")
_DATA = re.compile(r'"((?:[^"\\]|\\.)*)"')
_METHODS = ("GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "PATCH ", "OPTIONS ")
_READS = frozenset({"read", "readv", "recvfrom"})
_WRITES = frozenset({"write", "writev", "sendto", "sendmsg"})
_POLLS = frozenset({"epoll_wait", "epoll_pwait"})


@dataclass
class Request:
    client: int  # the client connection's file descriptor
    ready: float  # when the poll that reported the client's bytes returned
    read: float  # the read of the request from the client
    position: int  # its place among the client reads of that loop turn (1: first)
    up_write: float = 0.0
    upstream: int = -1
    up_read: float = 0.0
    client_write: float = 0.0


@dataclass
class Timeline:
    done: list[Request] = field(default_factory=list)
    reads_per_turn: Counter[int] = field(default_factory=Counter)  # turns that read n requests
    polls: int = 0


def parse(lines: Iterable[str]) -> Timeline:
    """Follow each request through the proxy's system calls (`strace -ttt -T` of its loop thread).

    A request is a client read that starts with a method; the next request written to any upstream
    is its forwarded copy (the proxy writes them in the order it read them); the next response read
    on that upstream connection is its answer; the next response written to its client is the end.
    Pipelined or split heads are rare under this load and would be mismatched: each step then shows
    outliers, not a wrong median.
    """
    tl = Timeline()
    ready = 0.0
    in_turn = 0
    to_forward: deque[Request] = deque()
    on_upstream: defaultdict[int, deque[Request]] = defaultdict(deque)
    to_answer: defaultdict[int, deque[Request]] = defaultdict(deque)
    for line in lines:
        m = _LINE.match(line.rstrip("\n"))
        if m is None:
            continue
        start, call, fd, args, result, took = float(m[1]), m[2], int(m[3]), m[4], int(m[5]), float(m[6])
        if call in _POLLS:
            if result > 0:
                if tl.polls:
                    tl.reads_per_turn[in_turn] += 1
                tl.polls += 1
                ready, in_turn = start + took, 0
            continue
        if result <= 0:
            continue
        quoted = _DATA.search(args)
        data = quoted[1] if quoted else ""
        if call in _READS:
            if data.startswith(_METHODS):
                in_turn += 1
                to_forward.append(Request(fd, ready, start, in_turn))
            elif data.startswith("HTTP/1.") and on_upstream[fd]:
                req = on_upstream[fd].popleft()
                req.up_read = start
                to_answer[req.client].append(req)
        elif call in _WRITES:
            if data.startswith(_METHODS) and to_forward:
                req = to_forward.popleft()
                req.up_write, req.upstream = start, fd
                on_upstream[fd].append(req)
            elif data.startswith("HTTP/1.") and to_answer[fd]:
                req = to_answer[fd].popleft()
                req.client_write = start
                tl.done.append(req)
    if tl.polls:
        tl.reads_per_turn[in_turn] += 1
    return tl


STEPS = (
    ("reported -> client read (behind the turn's earlier work)", lambda r: r.read - r.ready),
    ("client read -> upstream write", lambda r: r.up_write - r.read),
    ("upstream write -> answer read", lambda r: r.up_read - r.up_write),
    ("answer read -> client write", lambda r: r.client_write - r.up_read),
    ("client read -> client write (the proxy's part)", lambda r: r.client_write - r.read),
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(name: str, tl: Timeline) -> str:
    if not tl.done:
        return f"{name}: no request followed through (was strace attached to the loop thread?)"
    turns = {n: c for n, c in sorted(tl.reads_per_turn.items()) if n}
    lines = [
        f"{name}: {len(tl.done)} requests followed, {tl.polls} polls that returned events "
        f"({tl.polls / len(tl.done):.2f} per request)",
        "  turns by client reads held: " + ", ".join(f"{n}: {c}" for n, c in turns.items()),
        f"  {'step (µs, strace-inflated)':<52} {'p50':>8} {'p90':>8} {'p99':>8}",
    ]
    for label, step in STEPS:
        values = [step(r) * 1e6 for r in tl.done]
        lines.append(f"  {label:<52} " + " ".join(f"{percentile(values, q):>8.0f}" for q in (0.5, 0.9, 0.99)))
    return "\n".join(lines)


def trace(peer: Peer, rate: int, connections: int, duration: float, out: Path) -> Timeline:
    url = f"http://127.0.0.1:{peer.port}/"
    per_connection = max(1, rate // connections)
    hey = ["hey", "-c", str(connections), "-q", str(per_connection)]
    subprocess.run([*hey, "-z", "1s", url], capture_output=True, check=True)  # connections open, warm
    # The loop's process: nginx's one worker is the last pid, the sidecar (one worker) its only one.
    strace = subprocess.Popen(
        [
            "strace",
            "-ttt",
            "-T",
            "-s",
            "16",
            "-e",
            f"trace={CALLS}",
            "-o",
            str(out),
            "-p",
            str(peer.pids[-1]),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)  # attached
        subprocess.run([*hey, "-z", f"{duration:g}s", url], capture_output=True, check=True)
    finally:
        strace.terminate()
        strace.wait()
    with out.open() as f:
        return parse(f)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument(
        "--compiled", action="store_true", help="trace a mypyc-compiled copy (bench/compiled.py)"
    )
    args = parser.parse_args()
    missing = [tool for tool in ("strace", "hey", "nginx") if shutil.which(tool) is None]
    if missing:
        print(
            f"bench/timeline.py needs {', '.join(missing)} (apt-get install -y strace hey nginx)",
            file=sys.stderr,
        )
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-timeline-"))
    tree = None
    if args.compiled:
        from bench.compiled import build_compiled_tree

        tree = build_compiled_tree(workdir)
    h = Harness(workdir)
    try:
        h.start_collector("sink")
        upstream = h.start_upstream()
        peers = {
            "sidecar": h.start_sidecar("sidecar-100", upstream.port, 100.0, lag_probe=0.1, tree=tree),
            "nginx": h.start_nginx(upstream.port),
        }
        print(f"{args.rate} req/s over {args.connections} connections (hey), {args.duration:g} s traced each")
        for name, peer in peers.items():
            print(
                summarize(
                    name, trace(peer, args.rate, args.connections, args.duration, workdir / f"{name}.strace")
                )
            )
    finally:
        h.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
