"""`sidecar demo` end to end, on a copy of the embedded config moved to free ports."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

from sidecar.demo.runner import EMBEDDED_CONFIG
from tests.util import ephemeral_range, free_port


def free_block(n: int) -> int:
    """A base port with n free ports after it (checked, then released)."""
    for _ in range(50):
        base = free_port()
        if base + n >= min(65535, ephemeral_range()[0]):  # the block stays outside the ephemeral range
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


def relocated_config(tmp: Path) -> Path:
    out = tmp / "config"
    out.mkdir()
    texts = {p.name: p.read_text() for p in EMBEDDED_CONFIG.glob("*.yaml")}
    ports = sorted(
        {int(m) for t in texts.values() for m in re.findall(r"\b(\d{4,5})\b", t) if 1024 < int(m) < 65536}
    )
    mapping = {p: free_port() for p in ports}
    for name, text in texts.items():
        (out / name).write_text(
            re.sub(r"\b(\d{4,5})\b", lambda m: str(mapping.get(int(m.group(1)), m.group(1))), text)
        )
    return out


def test_demo_prints_a_trace_tree_across_three_services(tmp_path: Path) -> None:
    config = relocated_config(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar",
            "demo",
            "--config",
            str(config),
            "--requests",
            "2",
            "--admin-base",
            str(free_block(3)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("-> 200") == 2
    trees = [block for block in out.split("\n\n") if block.startswith("trace ")]
    assert len(trees) == 2
    lines = trees[0].splitlines()
    depth = {
        line.split("└─ ")[1].split(" GET")[0].strip(): (len(line) - len(line.lstrip())) // 2
        for line in lines[1:]
    }
    assert (
        depth["frontend SERVER"]
        < depth["frontend CLIENT"]
        < depth["backend SERVER"]
        < depth["backend CLIENT"]
        < depth["db-api SERVER"]
    )
    assert "-> zipkin-sampled" in trees[0]  # db-api's TrafficTrace sends its spans to the second backend
    assert (
        "frontend-app" in trees[0] and "backend-app" in trees[0]
    )  # OpenTelemetry's and py_zipkin's spans joined
    assert "\n\n\n" not in out and not out.startswith("\n")  # no stray blank lines
    shown, received = out.strip().splitlines()[-2:]
    assert shown.startswith("2 traces shown (2 requests sent), 18 spans, up to 3 sidecars per trace")
    assert shown.endswith("(frontend, backend, db-api)")
    # The counts agree: per collector adds up to the total, and shown + not shown is what arrived.
    total = int(re.match(r"collectors received (\d+) spans: ", received).group(1))  # type: ignore[union-attr]
    per_backend = [int(n) for n in re.findall(r"\) (\d+)", received)]
    hidden = re.search(r"not shown: \d+ traces? without a sidecar span \((\d+) spans?", received)
    assert sum(per_backend) == total
    assert 18 + (int(hidden.group(1)) if hidden else 0) == total
