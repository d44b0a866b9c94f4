"""Argument parsing and exit codes of the `sidecar` command; the work is done elsewhere."""

from __future__ import annotations

import argparse
import json
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
    target = r.add_mutually_exclusive_group(required=True)
    target.add_argument("--dataplane", metavar="NAME")
    target.add_argument("--dataplane-file", metavar="FILE")
    r.add_argument("--admin-address", default="127.0.0.1:9901", metavar="HOST:PORT")
    r.add_argument("--workers", type=int, default=1, metavar="N")

    sub.add_parser("demo", help="run the local demo topology and print the traces")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.config)
    if args.command == "inspect":
        return _inspect(args.config, args.dataplane, args.format)
    if args.command == "run":
        raise NotImplementedError  # lead: sidecar.runtime
    if args.command == "demo":
        raise NotImplementedError  # lead: sidecar.demo
    return 2


if __name__ == "__main__":
    sys.exit(main())
