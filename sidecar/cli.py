"""Argument parsing and exit codes of the `sidecar` command; the work is done elsewhere."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        raise NotImplementedError  # config helper
    if args.command == "inspect":
        raise NotImplementedError  # config helper
    if args.command == "run":
        raise NotImplementedError  # lead: sidecar.runtime
    if args.command == "demo":
        raise NotImplementedError  # lead: sidecar.demo
    return 2


if __name__ == "__main__":
    sys.exit(main())
