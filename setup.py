"""Packaging lives in pyproject.toml; this file only adds the optional compiled hot path.

`SIDECAR_COMPILE=1` compiles the modules below with mypyc (from mypy, which must be installed where the
build runs: `pip install mypy` and `--no-build-isolation`), the way black and mypy ship themselves;
without it (the default) the package is pure Python and behaves the same. Measured: the HTTP/1.1 data
path's Python per traced request drops from 17 to 9 µs (bench/bench_proxy.py), the sidecar's CPU per
traced request from 41 to 31 µs (bench/run.py, same machine, same hour). scripts/test-compiled runs the
whole test suite against this build.
"""

import os

from setuptools import Extension, setup

# The pure rules, the tracer and the data path's per-request classes. Left interpreted: the listener and
# the TCP path (they touch the loop's own objects, where uvloop returns lists that typeshed calls tuples
# and compiled code checks), endpoint.py (an OSError subclass), the ctypes codec, and all the rest.
COMPILED = [
    "sidecar/tracing/b3.py",
    "sidecar/tracing/decide.py",
    "sidecar/tracing/encode_json.py",
    "sidecar/tracing/grpc.py",
    "sidecar/tracing/ids.py",
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
    "sidecar/proxy/http1.py",
    "sidecar/proxy/http2.py",
    "sidecar/proxy/route.py",
    "sidecar/proxy/settings.py",
    "sidecar/proxy/stats.py",
    "sidecar/proxy/upstream.py",
]


def ext_modules() -> list[Extension]:
    if os.environ.get("SIDECAR_COMPILE") != "1":
        return []
    from mypyc.build import mypycify

    return mypycify(COMPILED, opt_level="3")


setup(ext_modules=ext_modules())
