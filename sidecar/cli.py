"""Argument parsing and exit codes of the `sidecar` command; the work is done elsewhere.

Every user error is one line on stderr and a non-zero exit (2: usage, 1: config or start-up), never a
traceback. `sidecar run`'s options can also be set as environment variables by one rule: the flag's name
upper-cased with `SIDECAR_` in front (`--report-timeout` is `SIDECAR_REPORT_TIMEOUT`); a flag wins over
its variable, and an unknown `SIDECAR_*` variable is warned about at start.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import yaml

from sidecar import version_line
from sidecar.admin.levels import CHOICES, parse_level
from sidecar.config import load_config, resolve_dataplane
from sidecar.config.address import split_host_port

ENV_PREFIX = "SIDECAR_"
log = logging.getLogger("sidecar")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix, not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


# Value checks shared by flags and their variables: each returns the value or raises ValueError.
def _number(kind: type[int] | type[float], low: float, high: float | None = None) -> Callable[[str], Any]:
    def check(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if value < low or (high is not None and value > high):
            bound = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
            raise ValueError(f"must be {bound}, got {text}")
        return value

    return check


def _positive(text: str) -> float:
    value = float(_number(float, float("-inf"))(text))
    if not value > 0:
        raise ValueError(f"must be > 0, got {text}")
    return value


def _address(text: str) -> tuple[str, int]:
    return split_host_port(text)


def _level(text: str) -> str:
    parse_level(text)
    return text.strip().lower()


def _text(text: str) -> str:
    return text


def _otlp_endpoint(text: str) -> str:
    """`host:port` (OTLP/gRPC) or an http(s) URL (OTLP/HTTP, `/v1/traces` when it has no path)."""
    value = text.strip()
    if value.startswith(("http://", "https://")):
        if not value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError(f"{text!r}: the URL has no host")
        return value
    if "://" in value:
        raise ValueError(f"{text!r}: host:port for OTLP/gRPC, or an http(s) URL for OTLP/HTTP")
    split_host_port(value)  # raises ValueError with the reason
    return value


def _codec(text: str) -> str:
    from sidecar.proxy.h2_codec import parse_choice

    return parse_choice(text)


def _underscores(text: str) -> str:
    choice = text.strip().lower()
    if choice not in ("drop", "reject", "allow"):
        raise ValueError(f"{text!r}: choose drop, reject or allow")
    return choice


def _trace_context(text: str) -> str:
    from sidecar.tracing.decide import TRACE_CONTEXT_MODES

    choice = text.strip().lower()
    if choice not in TRACE_CONTEXT_MODES:
        raise ValueError(f"{text!r}: choose {', '.join(TRACE_CONTEXT_MODES)}")
    return choice


# dest -> (check, default); the flag is `--` + dest with `-`, the variable SIDECAR_ + dest upper-cased.
RUN_OPTIONS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "dataplane": (_text, None),
    "dataplane_file": (_text, None),
    "admin_address": (_address, ("127.0.0.1", 9901)),
    "workers": (_number(int, 1, 512), 1),
    "access_log": (_text, None),
    "drain_grace": (_number(float, 0), 10.0),
    "log_level": (_level, "info"),
    "upstream_timeout": (_positive, None),
    "connect_timeout": (_positive, None),
    "idle_timeout": (_positive, None),
    "max_header_kb": (_number(int, 1, 8192), None),
    "max_headers": (_number(int, 1, 10000), None),
    "stream_idle_timeout": (_positive, None),
    "request_headers_timeout": (_positive, None),
    "h2_codec": (_codec, "auto"),
    "headers_with_underscores": (_underscores, None),
    "lag_probe_interval": (_number(float, 0.001, 60), 0.1),
    "trace_context": (_trace_context, "b3+w3c"),
    "flush_interval": (_positive, None),
    "min_batch": (_number(int, 1), None),
    "max_batch": (_number(int, 1), None),
    "buffer_capacity": (_number(int, 1), None),
    "report_timeout": (_positive, None),
    "retry_budget": (_number(float, 0), None),
    "otlp_endpoint": (_otlp_endpoint, None),
}
# Reporter flags and the ReporterSettings field each one sets.
REPORTER_FIELDS = {
    "flush_interval": "flush_interval",
    "min_batch": "min_batch",
    "max_batch": "max_batch",
    "buffer_capacity": "buffer_capacity",
    "report_timeout": "request_timeout",
    "retry_budget": "retry_budget",
}


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def env_name(dest: str) -> str:
    return ENV_PREFIX + dest.upper()


class UsageError(Exception):
    """A bad flag or variable value: one line, exit 2."""


def _checked(check: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sidecar", description="Tracing sidecar proxy with Kuma TrafficTrace semantics")
    p.add_argument("--version", action="version", version=version_line())
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    v = sub.add_parser("validate", help="check Kuma resources and report every problem")
    v.add_argument(
        "--config", action="append", required=True, metavar="PATH", help="file or directory (repeatable)"
    )

    i = sub.add_parser("inspect", help="print the snapshot resolved for one dataplane")
    i.add_argument("--config", action="append", required=True, metavar="PATH")
    i.add_argument("--dataplane", required=True, metavar="NAME")
    i.add_argument("--format", choices=("json", "yaml"), default="json")

    m = sub.add_parser(
        "migrate",
        help="print the MeshTraces equivalent to the TrafficTraces (Kuma 3.0 keeps only MeshTrace)",
    )
    m.add_argument("--config", action="append", required=True, metavar="PATH")
    m.add_argument("--format", choices=("universal", "kubernetes"), default="universal")

    r = sub.add_parser(
        "run",
        help="run the sidecar for one dataplane",
        epilog="Every option but --config and --no-watch can also be set as SIDECAR_<OPTION> "
        "(e.g. SIDECAR_DATAPLANE, SIDECAR_LOG_LEVEL, SIDECAR_REPORT_TIMEOUT); the flag wins.",
    )

    def add(group: Any, dest: str, metavar: str, text: str) -> None:
        group.add_argument(
            flag(dest), dest=dest, type=_checked(RUN_OPTIONS[dest][0]), metavar=metavar, help=text
        )

    r.add_argument("--config", action="append", required=True, metavar="PATH", help="file or directory")
    add(r, "dataplane", "NAME", "the Dataplane to serve ($SIDECAR_DATAPLANE)")
    add(r, "dataplane_file", "FILE", "a file holding the one Dataplane to serve")
    add(r, "admin_address", "HOST:PORT", "admin server (127.0.0.1:9901)")
    add(r, "workers", "N", "processes sharing the listeners (1)")
    add(r, "access_log", "PATH|-", "one JSON line per request (off)")
    add(r, "drain_grace", "SECONDS", "in-flight grace on SIGTERM (10)")
    add(r, "log_level", "LEVEL", f"{CHOICES} (info; $SIDECAR_LOG_LEVEL)")
    add(
        r,
        "trace_context",
        "MODE",
        "propagation: b3+w3c (B3 first, else W3C traceparent; both written), b3 (B3 only, "
        "traceparent untouched) or w3c (b3+w3c; $SIDECAR_TRACE_CONTEXT)",
    )
    r.add_argument("--no-watch", action="store_true", help="reload only on SIGHUP, not on file changes")
    data = r.add_argument_group("data path")
    add(data, "upstream_timeout", "SECONDS", "until response headers (15)")
    add(data, "connect_timeout", "SECONDS", "to connect upstream (5)")
    add(data, "idle_timeout", "SECONDS", "idle downstream keep-alive (300)")
    add(data, "max_header_kb", "KB", "request head size limit (60)")
    add(data, "max_headers", "N", "request header count limit (100)")
    add(data, "stream_idle_timeout", "SECONDS", "an HTTP/2 stream with no frame either way ends (300)")
    add(data, "request_headers_timeout", "SECONDS", "to receive a request head, HTTP/1.1 or HTTP/2 (10)")
    add(data, "h2_codec", "CODEC", "HTTP/2 codec: nghttp2, h2 or auto (nghttp2 if found)")
    add(
        data,
        "headers_with_underscores",
        "ACTION",
        "request header names with '_': drop, reject or allow (drop)",
    )
    add(data, "lag_probe_interval", "SECONDS", "event-loop lag probe period (0.1; the benchmark: 0.001)")
    rep = r.add_argument_group("span reporter")
    add(rep, "flush_interval", "SECONDS", "between flushes (1)")
    add(rep, "min_batch", "SPANS", "a flush starts at this many spans (200, or --max-batch if lower)")
    add(rep, "max_batch", "SPANS", "spans per POST (1000)")
    add(rep, "buffer_capacity", "SPANS", "spans kept while the collector is away (20000)")
    add(rep, "report_timeout", "SECONDS", "for one POST (5)")
    add(rep, "retry_budget", "SECONDS", "one batch's time for retries (30)")
    add(
        rep,
        "otlp_endpoint",
        "HOST:PORT|URL",
        "send a Zipkin backend's spans as OTLP instead: host:port is gRPC, an http(s) URL is HTTP",
    )

    d = sub.add_parser("demo", help="run the local demo topology and print the traces")
    d.add_argument(
        "--config", metavar="DIR", help="Kuma resources of the topology (default: the embedded demo)"
    )
    d.add_argument(
        "--requests", type=_checked(_number(int, 1, 1000)), default=3, metavar="N", help="requests (3)"
    )
    d.add_argument(
        "--admin-base",
        type=_checked(_number(int, 1, 65000)),
        default=9901,
        metavar="PORT",
        help="first sidecar admin port (9901)",
    )
    d.add_argument("--keep-running", action="store_true", help="keep the topology up until Ctrl-C")
    d.add_argument("--meshtrace", action="store_true", help="the embedded demo, traced by MeshTrace")
    return p


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _validate(paths: list[str]) -> int:
    result = load_config(paths)
    for notice in result.notices:  # on stderr: stdout keeps its one summary line (or the problems)
        print(f"warning: {notice.text}", file=sys.stderr)
    if not result.ok:
        for problem in result.problems:
            print(problem)
        return 1
    r = result.resources
    print(
        f"OK: {_plural(r.files, 'file')}, {_plural(len(r.meshes), 'mesh')}"
        f"{'es' if len(r.meshes) != 1 else ''}, {_plural(len(r.traffic_traces), 'traffic trace')}, "
        f"{_plural(len(r.mesh_traces), 'mesh trace')}, "
        f"{_plural(len(r.dataplanes), 'dataplane')}, {_plural(len(r.external_services), 'external service')}"
    )
    return 0


def _inspect(paths: list[str], dataplane: str, fmt: str) -> int:
    resolution = resolve_dataplane(paths, dataplane=dataplane)
    snapshot = resolution.snapshot
    if snapshot is None:
        for problem in resolution.problems:
            print(problem, file=sys.stderr)
        return 1
    for warning in resolution.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    doc = snapshot.to_json()
    if fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
    else:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


def _migrate(paths: list[str], form: str) -> int:
    from sidecar.config.migrate import convert, differences, document

    result = load_config(paths)
    if not result.ok:
        for problem in result.problems:
            print(problem, file=sys.stderr)
        return 1
    resources = result.resources
    if not resources.traffic_traces:
        print("# no TrafficTrace to migrate")
        return 0
    converted, ordered = convert(resources)
    changed = differences(resources, [c.trace for c in converted])
    if changed:  # cannot happen with ordered names; say so rather than print a wrong conversion
        print(f"sidecar migrate: no exact conversion for {', '.join(changed)}", file=sys.stderr)
        return 1
    meshes = sorted({c.trace.mesh for c in converted})
    print(
        f"# MeshTrace equivalents of {_plural(len(resources.traffic_traces), 'TrafficTrace')} "
        f"(mesh {', '.join(meshes)}), from `sidecar migrate`. Apply them, then delete the TrafficTraces"
    )
    print("# and the meshes' `tracing` sections: a dataplane a MeshTrace selects ignores TrafficTraces.")
    if ordered:
        print("# The names are numbered so that Kuma's merge order keeps the TrafficTraces' precedence.")
    docs = []
    for item in converted:
        docs.append(f"# from {item.origin}\n" + yaml.safe_dump(document(item.trace, form), sort_keys=False))
    sys.stdout.write("---\n".join(docs))
    return 0


def run_values(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each run option's value (flag, else variable, else default) and where it came from."""
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for dest, (check, default) in RUN_OPTIONS.items():
        given = getattr(args, dest)
        if given is not None:
            values[dest], source[dest] = given, flag(dest)
        elif env.get(env_name(dest), "") != "":
            raw = env[env_name(dest)]
            try:
                values[dest] = check(raw)
            except ValueError as exc:
                raise UsageError(f"{env_name(dest)}={raw}: {exc} (the variable of {flag(dest)})") from None
            source[dest] = env_name(dest)
        else:
            values[dest], source[dest] = default, "default"
    # The Dataplane comes from the flags if one is given, else from the variables.
    by_flag = [d for d in ("dataplane", "dataplane_file") if source[d].startswith("--")]
    chosen = by_flag or [d for d in ("dataplane", "dataplane_file") if source[d] != "default"]
    if len(chosen) > 1:
        raise UsageError(f"give one of {' and '.join(source[d] for d in chosen)}, not both")
    if not chosen:
        # A misspelt variable is the likely cause: say so here, since this error stops the start before
        # the unknown-variable warnings are printed.
        typos = [w for w in unknown_variables(env) if "did you mean SIDECAR_DATAPLANE" in w]
        raise UsageError(
            "which Dataplane? pass --dataplane NAME or --dataplane-file FILE, or set $SIDECAR_DATAPLANE"
            + "".join(f"; {w}" for w in typos)
        )
    for other in {"dataplane", "dataplane_file"} - set(chosen):
        values[other] = None
    return values, source


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """One warning per SIDECAR_* variable no option reads, with the name it probably meant."""
    known = {env_name(dest) for dest in RUN_OPTIONS}
    renamed = {
        f"{ENV_PREFIX}REPORTER_{field.upper()}": env_name(dest) for dest, field in REPORTER_FIELDS.items()
    }
    warnings = []
    # SIDECAR_BENCH_*: the benchmark's own switches, inherited by the sidecars it starts.
    foreign = ("SIDECAR_BENCH_",)
    for name in sorted(
        n for n in env if n.startswith(ENV_PREFIX) and n not in known and not n.startswith(foreign)
    ):
        if name in renamed:
            warnings.append(f"{name} is not read any more: it is {renamed[name]} now (ignored)")
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"unknown environment variable {name} (ignored){hint}")
    return warnings


def _reporter(values: dict[str, Any], source: dict[str, str]) -> Any:
    from sidecar.reporting import ReporterSettings, SettingsError

    base = ReporterSettings()

    def named(dest: str) -> str:
        value = values[dest] if values[dest] is not None else getattr(base, REPORTER_FIELDS[dest])
        where = source[dest] if source[dest] != "default" else f"{flag(dest)} default"
        return f"{where} ({value:g})"

    def value(dest: str) -> Any:
        return values[dest] if values[dest] is not None else getattr(base, REPORTER_FIELDS[dest])

    values = {**values, "min_batch": base.min_batch_for(values["min_batch"], values["max_batch"])}
    if value("min_batch") > value("max_batch"):
        raise UsageError(f"{named('min_batch')} must be <= {named('max_batch')}")
    if value("buffer_capacity") < value("max_batch"):
        raise UsageError(f"{named('buffer_capacity')} must be >= {named('max_batch')}")
    try:
        return base.replace(**{field: values[dest] for dest, field in REPORTER_FIELDS.items()})
    except SettingsError as exc:  # a rule added later: still name the flags, not the fields
        message = str(exc)
        for dest, field in REPORTER_FIELDS.items():
            message = message.replace(field, flag(dest))
        raise UsageError(message) from None


def _run(args: argparse.Namespace) -> int:
    from sidecar.proxy import ProxySettings
    from sidecar.proxy.h2_codec import unavailable
    from sidecar.proxy.head import UnderscoreAction
    from sidecar.runtime import RunOptions
    from sidecar.serve import run, setup_logging

    try:
        values, source = run_values(args, os.environ)
        reporter = _reporter(values, source)
    except UsageError as exc:
        print(f"sidecar run: {exc}", file=sys.stderr)
        return 2
    proxy_changes = {
        "upstream_timeout": values["upstream_timeout"],
        "connect_timeout": values["connect_timeout"],
        "idle_timeout": values["idle_timeout"],
        "max_header_bytes": values["max_header_kb"] * 1024 if values["max_header_kb"] else None,
        "max_headers": values["max_headers"],
        "stream_idle_timeout": values["stream_idle_timeout"],
        "header_timeout": values["request_headers_timeout"],
        "h2_codec": values["h2_codec"],
        "headers_with_underscores": (
            UnderscoreAction(values["headers_with_underscores"])
            if values["headers_with_underscores"]
            else None
        ),
    }
    proxy = ProxySettings(**{k: v for k, v in proxy_changes.items() if v is not None})
    why = unavailable(proxy.h2_codec)
    if why is not None:
        print(f"sidecar run: {flag('h2_codec')} {proxy.h2_codec}: {why}", file=sys.stderr)
        return 2
    admin_host, admin_port = values["admin_address"]
    options = RunOptions(
        config=args.config,
        dataplane=values["dataplane"],
        dataplane_file=values["dataplane_file"],
        admin_host=admin_host,
        admin_port=admin_port,
        access_log=values["access_log"],
        proxy=proxy,
        reporter=reporter,
        drain_grace=values["drain_grace"],
        watch=not args.no_watch,
        workers=values["workers"],
        log_level=values["log_level"],
        lag_probe_interval=values["lag_probe_interval"],
        otlp_endpoint=values["otlp_endpoint"],
        trace_context=values["trace_context"],
    )
    setup_logging(options.log_level)
    for warning in unknown_variables(os.environ):
        log.warning("%s", warning)
    if options.workers > 1:
        from sidecar.workers import run_workers  # multiprocessing and the rest: only for workers

        return run_workers(options, options.workers)
    return run(options)


def _demo(args: argparse.Namespace) -> int:
    from sidecar.demo.extras import missing_extras

    missing = missing_extras()
    if missing:
        print(f"sidecar demo: {missing}", file=sys.stderr)
        return 1
    from sidecar.demo.runner import MESHTRACE_CONFIG, run_demo

    if args.meshtrace and args.config:
        print("sidecar demo: give --config or --meshtrace, not both", file=sys.stderr)
        return 2
    config = str(MESHTRACE_CONFIG) if args.meshtrace else args.config
    code: int = run_demo(config, args.requests, args.admin_base, args.keep_running)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `sidecar`: show what it can do
        parser.print_help()
        return 0
    if args.command == "validate":
        return _validate(args.config)
    if args.command == "inspect":
        return _inspect(args.config, args.dataplane, args.format)
    if args.command == "migrate":
        return _migrate(args.config, args.format)
    if args.command == "run":
        return _run(args)
    if args.command == "demo":
        return _demo(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
