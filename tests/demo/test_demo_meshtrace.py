"""`sidecar demo`'s MeshTrace variant end to end: the same topology traced by MeshTrace (the embedded
`config-meshtrace/`, moved to free ports), db-api's spans going to its own backend by a MeshService
targetRef that outranks the mesh-wide MeshTrace."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sidecar.demo.runner import MESHTRACE_CONFIG
from tests.demo.test_demo import free_block
from tests.util import free_port


def relocated(tmp: Path) -> Path:
    out = tmp / "config"
    out.mkdir()
    texts = {p.name: p.read_text() for p in MESHTRACE_CONFIG.glob("*.yaml")}
    ports = sorted(
        {int(m) for t in texts.values() for m in re.findall(r"\b(\d{4,5})\b", t) if 1024 < int(m) < 65536}
    )
    mapping = {p: free_port() for p in ports}
    for name, text in texts.items():
        (out / name).write_text(
            re.sub(r"\b(\d{4,5})\b", lambda m: str(mapping.get(int(m.group(1)), m.group(1))), text)
        )
    return out


def test_meshtrace_demo_prints_a_trace_tree(tmp_path: Path) -> None:
    config = relocated(tmp_path)
    args = ["demo", "--config", str(config), "--requests", "2", "--admin-base", str(free_block(3))]
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("-> 200") == 2
    trees = [block for block in out.split("\n\n") if block.startswith("trace ")]
    assert len(trees) == 2
    assert "-> trace-db-api" in trees[0]  # db-api's MeshService MeshTrace: its own backend
    assert all(f"{s} SERVER" in trees[0] for s in ("frontend", "backend", "db-api"))


def test_the_demo_flag_and_the_files_agree() -> None:
    from sidecar.cli import main

    assert main(["validate", "--config", str(MESHTRACE_CONFIG)]) == 0
    assert main(["demo", "--meshtrace", "--config", "x"]) == 2


ROOT = Path(__file__).resolve().parents[2]


def test_meshtrace_variants_send_spans_where_the_traffic_trace_configs_do() -> None:
    from sidecar.config import load_config, resolve_dataplane
    from sidecar.demo.runner import EMBEDDED_CONFIG

    config = ROOT / "config"
    pairs = [
        ([str(EMBEDDED_CONFIG)], [str(MESHTRACE_CONFIG)]),
        (
            [str(config)],
            [str(config / "mesh.yaml"), str(config / "dataplanes.yaml"), str(config / "meshtrace")],
        ),
    ]
    for old_paths, new_paths in pairs:
        for dp in load_config(new_paths).resources.dataplanes:
            old = resolve_dataplane(old_paths, dp.name).snapshot
            new = resolve_dataplane(new_paths, dp.name).snapshot
            assert old is not None and new is not None and new.policy == "MeshTrace"
            assert old.backend is not None and new.backend is not None
            assert (new.backend.url, new.backend.api_version, new.backend.sampling) == (
                old.backend.url,
                old.backend.api_version,
                old.backend.sampling,
            )
