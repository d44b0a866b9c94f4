"""The performance table in one command: the pure-Python and compiled builds against nginx and naive.

    .venv/bin/python bench/table.py                    # about 8 minutes; --rounds/--duration to change
    apt-get install -y nginx wrk hey nghttp2-client    # the peers and the load generators it uses

One run on this machine, peers side by side: a compiled copy of the working tree is built first
(bench/compiled.py, mypyc), then nginx `proxy_pass`, the naive aiohttp+OpenTelemetry proxy, and the
sidecar at 0 % and 100 % sampling in both builds stand in front of the same upstream (nginx `return
200`). Saturation: wrk, 50 connections. Fixed rate: 1000 req/s over 10 connections under hey (`-c 10 -q
100`, 0.1 ms resolution) and under h2load (`--h1 -c 10 --rps 100`, µs resolution); the latency a proxy
adds is its percentile minus the upstream's own at the same rate. CPU is the proxy's utime + stime from
/proc; RSS its peak during the saturation run. Rounds rotate the peer order; medians are shown. The
rows and the goals printed under them are the ones the performance doc reports; the raw figures go to
bench/results/table-*.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compiled import build_compiled_tree
from bench.run import ROOT, Harness, Peer, measure, measure_rate, median_of

BUILDS = {"pure": "pure Python", "compiled": "compiled (mypyc)"}


def rotate(names: list[str], r: int) -> list[str]:
    return names[r % len(names) :] + names[: r % len(names)]


def saturation(h: Harness, peers: dict[str, Peer], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    names = [n for n in peers if n != "direct"]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in rotate(names, r):
            runs[name].append(measure(h, peers[name], args.connections, args.duration))
    return {n: median_of(rs) for n, rs in runs.items()}


def fixed_rate(
    h: Harness, peers: dict[str, Peer], tool: str, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    names = [n for n in peers if n != "naive"]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in rotate(names, r):
            runs[name].append(measure_rate(h, peers[name], args.rate, 10, args.duration, tool))
    return {n: median_of(rs) for n, rs in runs.items()}


def added(rates: dict[str, dict[str, Any]], name: str) -> tuple[float, float]:
    base = rates["direct"]
    return rates[name]["p50"] - base["p50"], rates[name]["p99"] - base["p99"]


def render(sat: dict[str, dict[str, Any]], rates: dict[str, dict[str, dict[str, Any]]], args: Any) -> str:
    nginx, naive = sat["nginx"]["rps"], sat.get("naive", {}).get("rps", 0.0)
    tools = list(rates)
    head = " | ".join(f"added p50 / p99 ms, {t}" for t in tools)
    lines = [
        f"\n{args.connections} connections (wrk) and {args.rate} req/s fixed rate ({', '.join(tools)}), "
        f"{args.rounds} rounds x {args.duration:g} s, medians; 100 % sampling unless said",
        f"| build | req/s | vs nginx | vs naive | tracing cost | CPU µs/req | {head} | vCPU per 1000 req/s | RSS MB |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(tools) + "---:|---:|",
    ]
    for build, label in BUILDS.items():
        s100, s0 = sat[f"{build}-100"], sat[f"{build}-0"]
        cost = 1 - s100["rps"] / s0["rps"] if s0["rps"] else float("nan")
        lat = " | ".join("+{:.2f} / +{:.2f}".format(*added(rates[t], f"{build}-100")) for t in tools)
        vcpu = rates[tools[0]][f"{build}-100"]["vcpu_per_1k"]
        vs_naive = f"{s100['rps'] / naive:.1f}x" if naive else "-"
        lines.append(
            f"| {label} | {s100['rps']:,.0f} | {s100['rps'] / nginx:.2f}x | {vs_naive} | {cost:.0%} "
            f"| {s100['cpu_us_per_req']:.1f} | {lat} | {vcpu:.3f} | {s100['rss_mb']:.1f} |"
        )
    lat = " | ".join("+{:.2f} / +{:.2f}".format(*added(rates[t], "nginx")) for t in tools)
    lines.append(
        f"| nginx proxy_pass | {nginx:,.0f} | 1 | - | - | {sat['nginx']['cpu_us_per_req']:.1f} | {lat} "
        f"| {rates[tools[0]]['nginx']['vcpu_per_1k']:.3f} | {sat['nginx']['rss_mb']:.1f} |"
    )
    if naive:
        lines.append(
            f"| naive (aiohttp + OpenTelemetry) | {naive:,.0f} | {naive / nginx:.2f}x | 1 | - "
            f"| {sat['naive']['cpu_us_per_req']:.1f} | " + " | ".join("-" for _ in tools) + f" | - "
            f"| {sat['naive']['rss_mb']:.1f} |"
        )
    c100, c0 = sat["compiled-100"], sat["compiled-0"]
    goals = {
        "compiled >= 0.6x nginx": c100["rps"] >= 0.6 * nginx,
        "compiled >= 12x naive": bool(naive) and c100["rps"] >= 12 * naive,
        "tracing costs <= 15 % (compiled)": c100["rps"] >= 0.85 * c0["rps"],
        "vCPU per 1000 req/s <= 0.08 under hey (compiled)": "hey" in rates
        and rates["hey"]["compiled-100"]["vcpu_per_1k"] <= 0.08,
        "RSS <= 50 MB (compiled)": c100["rss_mb"] <= 50,
    }
    for t in tools:
        ours, theirs = added(rates[t], "compiled-100"), added(rates[t], "nginx")
        goals[f"added p50 and p99 <= 1.5x nginx's under {t} (compiled)"] = all(
            o <= 1.5 * max(n, 0.0) for o, n in zip(ours, theirs, strict=True)
        )
    lines += [f"  {'PASS' if ok else 'FAIL'}  {goal}" for goal, ok in goals.items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--tools", default="hey,h2load", help="fixed-rate load generators, in this order")
    parser.add_argument("--no-naive", action="store_true", help="skip the aiohttp+OpenTelemetry peer")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-table-"))
    tree = build_compiled_tree(workdir)
    h = Harness(workdir)
    if not h.nginx:
        print("bench/table.py needs nginx (apt-get install -y nginx)", file=sys.stderr)
        return 2
    try:
        h.start_collector("sink")
        upstream = h.start_upstream()
        peers: dict[str, Peer] = {"direct": upstream, "nginx": h.start_nginx(upstream.port)}
        if not args.no_naive:
            peers["naive"] = h.start_naive(upstream.port)
        for build in BUILDS:
            for sampling in (0, 100):
                # A 100 ms lag probe: a 1 ms one costs ~0.02 vCPU, which would blur vCPU per 1000 req/s.
                peers[f"{build}-{sampling}"] = h.start_sidecar(
                    f"{build}-{sampling}", upstream.port, float(sampling), lag_probe=0.1,
                    tree=tree if build == "compiled" else None,
                )  # fmt: skip
        sat = saturation(h, peers, args)
        rates = {tool: fixed_rate(h, peers, tool, args) for tool in args.tools.split(",")}
    finally:
        h.stop()
    print(render(sat, rates, args))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw = {"args": vars(args), "saturation": sat, "rates": rates, "python": sys.version.split()[0]}
    (out / f"table-{stamp}.json").write_text(json.dumps(raw, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
