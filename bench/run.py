"""Throughput, latency and cost of the sidecar next to its peers, measured side by side in one run.

    .venv/bin/python bench/run.py                      # 3 rounds x 5 s, 50 connections
    .venv/bin/python bench/run.py --levels 1,50,500    # how cost grows with connections
    .venv/bin/python bench/run.py --peers sidecar-0,sidecar-100 --duration 10

Peers, all in front of the same upstream on loopback:
  direct       the upstream itself (the limit)
  nginx        nginx `proxy_pass` with upstream keep-alive, 1 worker    (apt-get install -y nginx)
  naive        aiohttp reverse proxy + OpenTelemetry auto-instrumentation, B3, Zipkin exporter
               (what a Python user would write instead; needs `pip install -e '.[demo]'`)
  sidecar-0    `sidecar run`, a TrafficTrace with sampling 0 %
  sidecar-100  `sidecar run`, sampling 100 %, every span delivered to a real collector process
  sidecar-100-otlp  the same, spans sent as OTLP/HTTP (--otlp-endpoint) to the collector's /v1/traces
  sidecar-100-b3, sidecar-100-w3c   the same with `--trace-context b3` (Kuma's B3 only) or `w3c`;
               `-w2` runs 2 workers (sidecar-100-w2-b3), `-b1000` posts spans in batches of 1000
               (--min-batch); options combine (sidecar-100-w2-otlp)
The upstream is nginx `return 200` when nginx is installed (so it is never the bottleneck), otherwise a
small uvloop server. Load comes from wrk (apt-get install -y wrk) or, without it, a Python generator.
Rounds rotate the peer order so drift cancels; the table shows medians. Results also go to
bench/results/ as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(ROOT))

from bench.load import PERCENTILES, LoadResult, RateResult, run_load, run_rate  # noqa: E402
from tests.util import free_port  # noqa: E402

# The performance goals at saturation (the fixed-rate goals are read off the --rates table).
GOALS = {
    "throughput >= 0.4x nginx": lambda r: r["sidecar-100"]["rps"] >= 0.4 * r["nginx"]["rps"],
    "throughput >= 12x naive": lambda r: r["sidecar-100"]["rps"] >= 12 * r["naive"]["rps"],
    "100 % sampling costs <= 15 %": lambda r: r["sidecar-100"]["rps"] >= 0.85 * r["sidecar-0"]["rps"],
    "CPU <= 25 us per traced request": lambda r: r["sidecar-100"]["cpu_us_per_req"] <= 25,
    "RSS <= 50 MB": lambda r: r["sidecar-100"]["rss_mb"] <= 50,
    "loop lag max <= 2 ms": lambda r: r["sidecar-100"]["lag_max_ms"] <= 2,
}


@dataclass
class Peer:
    name: str
    port: int
    pids: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    admin: int = 0  # a sidecar's admin port (its event-loop lag is read there)


def loop_lag(admin: int) -> tuple[list[float], float]:
    """The sidecar's cumulative lag histogram (bucket counts) and its max, from /stats/prometheus."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats/prometheus", timeout=5) as resp:
        text = resp.read().decode()
    buckets = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sidecar_event_loop_lag_seconds_bucket")]  # fmt: skip
    top = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
           if line.startswith("sidecar_event_loop_lag_max_seconds ")]  # fmt: skip
    return buckets, top[0] if top else 0.0


def lag_window_ms(before: list[float], after: list[float]) -> tuple[float, float]:
    """The 99th percentile and the maximum of the lag samples taken between two reads of the cumulative
    histogram, as bucket upper bounds in ms (the max since start would include our own scrapes)."""
    from sidecar.loop_lag import LAG_BUCKETS

    counts = [b - a for a, b in zip(before, after, strict=True)]
    if not counts or counts[-1] <= 0:
        return float("nan"), float("nan")
    bounds = [b * 1000 for b in (*LAG_BUCKETS, float("inf"))]
    p99 = next(bound for bound, c in zip(bounds, counts, strict=True) if c >= 0.99 * counts[-1])
    top = next(bound for bound, c in zip(bounds, counts, strict=True) if c >= counts[-1])
    return p99, top


def proc_cpu(pids: list[int]) -> float:
    """utime + stime of the processes, in seconds."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
            if resp.status < 500:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class Harness:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.nginx = None if os.environ.get("SIDECAR_BENCH_PYTHON_ONLY") else shutil.which("nginx")
        self.collector_port = free_port()

    def spawn(
        self, cmd: list[str], name: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env or os.environ.copy(),
            start_new_session=True,
            cwd=cwd,
        )
        self.procs.append(proc)
        return proc

    def nginx_conf(self, name: str, port: int, body: str) -> list[str]:
        prefix = self.workdir / name
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"worker_processes 1; daemon off; pid {prefix}/nginx.pid; error_log {prefix}/logs/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            f"http {{ access_log off; client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;"
            f" fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;\n"
            f"  keepalive_requests 1000000;\n{body}\n"
            f"  server {{ listen 127.0.0.1:{port} reuseport backlog=4096; location / {{ {{LOC}} }} }} }}\n"
        )
        return [self.nginx or "nginx", "-p", str(prefix), "-c", str(conf)]

    def start_upstream(self, port: int | None = None) -> Peer:
        port = port or free_port()
        if self.nginx:
            cmd = self.nginx_conf(f"upstream-{port}-{len(self.procs)}", port, "")
            conf = Path(cmd[-1])
            conf.write_text(conf.read_text().replace("{LOC}", 'return 200 "ok";'))
            proc = self.spawn(cmd, "upstream")
        else:
            proc = self.spawn([PY, str(ROOT / "bench" / "upstream.py"), str(port)], "upstream")
        wait_http(f"http://127.0.0.1:{port}/")
        return Peer("direct", port, [proc.pid, *children_of(proc.pid)], [proc])

    def start_collector(self, kind: str = "full") -> None:
        """`full`: the project's collector (stores and indexes spans); `sink`: bench/sink.py (counts)."""
        if kind == "sink":
            cmd = [PY, str(ROOT / "bench" / "sink.py"), str(self.collector_port)]
        else:
            cmd = [PY, "-m", "sidecar.collector", "--listen", f"127.0.0.1:{self.collector_port}"]
            cmd += ["--max-spans", "200000"]
        self.spawn(cmd, "collector")
        wait_http(f"http://127.0.0.1:{self.collector_port}/stats")

    def spans_accepted(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.collector_port}/stats", timeout=5) as resp:
            return int(json.load(resp)["accepted"])

    def start_nginx(self, upstream: int) -> Peer:
        port = free_port()
        cmd = self.nginx_conf(
            "proxy", port, f"  upstream up {{ server 127.0.0.1:{upstream}; keepalive 1024; }}"
        )
        conf = Path(cmd[-1])
        loc = 'proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";'
        conf.write_text(conf.read_text().replace("{LOC}", loc))
        proc = self.spawn(cmd, "nginx")
        wait_http(f"http://127.0.0.1:{port}/")
        return Peer("nginx", port, [proc.pid, *children_of(proc.pid)], [proc])

    def start_naive(self, upstream: int) -> Peer:
        port = free_port()
        url = f"http://127.0.0.1:{self.collector_port}/api/v2/spans"
        proc = self.spawn(
            [PY, str(ROOT / "bench" / "naive_proxy.py"), str(port), str(upstream), url], "naive"
        )
        wait_http(f"http://127.0.0.1:{port}/")
        return Peer("naive", port, [proc.pid], [proc])

    def start_sidecar(
        self,
        name: str,
        upstream: int,
        sampling: float,
        workers: int = 1,
        lag_probe: float = 0.001,
        protocol: str = "http",
        extra: tuple[str, ...] = (),
        tree: Path | None = None,  # a compiled copy (bench/compiled.py) to run instead of the working tree
    ) -> Peer:
        """`sidecar run` for one inbound (kuma.io/protocol `protocol`) in front of `upstream`."""
        port, admin = free_port(), free_port()
        config = self.workdir / f"config-{name}.yaml"
        config.write_text(
            f"""type: Mesh
name: default
tracing:
  defaultBackend: collector
  backends:
  - name: collector
    type: zipkin
    sampling: {sampling}
    conf:
      url: http://127.0.0.1:{self.collector_port}/api/v2/spans
---
type: TrafficTrace
name: all
mesh: default
selectors:
- match:
    kuma.io/service: '*'
---
type: Dataplane
name: bench-01
mesh: default
networking:
  address: 127.0.0.1
  inbound:
  - port: {port}
    servicePort: {upstream}
    tags:
      kuma.io/service: bench
      kuma.io/protocol: {protocol}
"""
        )
        cmd = [PY, "-m", "sidecar", "run", "--config", str(config), "--dataplane", "bench-01"]
        cmd += ["--admin-address", f"127.0.0.1:{admin}", "--no-watch", "--lag-probe-interval", str(lag_probe)]
        cmd += ["--workers", str(workers), *extra]
        proc = self.spawn(cmd, name, dict(os.environ, SIDECAR_LOG_LEVEL="WARNING"), cwd=tree or ROOT)
        wait_http(f"http://127.0.0.1:{admin}/ready")
        pids = [proc.pid, *children_of(proc.pid)] if workers > 1 else [proc.pid]
        return Peer(name, port, pids, [proc], admin)

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def measure(h: Harness, peer: Peer, connections: int, duration: float) -> dict[str, Any]:
    spans_before = h.spans_accepted()
    lag_before = loop_lag(peer.admin)[0] if peer.admin else []
    if peer.admin:
        time.sleep(0.05)  # the scrape's own lag is recorded before the load starts
    cpu_before = proc_cpu(peer.pids)
    result: LoadResult = run_load(f"http://127.0.0.1:{peer.port}/", connections, duration)
    cpu = proc_cpu(peer.pids) - cpu_before
    time.sleep(1.5 if peer.name.startswith(("sidecar-100", "naive")) else 0)  # let the last batch arrive
    spans = h.spans_accepted() - spans_before
    lag_p99, lag_max = (
        lag_window_ms(lag_before, loop_lag(peer.admin)[0]) if peer.admin else (float("nan"),) * 2
    )
    return {
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "requests": result.requests,
        "cpu_us_per_req": 1e6 * cpu / result.requests if result.requests else 0.0,
        "rss_mb": peak_rss_mb(peer.pids),
        "spans": spans,
        "lag_p99_ms": lag_p99,
        "lag_max_ms": lag_max,
        "tool": result.tool,
    }


def measure_rate(
    h: Harness, peer: Peer, rate: int, connections: int, duration: float, tool: str = "auto"
) -> dict[str, Any]:
    lag_before = loop_lag(peer.admin)[0] if peer.admin else []
    if peer.admin:
        time.sleep(0.05)  # the scrape's own lag is recorded before the load starts
    cpu_before = proc_cpu(peer.pids)
    result: RateResult = run_rate(f"http://127.0.0.1:{peer.port}/", rate, connections, duration, tool)
    cpu = proc_cpu(peer.pids) - cpu_before
    lag_p99, lag_max = (
        lag_window_ms(lag_before, loop_lag(peer.admin)[0]) if peer.admin else (float("nan"),) * 2
    )
    return {
        "lag_p99_ms": lag_p99,
        "lag_max_ms": lag_max,
        **result.percentiles,
        "achieved": result.rate,
        "errors": result.errors,
        "requests": result.requests,
        # vCPU per 1000 req/s: CPU seconds per second of run, per thousand requests per second.
        "vcpu_per_1k": (cpu / duration) / (result.rate / 1000) if result.rate else 0.0,
        "tool": result.tool,
    }


def rate_table(rate: int, r: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """Latency added by each proxy over `direct` at the same fixed rate (Envoy's and Istio's way)."""
    tool = next(iter(r.values()))["tool"]
    head = " ".join(f"{'+' + p + ' ms':>10}" for p in PERCENTILES)
    lines = [
        f"\n{rate} req/s fixed rate, {args.rate_connections} connections, {args.rounds} rounds x "
        f"{args.duration:.0f}s (medians), load: {tool}",
        f"{'peer':<12} {'achieved':>9} {head} {'vCPU/1k rps':>12} {'errors':>7} {'lag p99/max ms':>15}",
    ]
    base = r.get("direct")
    for name, m in r.items():
        if name == "direct":
            added = " ".join(f"{m[p]:>10.3f}" for p in PERCENTILES) + "  (absolute)"
        else:
            added = " ".join(f"{m[p] - base[p]:>+10.3f}" if base else f"{m[p]:>10.3f}" for p in PERCENTILES)
        lag = f"{m['lag_p99_ms']:.1f}/{m['lag_max_ms']:.1f}" if m["lag_max_ms"] == m["lag_max_ms"] else "-"
        lines.append(
            f"{name:<12} {m['achieved']:>9.0f} {added} {m['vcpu_per_1k']:>12.4f} {m['errors']:>7} {lag:>15}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="50", help="comma-separated connection counts, e.g. 1,50,500")
    parser.add_argument("--peers", default="direct,nginx,naive,sidecar-0,sidecar-100")
    parser.add_argument(
        "--python-only", action="store_true", help="ignore nginx and wrk: Python upstream and load"
    )
    parser.add_argument(
        "--rates",
        default="",
        help="fixed-rate mode instead of saturation: comma-separated req/s, e.g. 1000,10000",
    )
    parser.add_argument("--rate-connections", type=int, default=10)
    parser.add_argument(
        "--collector",
        choices=("sink", "full"),
        default="sink",
        help="sink: bench/sink.py counts spans (default); full: the project's collector",
    )
    args = parser.parse_args()
    if args.python_only:
        os.environ["SIDECAR_BENCH_PYTHON_ONLY"] = "1"
    wanted = args.peers.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    h = Harness(workdir)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    try:
        h.start_collector(args.collector)
        upstream = h.start_upstream()
        peers = {"direct": upstream}
        if "nginx" in wanted:
            if h.nginx:
                peers["nginx"] = h.start_nginx(upstream.port)
            else:
                print("nginx not found: skipped (install it with `apt-get install -y nginx`)")
        if "naive" in wanted:
            try:
                import opentelemetry.instrumentation.aiohttp_server  # noqa: F401

                peers["naive"] = h.start_naive(upstream.port)
            except ImportError:
                print("naive peer skipped: `pip install -e '.[demo]'` brings OpenTelemetry's instrumentation")
        for name in wanted:  # sidecar-0, sidecar-100, sidecar-100-w2 (2 workers), sidecar-100-otlp, ...
            if name.startswith("sidecar-"):
                sampling, *options = name.removeprefix("sidecar-").split("-")
                workers = next((int(o[1:]) for o in options if o.startswith("w") and o[1:].isdigit()), 1)
                extra: tuple[str, ...] = ()
                if "otlp" in options:  # the same spans as OTLP/HTTP to the collector's /v1/traces
                    extra += ("--otlp-endpoint", f"http://127.0.0.1:{h.collector_port}/v1/traces")
                for o in options:  # `-b1000`: --min-batch 1000 (spans per POST once that many wait)
                    if o.startswith("b") and o[1:].isdigit():
                        extra += ("--min-batch", o[1:])
                for mode in ("w3c", "b3"):  # --trace-context, when not the default b3+w3c
                    if mode in options:
                        extra += ("--trace-context", mode)
                # A 1 ms probe costs ~0.02 vCPU: fine at saturation, not when vCPU per 1000 req/s is the figure.
                probe = 0.1 if args.rates else 0.001
                peers[name] = h.start_sidecar(
                    name, upstream.port, float(sampling), workers, probe, extra=extra
                )
        order = [p for p in wanted if p in peers]
        for rate in [int(x) for x in args.rates.split(",") if x]:
            rate_runs: dict[str, list[dict[str, Any]]] = {p: [] for p in order}
            for r in range(args.rounds):
                rotated = order[r % len(order) :] + order[: r % len(order)]
                for name in rotated:
                    rate_runs[name].append(
                        measure_rate(h, peers[name], rate, args.rate_connections, args.duration)
                    )
            results[-rate] = {name: median_of(rs) for name, rs in rate_runs.items()}
            print(rate_table(rate, results[-rate], args))
        levels = [] if args.rates else [int(x) for x in args.levels.split(",")]
        for level in levels:
            runs: dict[str, list[dict[str, Any]]] = {p: [] for p in order}
            for r in range(args.rounds):
                rotated = order[r % len(order) :] + order[: r % len(order)]
                for name in rotated:
                    runs[name].append(measure(h, peers[name], level, args.duration))
            results[level] = {name: median_of(rs) for name, rs in runs.items()}
            print(table(level, results[level], args))
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (out / f"run-{stamp}.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    finally:
        h.stop()
    return 0


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        out[key] = statistics.median(values) if isinstance(values[0], int | float) else values[0]
    return out


def table(level: int, r: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"\n{level} connections, {args.rounds} rounds x {args.duration:.0f}s (medians), load: {next(iter(r.values()))['tool']}",
        f"{'peer':<15} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'RSS MB':>7} {'spans/req':>9} {'errors':>7} {'lag p99/max ms':>15}",
    ]
    for name, m in r.items():
        per_req = m["spans"] / m["requests"] if m["requests"] else 0
        spans = f"{per_req:.2f}" if name.startswith(("sidecar-100", "naive")) else "-"
        lag = f"{m['lag_p99_ms']:.1f}/{m['lag_max_ms']:.1f}" if m["lag_max_ms"] == m["lag_max_ms"] else "-"
        lines.append(
            f"{name:<15} {m['rps']:>9.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['cpu_us_per_req']:>10.1f} "
            f"{m['rss_mb']:>7.1f} {spans:>9} {m['errors']:>7} {lag:>15}"
        )
    if "sidecar-100" in r:
        s = r["sidecar-100"]["rps"]
        for peer in ("nginx", "naive", "sidecar-0", "sidecar-100-otlp", "sidecar-100-b3"):
            if peer in r and r[peer]["rps"]:
                lines.append(f"sidecar-100 / {peer}: {s / r[peer]['rps']:.2f}x throughput")
        for goal, check in GOALS.items():
            try:
                lines.append(f"  {'PASS' if check(r) else 'FAIL'}  {goal}")
            except KeyError:
                lines.append(f"  n/a   {goal} (peer missing)")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
