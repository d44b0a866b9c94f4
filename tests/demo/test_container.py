"""The Dockerfile and the compose demo, checked without a Docker engine: statically, and by running the
image's install and entrypoint commands outside a container."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from sidecar.config import load_config
from tests.util import free_port

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_statically() -> None:
    ins = instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    user = [rest for word, rest in ins if word == "USER"][-1]
    assert user not in ("root", "0")
    assert json.loads(dict(ins)["ENTRYPOINT"]) == ["sidecar"]
    cmd = json.loads(dict(ins)["CMD"])
    assert cmd[:3] == ["run", "--config", "/etc/sidecar"] and "0.0.0.0:9901" in cmd
    assert "9901" in dict(ins)["EXPOSE"]
    health = dict(ins)["HEALTHCHECK"]
    assert "/ready" in health and "127.0.0.1:9901" in health
    for word, rest in ins:
        if word == "COPY" and "--from" not in rest:
            for source in shlex.split(rest)[:-1]:
                assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_compose_demo_statically() -> None:
    compose = yaml.safe_load((ROOT / "demo" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["jaeger"]["environment"]["COLLECTOR_ZIPKIN_HOST_PORT"] == ":9411"
    assert "16686:16686" in services["jaeger"]["ports"]
    config_dir = ROOT / "demo" / "config"
    result = load_config([str(config_dir)])
    assert result.ok, result.problems
    dataplanes = {d.name: d for d in result.resources.dataplanes}
    sidecars = {name: s for name, s in services.items() if name.endswith("-sidecar")}
    assert len(sidecars) == 3
    for name, svc in sidecars.items():
        app = svc["network_mode"].removeprefix("service:")
        assert app in services and app == name.removesuffix("-sidecar")
        dp = dataplanes[svc["environment"]["SIDECAR_DATAPLANE"]]
        assert dp.address == app  # the sidecar listens on its pod's address, other pods reach it there
        entry = services[app]["entrypoint"]
        assert entry[entry.index("--port") + 1] == str(dp.inbound[0].service_port)
        if dp.outbound:
            nxt = entry[entry.index("--next") + 1]
            assert nxt.startswith(f"http://127.0.0.1:{dp.outbound[0].port}/")
        assert any(v.startswith("./config:/etc/sidecar") for v in svc["volumes"])
    urls = {b.url for m in result.resources.meshes.values() for b in m.backends}
    assert {re.sub(r"http://([^:]+):.*", r"\1", u) for u in urls} <= set(services)
    assert (ROOT / "demo" / "load.sh").stat().st_mode & 0o111


@pytest.mark.timeout(600)
def test_image_install_and_entrypoint_outside_a_container(tmp_path: Path) -> None:
    """The Dockerfile's steps: build the wheel, install it into a clean environment with its declared
    dependencies only, then run the entrypoint and the HEALTHCHECK command against it."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("kuma_trace_sidecar-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=480,
    )
    sidecar = venv / "bin" / "sidecar"
    check = subprocess.run(
        [str(sidecar), "validate", "--config", str(ROOT / "demo" / "config")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # The entrypoint with the image's CMD shape (config dir + SIDECAR_DATAPLANE), on free ports.
    config = tmp_path / "etc-sidecar"
    config.mkdir()
    admin, inbound, app = free_port(), free_port(), free_port()
    (config / "all.yaml").write_text(
        yaml.safe_dump_all(
            [
                {"type": "Mesh", "name": "default"},
                {
                    "type": "Dataplane",
                    "name": "web-01",
                    "mesh": "default",
                    "networking": {
                        "address": "127.0.0.1",
                        "inbound": [
                            {"port": inbound, "servicePort": app, "tags": {"kuma.io/service": "web"}}
                        ],
                    },
                },
            ]
        )
    )
    proc = subprocess.Popen(
        [str(sidecar), "run", "--config", str(config), "--admin-address", f"127.0.0.1:{admin}"],
        env={"SIDECAR_DATAPLANE": "web-01", "PATH": str(venv / "bin")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        health = dict(instructions())["HEALTHCHECK"]
        code = json.loads(health[health.index("CMD") + 3 :].strip())[2].replace("9901", str(admin))
        deadline = time.monotonic() + 30
        while True:
            rc = subprocess.run(
                [str(venv / "bin" / "python"), "-c", code], capture_output=True, timeout=10
            ).returncode
            if rc == 0:
                break
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "healthcheck never passed"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/config_dump", timeout=5) as resp:
            assert json.load(resp)["dataplane"] == "web-01"
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
