"""Argument parsing and exit codes of the `sidecar` command; the work is done elsewhere."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence

import yaml

from sidecar.config import load_config, resolve


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sidecar", description="Tracing sidecar proxy with Kuma TrafficTrace semantics"
    )
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check Kuma resources and report every problem")
    v.add_argument(
        "--config", action="append", required=True, metavar="PATH", help="file or directory (repeatable)"
    )

    i = sub.add_parser("inspect", help="print the snapshot resolved for one dataplane")
    i.add_argument("--config", action="append", required=True, metavar="PATH")
    i.add_argument("--dataplane", required=True, metavar="NAME")
    i.add_argument("--format", choices=("json", "yaml"), default="json")

    r = sub.add_parser("run", help="run the sidecar for one dataplane")
    r.add_argument("--config", action="append", required=True, metavar="PATH")
    target = r.add_mutually_exclusive_group(required="SIDECAR_DATAPLANE" not in os.environ)
    target.add_argument(
        "--dataplane",
        metavar="NAME",
        default=os.environ.get("SIDECAR_DATAPLANE"),
        help="the Dataplane to serve (default: $SIDECAR_DATAPLANE)",
    )
    target.add_argument("--dataplane-file", metavar="FILE")
    r.add_argument("--admin-address", default="127.0.0.1:9901", metavar="HOST:PORT")
    r.add_argument("--workers", type=int, default=1, metavar="N", help="processes sharing the listeners")
    r.add_argument("--access-log", metavar="PATH|-", help="one JSON line per request (off by default)")
    r.add_argument(
        "--drain-grace", type=float, default=10.0, metavar="SECONDS", help="in-flight grace on SIGTERM"
    )
    r.add_argument("--no-watch", action="store_true", help="reload only on SIGHUP, not on file changes")
    p_ = r.add_argument_group("data path")
    p_.add_argument("--upstream-timeout", type=float, metavar="SECONDS", help="until response headers (15)")
    p_.add_argument("--connect-timeout", type=float, metavar="SECONDS", help="to connect upstream (5)")
    p_.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="idle downstream keep-alive (300)")
    p_.add_argument("--max-header-kb", type=int, metavar="KB", help="request head size limit (60)")
    p_.add_argument("--max-headers", type=int, metavar="N", help="request header count limit (100)")
    rep = r.add_argument_group("span reporter (also SIDECAR_REPORTER_* variables)")
    rep.add_argument("--flush-interval", type=float, metavar="SECONDS")
    rep.add_argument("--min-batch", type=int, metavar="SPANS")
    rep.add_argument("--max-batch", type=int, metavar="SPANS")
    rep.add_argument("--buffer-capacity", type=int, metavar="SPANS")
    rep.add_argument("--report-timeout", type=float, metavar="SECONDS")
    rep.add_argument("--retry-budget", type=float, metavar="SECONDS")

    d = sub.add_parser("demo", help="run the local demo topology and print the traces")
    d.add_argument(
        "--config", metavar="DIR", help="Kuma resources of the topology (default: the embedded demo)"
    )
    d.add_argument("--requests", type=int, default=3, metavar="N", help="requests to send (3)")
    d.add_argument(
        "--admin-base", type=int, default=9901, metavar="PORT", help="first sidecar admin port (9901)"
    )
    d.add_argument("--keep-running", action="store_true", help="keep the topology up until Ctrl-C")
    return p


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _validate(paths: list[str]) -> int:
    result = load_config(paths)
    if not result.ok:
        for problem in result.problems:
            print(problem)
        return 1
    r = result.resources
    print(
        f"OK: {_plural(r.files, 'file')}, {_plural(len(r.meshes), 'mesh')}"
        f"{'es' if len(r.meshes) != 1 else ''}, {_plural(len(r.traffic_traces), 'traffic trace')}, "
        f"{_plural(len(r.dataplanes), 'dataplane')}, {_plural(len(r.external_services), 'external service')}"
    )
    return 0


def _inspect(paths: list[str], dataplane: str, fmt: str) -> int:
    snapshot, problems = resolve(paths, dataplane=dataplane)
    if snapshot is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    doc = snapshot.to_json()
    if fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
    else:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--admin-address: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _run(args: argparse.Namespace) -> int:
    from sidecar.proxy import ProxySettings
    from sidecar.reporting import ReporterSettings, SettingsError
    from sidecar.runtime import RunOptions, run
    from sidecar.workers import run_workers

    try:
        admin_host, admin_port = _host_port(args.admin_address)
        reporter = ReporterSettings.from_env(os.environ).replace(
            flush_interval=args.flush_interval,
            min_batch=args.min_batch,
            max_batch=args.max_batch,
            buffer_capacity=args.buffer_capacity,
            request_timeout=args.report_timeout,
            retry_budget=args.retry_budget,
        )
        proxy_changes = {
            "upstream_timeout": args.upstream_timeout,
            "connect_timeout": args.connect_timeout,
            "idle_timeout": args.idle_timeout,
            "max_header_bytes": args.max_header_kb * 1024 if args.max_header_kb else None,
            "max_headers": args.max_headers,
        }
        proxy = dataclasses.replace(
            ProxySettings(), **{k: v for k, v in proxy_changes.items() if v is not None}
        )
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
    except (ValueError, SettingsError) as exc:
        print(f"sidecar run: {exc}", file=sys.stderr)
        return 2
    options = RunOptions(
        config=args.config,
        dataplane=args.dataplane,
        dataplane_file=args.dataplane_file,
        admin_host=admin_host,
        admin_port=admin_port,
        access_log=args.access_log,
        proxy=proxy,
        reporter=reporter,
        drain_grace=args.drain_grace,
        watch=not args.no_watch,
    )
    if args.workers > 1:
        return run_workers(options, args.workers)
    return run(options)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.config)
    if args.command == "inspect":
        return _inspect(args.config, args.dataplane, args.format)
    if args.command == "run":
        return _run(args)
    if args.command == "demo":
        from sidecar.demo.runner import run_demo

        return run_demo(args.config, args.requests, args.admin_base, args.keep_running)
    return 2


if __name__ == "__main__":
    sys.exit(main())
