"""The benchmark harness itself works (tiny run, no timing assertions): peers start, load runs, table prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_run() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--duration",
            "1",
            "--rounds",
            "1",
            "--levels",
            "4",
            "--peers",
            "direct,sidecar-0,sidecar-100",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = [line.split() for line in proc.stdout.splitlines() if len(line.split()) == 8]
    rows = {r[0]: r for r in table if r[0] in ("direct", "sidecar-0", "sidecar-100")}
    assert set(rows) == {"direct", "sidecar-0", "sidecar-100"}
    assert all(float(r[1]) > 0 and r[-1] == "0" for r in rows.values())  # req/s measured, no errors
    assert float(rows["sidecar-100"][6]) > 0.9  # spans per request delivered to the collector
    assert "sidecar-100 / sidecar-0" in proc.stdout
