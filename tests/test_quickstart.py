"""The quick start's failure modes, run as a newcomer would meet them: one clear line each.

- `scripts/test` and `scripts/demo` with only an old Python on PATH (a real 3.10 when this machine has
  one, else a stand-in that answers like one);
- `sidecar demo` after a plain `pip install .` (no `demo` extra), in a fresh virtualenv, which builds the
  compiled hot path where a C compiler and the Python headers are.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

from sidecar import __version__

ROOT = Path(__file__).resolve().parents[1]


def fake_python(path: Path, version: str, ok: bool) -> None:
    path.write_text(f"#!/bin/sh\necho {version}\nexit {0 if ok else 1}\n")
    path.chmod(0o755)


def old_python(path: Path) -> str:
    """A Python 3.10 as `path`: the real one if installed, else a stand-in; returns its version."""
    real = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))
    if real:
        path.symlink_to(real[-1])
        return subprocess.run(
            [str(path), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    fake_python(path, "3.10.12", ok=False)
    return "3.10.12"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the scripts in an empty project (no .venv) and a PATH with only the tools they use."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "scripts", root / "scripts")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    return root


def run(cmd: list[str], path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(path), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


@pytest.mark.parametrize("script", ["test", "demo"])
def test_only_an_old_python_is_one_line_and_no_venv(project: Path, script: str) -> None:
    bin_dir = project.parent / "bin"
    version = old_python(bin_dir / "python3")
    proc = run([str(project / "scripts" / script)], bin_dir, project)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"scripts/{script}: needs Python >= 3.11; python3 is {version}, and no python3.13, python3.12 or "
        "python3.11 on PATH (or set PYTHON=/path/to/python3.11)"
    ]
    assert not (project / ".venv").exists()


def test_a_newer_python_is_picked_when_python3_is_old(project: Path) -> None:
    bin_dir = project.parent / "bin"
    old_python(bin_dir / "python3")
    fake_python(bin_dir / "python3.12", "3.12.4", ok=True)
    proc = run(["bash", "-c", "SCRIPT=x; . scripts/python.sh; pick_python"], bin_dir, project)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "python3.12\n", "")


def test_an_old_venv_is_named_with_the_fix(project: Path) -> None:
    bin_dir = project.parent / "bin"
    (project / ".venv" / "bin").mkdir(parents=True)
    fake_python(project / ".venv" / "bin" / "python", "3.9.18", ok=False)
    proc = run([str(project / "scripts" / "test")], bin_dir, project)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "scripts/test: .venv has Python 3.9.18, needs >= 3.11; remove it (rm -rf .venv) and run again"
    ]


def test_demo_after_a_plain_install_names_the_install_command(tmp_path: Path) -> None:
    env_dir = tmp_path / "plain"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    proc = subprocess.run(
        [str(env_dir / "bin" / "sidecar"), "demo"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "sidecar demo: the demo's apps need opentelemetry, py_zipkin (the `demo` extra), not installed here; "
        f"run: {python} -m pip install '{ROOT}[demo]'"
    ]
    # The base install works (only the demo needs more), and it is the compiled build wherever it can be.
    version = subprocess.run(
        [str(env_dir / "bin" / "sidecar"), "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    able = (
        shutil.which(sysconfig.get_config_var("CC").split()[0])
        and Path(sysconfig.get_paths()["include"], "Python.h").exists()
    )
    if able:
        assert version.stdout == f"sidecar {__version__} (compiled)\n"
    else:
        assert version.stdout.startswith(f"sidecar {__version__} (pure Python: no ")
