"""The kubelet's ConfigMap update (a new timestamped directory, an atomic `..data` symlink swap, the old
directory removed) reloads a running sidecar; on loopback, so it runs wherever the tests run (the
network-namespace test does the same for three pods where it is permitted)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.kubernetes.test_pod_shape import write_config_map
from tests.util import free_port


def dump(admin: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/config_dump", timeout=2) as resp:
            data: dict[str, Any] = json.load(resp)
            return data
    except (urllib.error.URLError, OSError):
        return None


def wait_for(admin: int, proc: subprocess.Popen[bytes], sampling: float) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        data = dump(admin)
        if data and data["backend"] and data["backend"]["sampling"] == sampling:
            return data
        assert proc.poll() is None, proc.communicate()[0].decode()
        assert time.monotonic() < deadline, f"sampling never became {sampling}: {data}"
        time.sleep(0.05)


def test_symlink_swap_reloads_the_sidecar(tmp_path: Path) -> None:
    admin, inbound, app, collector = free_port(), free_port(), free_port(), free_port()

    def files(sampling: float) -> dict[str, str]:
        mesh = {
            "type": "Mesh",
            "name": "default",
            "tracing": {
                "defaultBackend": "b",
                "backends": [
                    {
                        "name": "b",
                        "type": "zipkin",
                        "sampling": sampling,
                        "conf": {"url": f"http://127.0.0.1:{collector}/api/v2/spans"},
                    }
                ],
            },
        }
        trace = {
            "type": "TrafficTrace",
            "name": "all",
            "mesh": "default",
            "selectors": [{"match": {"kuma.io/service": "*"}}],
        }
        dataplane = {
            "type": "Dataplane",
            "name": "web",
            "mesh": "default",
            "networking": {
                "address": "${POD_IP}",
                "inbound": [
                    {
                        "port": inbound,
                        "servicePort": app,
                        "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http"},
                    }
                ],
            },
        }
        return {"mesh.yaml": yaml.safe_dump_all([mesh, trace]), "web.yaml": yaml.safe_dump(dataplane)}

    config = tmp_path / "kuma"
    config.mkdir()
    write_config_map(config, files(100.0), "2025_01_01_00_00_00.000000001")
    command = ["run", "--config", str(config), "--dataplane", "web", "--admin-address", f"127.0.0.1:{admin}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", *command],
        env={"PATH": "/usr/bin:/bin", "POD_IP": "127.0.0.1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for(admin, proc, 100.0)["inbound"][0]["address"] == "127.0.0.1"
        write_config_map(config, files(10.0), "2025_01_01_00_01_00.000000002")
        assert [p.name for p in config.glob("..2025*")] == ["..2025_01_01_00_01_00.000000002"]
        wait_for(admin, proc, 10.0)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, out
    assert "reload (files changed) applied" in out
