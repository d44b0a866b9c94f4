"""Every user mistake is one clear line on stderr and a non-zero exit, never a traceback.

Each case runs `python -m sidecar` as a subprocess, as a user would; busy ports are held by this process.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.util import free_port


@dataclass
class Case:
    args: list[str]
    code: int
    line: str  # a regex the one stderr line must match entirely
    env: dict[str, str] = field(default_factory=dict)


ADMIN_BUSY = "{admin_busy}"
PORT_BUSY = "{port_busy}"

CASES = {
    "no dataplane": Case(
        ["run", "--config", "{config}"],
        2,
        r"sidecar run: which Dataplane\? pass --dataplane NAME or --dataplane-file FILE, "
        r"or set \$SIDECAR_DATAPLANE",
    ),
    "misspelt dataplane variable": Case(
        ["run", "--config", "{config}"],
        2,
        r"sidecar run: which Dataplane\? pass --dataplane NAME or --dataplane-file FILE, "
        r"or set \$SIDECAR_DATAPLANE; unknown environment variable SIDECAR_DATAPLAN \(ignored\); "
        r"did you mean SIDECAR_DATAPLANE\?",
        {"SIDECAR_DATAPLAN": "web-01"},
    ),
    "two dataplanes": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--dataplane-file", "{config}"],
        2,
        r"sidecar run: give one of --dataplane and --dataplane-file, not both",
    ),
    "negative upstream timeout": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--upstream-timeout", "-1"],
        2,
        r"sidecar run: argument --upstream-timeout: must be > 0, got -1 \(see sidecar run --help\)",
    ),
    "nan connect timeout": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--connect-timeout", "nan"],
        2,
        r"sidecar run: argument --connect-timeout: expected a number, got 'nan' .*",
    ),
    "zero workers": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--workers", "0"],
        2,
        r"sidecar run: argument --workers: must be in \[1, 512\], got 0 .*",
    ),
    "negative drain grace": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--drain-grace", "-5"],
        2,
        r"sidecar run: argument --drain-grace: must be >= 0, got -5 .*",
    ),
    "huge header limit": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--max-header-kb", "9000"],
        2,
        r"sidecar run: argument --max-header-kb: must be in \[1, 8192\], got 9000 .*",
    ),
    "zero flush interval": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--flush-interval", "0"],
        2,
        r"sidecar run: argument --flush-interval: must be > 0, got 0 .*",
    ),
    "batch bounds crossed": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--min-batch", "500", "--max-batch", "100"],
        2,
        r"sidecar run: --min-batch \(500\) must be <= --max-batch \(100\)",
    ),
    "buffer below the default batch": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--buffer-capacity", "10"],
        2,
        r"sidecar run: --buffer-capacity \(10\) must be >= --max-batch default \(1000\)",
    ),
    "bad reporter variable": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01"],
        2,
        r"sidecar run: SIDECAR_REPORT_TIMEOUT=soon: expected a number, got 'soon' "
        r"\(the variable of --report-timeout\)",
        {"SIDECAR_REPORT_TIMEOUT": "soon"},
    ),
    "variable range": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01"],
        2,
        r"sidecar run: SIDECAR_MIN_BATCH=0: must be >= 1, got 0 \(the variable of --min-batch\)",
        {"SIDECAR_MIN_BATCH": "0"},
    ),
    "bad log level flag": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--log-level", "verbose"],
        2,
        r"sidecar run: argument --log-level: unknown log level 'verbose'; "
        r"valid: trace, debug, info, warning, error, critical, off .*",
    ),
    "bad log level variable": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01"],
        2,
        r"sidecar run: SIDECAR_LOG_LEVEL=verbose: unknown log level 'verbose'; valid: .* "
        r"\(the variable of --log-level\)",
        {"SIDECAR_LOG_LEVEL": "verbose"},
    ),
    "bad trace context flag": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--trace-context", "zipkin"],
        2,
        r"sidecar run: argument --trace-context: 'zipkin': choose b3\+w3c, b3, w3c .*",
    ),
    "bad trace context variable": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01"],
        2,
        r"sidecar run: SIDECAR_TRACE_CONTEXT=w3c\+b3: 'w3c\+b3': choose b3\+w3c, b3, w3c "
        r"\(the variable of --trace-context\)",
        {"SIDECAR_TRACE_CONTEXT": "w3c+b3"},
    ),
    "admin address without host": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--admin-address", "localhost"],
        2,
        r"sidecar run: argument --admin-address: expected HOST:PORT with a port in \[0, 65535\], "
        r"got 'localhost' .*",
    ),
    "unresolvable admin host": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--admin-address", "nohost.invalid:9901"],
        1,
        r"admin nohost.invalid:9901: cannot resolve 'nohost.invalid' \(.+\); change --admin-address",
    ),
    "busy admin port": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--admin-address", ADMIN_BUSY],
        1,
        r"admin 127.0.0.1:\d+: cannot listen: Address already in use; change --admin-address",
    ),
    "busy admin port with workers": Case(
        [
            "run",
            "--config",
            "{config}",
            "--dataplane",
            "web-01",
            "--workers",
            "2",
            "--admin-address",
            ADMIN_BUSY,
        ],
        1,
        r"admin 127.0.0.1:\d+: cannot listen: Address already in use; change --admin-address",
    ),
    "busy inbound port": Case(
        ["run", "--config", "{busy_config}", "--dataplane", "web-01", "--admin-address", "127.0.0.1:0"],
        1,
        r"web-01 inbound 127.0.0.1:\d+: cannot listen: Address already in use; "
        r"change networking.inbound\[0\].port of Dataplane web-01",
    ),
    "unresolvable dataplane address": Case(
        ["run", "--config", "{nohost_config}", "--dataplane", "web-01", "--admin-address", "127.0.0.1:0"],
        1,
        r"web-01 inbound nohost.invalid:\d+: cannot resolve 'nohost.invalid' \(.+\); "
        r"change networking.address of Dataplane web-01",
    ),
    "unknown dataplane": Case(
        ["run", "--config", "{config}", "--dataplane", "nope", "--admin-address", "127.0.0.1:0"],
        1,
        r'dataplane "nope" not found \(known: web-01\)',
    ),
    "service name for a dataplane": Case(
        ["run", "--config", "{config}", "--dataplane", "web", "--admin-address", "127.0.0.1:0"],
        1,
        r'dataplane "web" not found \(known: web-01\); "web" is the kuma.io/service of Dataplane web-01: '
        r'did you mean "web-01"\?',
    ),
    "service name for a dataplane variable": Case(
        ["run", "--config", "{config}", "--admin-address", "127.0.0.1:0"],
        1,
        r'dataplane "web" not found \(known: web-01\); "web" is the kuma.io/service of Dataplane web-01: '
        r'did you mean "web-01"\?',
        {"SIDECAR_DATAPLANE": "web"},
    ),
    "missing config": Case(
        ["run", "--config", "{config}.missing", "--dataplane", "web-01"],
        1,
        r".*\.missing: no such file or directory",
    ),
    "unwritable access log": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--access-log", "/nonexistent/dir/a.log"],
        1,
        r"--access-log /nonexistent/dir/a.log: No such file or directory",
    ),
    "unknown flag": Case(
        ["run", "--config", "{config}", "--dataplane", "web-01", "--bogus"],
        2,
        r"sidecar: unrecognized arguments: --bogus \(see sidecar --help\)",
    ),
    "unknown command": Case(["frobnicate"], 2, r"sidecar: argument command: invalid choice: 'frobnicate' .*"),
    "demo without requests": Case(
        ["demo", "--requests", "0"], 2, r"sidecar demo: argument --requests: must be in \[1, 1000\], got 0 .*"
    ),
}


def dataplane_config(path: Path, address: str, port: int) -> Path:
    docs = [
        {"type": "Mesh", "name": "default"},
        {
            "type": "Dataplane",
            "name": "web-01",
            "mesh": "default",
            "networking": {
                "address": address,
                "inbound": [{"port": port, "servicePort": free_port(), "tags": {"kuma.io/service": "web"}}],
            },
        },
    ]
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.fixture
def busy() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    return {**env, **extra}


@pytest.mark.parametrize("name", list(CASES))
def test_mistake_is_one_line(name: str, tmp_path: Path, busy: int) -> None:
    case = CASES[name]
    values = {
        "config": str(dataplane_config(tmp_path / "ok.yaml", "127.0.0.1", free_port())),
        "busy_config": str(dataplane_config(tmp_path / "busy.yaml", "127.0.0.1", busy)),
        "nohost_config": str(dataplane_config(tmp_path / "nohost.yaml", "nohost.invalid", free_port())),
        "admin_busy": f"127.0.0.1:{busy}",
        "port_busy": str(busy),
    }
    args = [a.format(**values) for a in case.args]
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(**case.env),
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == case.code, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.fullmatch(case.line, lines[0]), lines[0]


def test_unknown_sidecar_variables_are_warned_about_at_start(tmp_path: Path) -> None:
    config = dataplane_config(tmp_path / "ok.yaml", "127.0.0.1", free_port())
    env = clean_env(SIDECAR_FLUSH_INTERVL="1", SIDECAR_REPORTER_REQUEST_TIMEOUT="3")
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--config", str(config), "--dataplane", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 1
    warnings = [line.split(" sidecar: ", 1)[1] for line in proc.stderr.splitlines() if " WARNING " in line]
    assert warnings == [
        "unknown environment variable SIDECAR_FLUSH_INTERVL (ignored); did you mean SIDECAR_FLUSH_INTERVAL?",
        "SIDECAR_REPORTER_REQUEST_TIMEOUT is not read any more: it is SIDECAR_REPORT_TIMEOUT now (ignored)",
    ]
