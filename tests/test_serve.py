"""One `sidecar run` process (sidecar/serve.py): the ready line, the final line, and a second Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar import __version__, build_label
from sidecar.runtime import DrainSummary
from sidecar.serve import summary_line
from tests.util import free_port


@pytest.fixture
def silent_app() -> Iterator[socket.socket]:
    """An app that accepts a request and never answers: the request stays in flight."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def start(tmp_path: Path, app_port: int, *extra: str) -> tuple[subprocess.Popen[str], int, int]:
    port, admin = free_port(), free_port()
    docs = [
        {"type": "Mesh", "name": "default"},
        {
            "type": "Dataplane",
            "name": "web-01",
            "mesh": "default",
            "networking": {
                "address": "127.0.0.1",
                "inbound": [
                    {
                        "port": port,
                        "servicePort": app_port,
                        "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http"},
                    }
                ],
            },
        },
    ]
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    cmd = [
        sys.executable,
        "-m",
        "sidecar",
        "run",
        "--config",
        str(tmp_path / "all.yaml"),
        "--dataplane",
        "web-01",
    ]
    cmd += ["--admin-address", f"127.0.0.1:{admin}", "--no-watch", *extra]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as resp:
                if resp.status == 200:
                    return process, port, admin
        except OSError:
            pass
        assert time.monotonic() < deadline, "not ready"
        time.sleep(0.05)


def messages(stderr: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in stderr.splitlines()]


def test_ready_line_and_final_line(tmp_path: Path, silent_app: socket.socket) -> None:
    process, port, admin = start(tmp_path, silent_app.getsockname()[1])
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0
    ready, draining, final = messages(err)
    assert ready == (
        f"sidecar {__version__} ({build_label()}) for web-01 ready: inbound 127.0.0.1:{port}; no tracing; "
        f"admin 127.0.0.1:{admin}"
    )
    assert draining == "draining (grace 10s; Ctrl-C again to exit at once)"
    assert final == "stopped: drained 1 listener (no open connections); no tracing backend"


def test_a_second_ctrl_c_exits_without_draining(tmp_path: Path, silent_app: socket.socket) -> None:
    process, port, _ = start(tmp_path, silent_app.getsockname()[1], "--drain-grace", "60")
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        upstream, _ = silent_app.accept()  # the request reached the app: it is in flight
        with upstream:
            upstream.recv(1024)
            process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 10
            while "draining" not in (line := process.stderr.readline()):  # type: ignore[union-attr]
                assert line and time.monotonic() < deadline
            began = time.monotonic()
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=10)
    assert process.returncode == 130 and time.monotonic() - began < 5  # not the 60 s grace
    assert messages(err) == ["second interrupt: exiting now without draining"]


def test_workers_parent_says_the_same_lines_once(tmp_path: Path, silent_app: socket.socket) -> None:
    process, port, admin = start(tmp_path, silent_app.getsockname()[1], "--workers", "2")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0
    ready, draining, final = messages(err)
    assert ready.endswith(
        f"for web-01 ready: inbound 127.0.0.1:{port}; no tracing; admin 127.0.0.1:{admin} (2 workers)"
    )
    assert draining == "draining 2 workers (grace 10s; Ctrl-C again to exit at once)"
    assert final == "stopped: drained 2 listeners (no open connections); no tracing backend (2 workers)"


def test_debug_level_logs_each_request_and_local_reply(tmp_path: Path, silent_app: socket.socket) -> None:
    """At --log-level debug the traffic shows: one line per request (this one a local 504 UT reply), and
    no third-party debug chatter."""
    process, port, _ = start(
        tmp_path, silent_app.getsockname()[1], "--log-level", "debug", "--upstream-timeout", "0.2"
    )
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"GET /slow?x=1 HTTP/1.1\r\nHost: a\r\nx-request-id: req-1\r\n\r\n")
        upstream, _ = silent_app.accept()
        with upstream:
            reply = client.recv(4096)
        client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n")
        bad = client.recv(4096)
    assert reply.startswith(b"HTTP/1.1 504 ") and bad.startswith(b"HTTP/1.1 400 ")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    debug = [line for line in err.splitlines() if " DEBUG " in line]
    assert len(debug) == 2, err
    assert re.fullmatch(
        rf".* DEBUG sidecar\.proxy: inbound:127\.0\.0\.1:{port} GET /slow\?x=1 HTTP/1\.1 -> 504 UT "
        r"\d+\.\d ms, local reply UT, x-request-id req-1",
        debug[0],
    ), debug[0]
    assert "DEBUG sidecar.proxy: " in debug[1] and "local reply 400 DPE" in debug[1]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        (
            {"listeners": 1, "connections": 1, "spans_flushed": 1},
            "stopped: drained 1 listener (1 open connection closed in 0.2s); flushed 1 span to B",
        ),
        (
            {"listeners": 2, "connections": 0, "spans_flushed": 0},
            "stopped: drained 2 listeners (no open connections); every span was already sent to B",
        ),
        (
            {"listeners": 2, "connections": 3, "spans_flushed": 5, "spans_dropped": 2, "grace_ran_out": True},
            "stopped: drained 2 listeners (3 open connections; the 10s grace ran out and the rest were cut); "
            "flushed 5 spans to B (2 dropped)",
        ),
    ],
)
def test_stop_line_counts_in_plain_english(counts: dict[str, Any], expected: str) -> None:
    summary = DrainSummary(backend="B", seconds=0.2, **counts)
    assert summary_line(summary, 10) == expected


def test_ready_line_names_the_trace_context_mode() -> None:
    from types import SimpleNamespace

    from sidecar.serve import _ready_line

    url = "http://z:9411/api/v2/spans"
    snap = SimpleNamespace(  # the attributes and the inspect document the ready line may be built from
        traffic_trace="all",
        backend=SimpleNamespace(url=url),
        dataplane="web-01",
        to_json=lambda: {"trafficTrace": "all", "backend": {"url": url}, "dataplane": "web-01"},
    )
    runtime = SimpleNamespace(
        snapshot=snap,
        listeners={("inbound", "127.0.0.1", 1): None},
        admin_address=("127.0.0.1", 2),
        options=SimpleNamespace(trace_context="b3"),
        reporter=None,
    )
    line = _ready_line(runtime)  # type: ignore[arg-type]
    assert "; traffic trace all -> http://z:9411/api/v2/spans (trace context b3); admin" in line
