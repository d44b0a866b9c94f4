"""The Dockerfile and the compose demo, checked without a Docker engine: statically, and by running the
image's build step and entrypoint outside a container (as PID 1 of a new PID namespace where allowed)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from sidecar.config import load_config
from tests.util import free_port

ROOT = Path(__file__).resolve().parents[2]
FLUSH_SECONDS = 2.0  # the reporter's final flush on shutdown (runtime.py: reporter.aclose(2.0))


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage, from its FROM (the global ARGs before the first FROM are left out)."""
    out: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            out.append([])
        if out:
            out[-1].append((word, rest))
    return out


def global_args() -> dict[str, str]:
    args = {}
    for word, rest in instructions():
        if word == "FROM":
            break
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def test_dockerfile_statically() -> None:
    ins = instructions()
    build, final = stages()
    base = global_args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11-slim-\w+", base)
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build") and final[0] == ("FROM", "${PYTHON_IMAGE}")
    # Multi-arch friendly: nothing names an architecture; pip picks the wheels of the build's platform.
    assert not re.search(r"amd64|x86_64|arm64|aarch64|TARGETARCH", " ".join(r for _, r in ins))
    # pip runs only in the build stage; the final stage removes it and copies the finished venv.
    final_runs = " ".join(r for w, r in final if w == "RUN")
    assert "pip install" not in final_runs and "pip uninstall -q -y pip" in final_runs
    assert "libnghttp2-14" in final_runs  # the HTTP/2 codec the sidecar loads through ctypes
    assert ("COPY", "--from=build /opt/sidecar /opt/sidecar") in final
    assert "--without-pip" in dict(build)["RUN"] and "unchecked-hash" in dict(build)["RUN"]
    # The compiled hot path by default, built with the compiler of this stage only.
    assert ("ARG", "COMPILE=1") in build and "SIDECAR_COMPILE=1 pip wheel" in dict(build)["RUN"]
    assert "gcc" not in final_runs
    assert "compileall" in final_runs and "unchecked-hash" in final_runs
    env = dict(final)["ENV"]
    assert "PATH=/opt/sidecar/bin:$PATH" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    # The version as an OCI label, equal to the package's.
    final_dict = dict(final)
    assert final_dict["ARG"] == f"VERSION={project_version()}"
    assert 'org.opencontainers.image.version="${VERSION}"' in final_dict["LABEL"]
    user = final_dict["USER"]
    assert user.isdigit() and user != "0"
    # Exec form: the sidecar is PID 1 and gets SIGTERM itself.
    assert json.loads(final_dict["ENTRYPOINT"]) == ["sidecar"]
    cmd = json.loads(final_dict["CMD"])
    assert cmd[:3] == ["run", "--config", "/etc/sidecar"] and "0.0.0.0:9901" in cmd
    assert "9901" in final_dict["EXPOSE"]
    health = final_dict["HEALTHCHECK"]
    assert "/ready" in health and "127.0.0.1:9901" in health
    for word, rest in ins:
        if word == "COPY" and "--from" not in rest:
            for source in shlex.split(rest)[:-1]:
                assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests", "deploy"} <= set(ignored)


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m)", value)
    assert match, value
    return float(match[1]) * (60 if match[2] == "m" else 1)


def test_compose_demo_statically() -> None:
    compose = yaml.safe_load((ROOT / "demo" / "docker-compose.yml").read_text())
    services = compose["services"]
    jaeger = services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/jaeger:2.")  # Jaeger v2 (v1 is end-of-life)
    assert jaeger["environment"]["JAEGER_LISTEN_HOST"] == "0.0.0.0"
    assert "16686:16686" in jaeger["ports"]
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
        command = svc["command"]
        drain = float(command[command.index("--drain-grace") + 1])
        assert _seconds(svc["stop_grace_period"]) > drain + FLUSH_SECONDS
        assert svc["read_only"] is True and svc["tmpfs"] == ["/tmp"]
    urls = {b.url for m in result.resources.meshes.values() for b in m.backends}
    assert {re.sub(r"http://([^:]+):.*", r"\1", u) for u in urls} <= set(services)
    assert (ROOT / "demo" / "load.sh").stat().st_mode & 0o111


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _own_port(svc: dict[str, object]) -> int | None:
    """The port the service's own process serves, read from its command line (None: not our image)."""
    argv = [str(a) for a in (svc.get("entrypoint") or []) + (svc.get("command") or [])]  # type: ignore[operator]
    if "sidecar.collector" in argv:
        listen = _option(argv, "--listen")
    elif "sidecar.demo.services" in argv:
        listen = _option(argv, "--port")
    elif argv[:1] == ["run"]:  # the image's entrypoint, `sidecar`: its admin serves /ready
        listen = _option(argv, "--admin-address")
    else:
        return None
    return int(str(listen).rpartition(":")[2]) if listen else None


def _healthcheck_port(test: list[str] | str) -> int:
    text = test if isinstance(test, str) else " ".join(test)
    match = re.search(r"//(?:127\.0\.0\.1|localhost):(\d+)/", text)
    assert match, text
    return int(match[1])


def test_every_compose_service_health_checks_its_own_port() -> None:
    """A service built from this image inherits its HEALTHCHECK (a sidecar's /ready on 9901) unless it
    sets its own: every one must probe the port its own process serves, or it reports unhealthy."""
    compose = yaml.safe_load((ROOT / "demo" / "docker-compose.yml").read_text())
    (image_check,) = [rest for word, rest in stages()[-1] if word == "HEALTHCHECK"]
    checked = 0
    for name, svc in compose["services"].items():
        if "build" not in svc:  # another project's image brings its own health checking
            continue
        port = _own_port(svc)
        assert port is not None, f"{name}: what does it serve?"
        test = svc["healthcheck"]["test"] if "healthcheck" in svc else image_check
        assert _healthcheck_port(test) == port, name
        checked += 1
    assert checked == 7


def test_the_dockerfile_example_names_a_dataplane_that_exists() -> None:
    text = (ROOT / "Dockerfile").read_text()
    (name,) = re.findall(r"SIDECAR_DATAPLANE=([\w.-]+)", text)
    mounted = re.search(r'-v "\$PWD/(\w+):/etc/sidecar', text)
    assert mounted, "the example mounts a config directory of this repository"
    result = load_config([str(ROOT / mounted[1])])
    assert name in {d.name for d in result.resources.dataplanes}


# What each image of the compose file can run in a healthcheck: Jaeger's is Alpine (busybox wget), the
# project's is python:3.11-slim (python, no curl or wget).
HEALTH_PROGRAMS = {"jaegertracing/jaeger": "wget", "kuma-trace-sidecar": "python"}


def _serves(name: str, svc: dict[str, object]) -> set[str]:
    """The ports a service's own process listens on inside its network namespace."""
    words = [str(w) for w in (svc.get("entrypoint") or []) + (svc.get("command") or [])]  # type: ignore[operator]
    if name == "jaeger":
        return {"13133", "4317", "4318", "9411", "16686"}
    for option in ("--admin-address", "--listen", "--port"):
        if option in words:
            return {words[words.index(option) + 1].rpartition(":")[2]}
    return set()


def test_compose_demo_images_ports_healthchecks_and_otlp() -> None:
    from sidecar.cli import _otlp_endpoint

    compose = yaml.safe_load((ROOT / "demo" / "docker-compose.yml").read_text())
    services = compose["services"]
    jaeger = services["jaeger"]
    # Pinned: an exact version, never `latest` or a bare major.
    assert re.fullmatch(r"jaegertracing/jaeger:2\.\d+\.\d+", jaeger["image"])
    assert {"4317:4317", "4318:4318", "9411:9411", "16686:16686"} <= set(jaeger["ports"])
    health = dict(stages()[-1])["HEALTHCHECK"]
    image_check = ["CMD", *json.loads(health[health.index("CMD") + 3 :].strip())]
    for name, svc in services.items():
        image, _, tag = svc["image"].partition(":")
        assert tag not in ("", "latest"), name
        test = svc["healthcheck"]["test"] if "healthcheck" in svc else image_check
        assert test[0] == "CMD" and test[1] == HEALTH_PROGRAMS[image], (name, test)
        (url,) = re.findall(r"http://127\.0\.0\.1:(\d+)(/[\w/]+)", " ".join(test))
        assert url[0] in _serves(name, svc), (name, url)
        if test[1] == "python":
            compile(test[3], name, "exec")  # the check itself is valid Python
        else:
            assert url == ("13133", "/status")  # Jaeger's healthcheckv2 extension
    # One trace, both protocols: some sidecars report OTLP to Jaeger's receivers, the rest Zipkin v2.
    sidecars = {n: s for n, s in services.items() if n.endswith("-sidecar")}
    otlp = {
        n: s["environment"]["SIDECAR_OTLP_ENDPOINT"]
        for n, s in sidecars.items()
        if "SIDECAR_OTLP_ENDPOINT" in s["environment"]
    }
    assert 0 < len(otlp) < len(sidecars)
    assert sorted(otlp.values()) == ["http://jaeger:4318", "jaeger:4317"]  # HTTP and gRPC, one each
    for value in otlp.values():
        assert _otlp_endpoint(value) == value


def _build_stage_run(tmp: Path, venv: Path) -> None:
    """The build stage's RUN, as written, in a copy of the build context: `pip` and `python` are this
    interpreter, /opt/sidecar is `venv`."""
    build = stages()[0]
    context = tmp / "src"
    context.mkdir()
    for word, rest in build:
        if word == "COPY":
            *sources, _ = shlex.split(rest)
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, context / src.name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(src, context / src.name)
    shims = tmp / "shims"
    shims.mkdir()
    (shims / "python").symlink_to(sys.executable)
    (shims / "pip").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip "$@"\n')
    (shims / "pip").chmod(0o755)
    run = dict(build)["RUN"].replace("/opt/sidecar", str(venv))
    subprocess.run(
        ["bash", "-euc", run],
        cwd=context,
        # COMPILE=0: the pure-Python branch (scripts/test-compiled tests the compiled build).
        env={**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "EXTRAS": "", "COMPILE": "0"},
        check=True,
        timeout=480,
    )


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def _wait_healthy(venv: Path, admin: int, proc: subprocess.Popen[bytes]) -> None:
    health = dict(stages()[1])["HEALTHCHECK"]
    code = json.loads(health[health.index("CMD") + 3 :].strip())[2].replace("9901", str(admin))
    deadline = time.monotonic() + 30
    while subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, timeout=10
    ).returncode:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "healthcheck never passed"
        time.sleep(0.2)


def _as_pid_1(command: list[str]) -> tuple[list[str], bool]:
    """`command` as PID 1 of a new PID namespace (unshare, as root), or as it is where that is not
    permitted."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        return command, False
    probe = subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return command, False
    return [unshare, "--pid", "--fork", *command], True


@pytest.mark.timeout(600)
def test_image_build_step_and_entrypoint_outside_a_container(tmp_path: Path) -> None:
    """The build stage's RUN into a fresh venv (no pip in it, everything precompiled), then the
    entrypoint with the final stage's environment: it writes nothing under the venv (a read-only root
    filesystem), answers the HEALTHCHECK, and exits 0 on SIGTERM as PID 1."""
    venv = tmp_path / "opt-sidecar"
    _build_stage_run(tmp_path, venv)
    assert not (venv / "bin" / "pip").exists()
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert not list(site.glob("pip")) and (site / "sidecar" / "__pycache__").is_dir()
    image_env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    check = subprocess.run(
        ["sidecar", "validate", "--config", str(ROOT / "demo" / "config")],
        capture_output=True,
        text=True,
        timeout=60,
        env=image_env,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # Everything the sidecar imports was compiled at build time: even allowed to, it writes no .pyc.
    before = _files(venv)
    subprocess.run(
        ["sidecar", "validate", "--config", str(ROOT / "demo" / "config")],
        env={"PATH": image_env["PATH"]},
        capture_output=True,
        timeout=60,
        check=True,
    )
    subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sidecar.runtime, sidecar.cli, sidecar.collector.app"],
        env={"PATH": image_env["PATH"]},
        check=True,
        timeout=60,
    )
    assert _files(venv) == before
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
    entrypoint = json.loads(dict(stages()[1])["ENTRYPOINT"])
    command, pid_1 = _as_pid_1(
        [*entrypoint, "run", "--config", str(config), "--admin-address", f"127.0.0.1:{admin}"]
    )
    proc = subprocess.Popen(
        command,
        env={**image_env, "SIDECAR_DATAPLANE": "web-01"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(venv, admin, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/config_dump", timeout=5) as resp:
            assert json.load(resp)["dataplane"] == "web-01"
        target = proc.pid
        if pid_1:
            (child,) = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            status = Path(f"/proc/{child}/status").read_text()
            assert re.search(rf"^NSpid:\s+{child}\s+1$", status, re.M), status
            target = int(child)
        os.kill(target, signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
        assert proc.returncode == 0, out
        assert "draining" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _files(venv) == before
