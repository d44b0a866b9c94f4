"""Packaging lives in pyproject.toml; this file only adds the compiled hot path.

`pip install .` compiles the modules below with mypyc (mypy is a build requirement, the way black and
mypy ship themselves) when a C compiler and the Python headers are at hand, and falls back to pure
Python, with one line saying why, when they are not: the same behaviour either way, the compiled build
at about 20 % less CPU per request (docs/performance.md). `sidecar --version` says which build runs.

`SIDECAR_COMPILE=1` insists on compiling (a failure is an error), `SIDECAR_COMPILE=0` skips it. An
editable install (`pip install -e .`, what scripts/test and scripts/demo use) stays pure Python unless
`SIDECAR_COMPILE=1`: a compiled module in the source tree would shadow every later edit of its `.py`.
scripts/test-compiled runs the whole test suite against the compiled build.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

#: Installed beside the package: why a build is pure Python, for `sidecar --version` (pip hides what a
#: build prints unless -v).
NOTE = "sidecar/BUILD_NOTE"

# The pure rules, the tracer and the data path's per-request classes. Left interpreted: the listener and
# the TCP path (they touch the loop's own objects, where uvloop returns lists that typeshed calls tuples
# and compiled code checks), endpoint.py (an OSError subclass), the ctypes codec, and all the rest.
# In these modules, module-level constants, and the library functions a request calls, are `Final`:
# mypyc keeps a Final name in a C static, where a plain global costs a dict lookup on every use (and
# `time.perf_counter()` an attribute lookup on the module as well): ~0.5 us per traced request.
COMPILED = [
    "sidecar/tracing/b3.py",
    "sidecar/tracing/custom_tags.py",
    "sidecar/tracing/decide.py",
    "sidecar/tracing/encode_json.py",
    "sidecar/tracing/encode_otlp.py",
    "sidecar/tracing/grpc.py",
    "sidecar/tracing/ids.py",
    "sidecar/tracing/protowire.py",
    "sidecar/tracing/request_id.py",
    "sidecar/tracing/sampling.py",
    "sidecar/tracing/span.py",
    "sidecar/tracing/w3c.py",
    "sidecar/proxy/access_log.py",
    "sidecar/proxy/errors.py",
    "sidecar/proxy/exchange.py",
    "sidecar/proxy/h1_exchange.py",
    "sidecar/proxy/h2_base.py",
    "sidecar/proxy/h2_stream.py",
    "sidecar/proxy/h2_to_h1.py",
    "sidecar/proxy/h2_to_h2.py",
    "sidecar/proxy/h2_upstream.py",
    "sidecar/proxy/head.py",
    "sidecar/proxy/host.py",
    "sidecar/proxy/http1.py",
    "sidecar/proxy/http2.py",
    "sidecar/proxy/outbox.py",
    "sidecar/proxy/route.py",
    "sidecar/proxy/settings.py",
    "sidecar/proxy/stats.py",
    "sidecar/proxy/upstream.py",
]


def why_not_compiled(
    setting: str, *, editable: bool, have_mypyc: bool, compiler: str | None, headers: bool
) -> str | None:
    """None to compile, else the reason for a pure-Python build. Raises for SIDECAR_COMPILE=1 when the
    build cannot compile (asked for, so a silent fallback would hide it)."""
    setting = setting.strip().lower()
    if setting in ("0", "no", "false"):
        return "SIDECAR_COMPILE=0"
    forced = setting in ("1", "yes", "true")
    if not forced and editable:
        return "an editable install (SIDECAR_COMPILE=1 compiles it in place)"
    missing = [
        what
        for what, ok in (
            ("mypyc (pip install mypy)", have_mypyc),
            ("C compiler (cc)", compiler is not None),
            ("Python headers (python3-dev)", headers),
        )
        if not ok
    ]
    if not missing:
        return None
    reason = "no " + " and no ".join(missing)
    if forced:
        raise SystemExit(f"kuma-trace-sidecar: SIDECAR_COMPILE=1 but {reason}")
    return reason


def _have_mypyc() -> bool:
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return False
    return True


def _compiler() -> str | None:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shutil.which(cc.split()[0])


class BuildPyWithNote(build_py):
    """Also writes NOTE into the built package: the reason for a pure-Python build, or nothing."""

    reason: str | None = None

    def run(self) -> None:
        super().run()
        target = os.path.join(self.build_lib, NOTE)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as out:
            out.write(BuildPyWithNote.reason or "")


def ext_modules() -> list[Extension]:
    reason = why_not_compiled(
        os.environ.get("SIDECAR_COMPILE", ""),
        editable="editable_wheel" in sys.argv,
        have_mypyc=_have_mypyc(),
        compiler=_compiler(),
        headers=os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")),
    )
    BuildPyWithNote.reason = reason
    if reason is not None:
        print(f"kuma-trace-sidecar: building pure Python ({reason})", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    print(
        f"kuma-trace-sidecar: compiling the hot path with mypyc ({len(COMPILED)} modules, about 30 s; "
        "SIDECAR_COMPILE=0 skips it)",
        file=sys.stderr,
    )
    return mypycify(COMPILED, opt_level="3")


if __name__ == "__main__":
    setup(ext_modules=ext_modules(), cmdclass={"build_py": BuildPyWithNote})
