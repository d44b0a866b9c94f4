"""A compiled copy of the sidecar for the benchmark: the package built with mypyc in a scratch directory.

The benchmark runs the pure-Python package (the working tree) and this copy side by side in one run, so
their ratio is measured on the same machine at the same time. `python -m sidecar` started with the
copy as its working directory imports the copy (the working directory comes first on `sys.path`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_compiled_tree(workdir: Path) -> Path:
    """Copy setup.py, pyproject.toml, README.md and sidecar/ under `workdir`, build the extensions in
    place (SIDECAR_COMPILE=1: fails loudly without a C compiler) and check the copy imports them."""
    tree = workdir / "compiled"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "sidecar", tree / "sidecar", ignore=shutil.ignore_patterns("__pycache__", "*.so", "BUILD_NOTE")
    )
    started = time.monotonic()
    print("building the compiled copy with mypyc (about a minute)...", file=sys.stderr, flush=True)
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        env=dict(os.environ, SIDECAR_COMPILE="1"),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = "import sidecar.proxy.http1 as m, sys; sys.exit(not m.__file__.endswith('.so'))"
    subprocess.run([sys.executable, "-c", probe], cwd=tree, check=True)
    print(f"compiled copy built in {time.monotonic() - started:.0f} s: {tree}", file=sys.stderr, flush=True)
    return tree
