"""Whether the demo's apps can run here: the `demo` extra's packages, and the exact command that adds them.

Checked before anything starts, so `sidecar demo` after a plain `pip install .` is one clear line.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import shlex
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

# The packages of the `demo` extra the apps import (OpenTelemetry for one, py_zipkin for another).
DEMO_MODULES = (
    "opentelemetry.sdk",
    "opentelemetry.propagators.b3",
    "opentelemetry.exporter.zipkin.json",
    "opentelemetry.instrumentation.aiohttp_client",
    "opentelemetry.instrumentation.aiohttp_server",
    "py_zipkin",
)
DISTRIBUTION = "kuma-trace-sidecar"


def install_command() -> str:
    """The exact command that adds the demo extra to the interpreter running now, from where the
    package was installed (PEP 610 direct_url.json: a source directory, editable or not)."""
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    direct: dict[str, Any] = {}
    for dist in importlib.metadata.distributions(name=DISTRIBUTION):  # a source tree's egg-info has none
        with contextlib.suppress(ValueError):
            direct = json.loads(dist.read_text("direct_url.json") or "{}")
        if direct:
            break
    url = str(direct.get("url", ""))
    if url.startswith("file://") and "dir_info" in direct:
        source = shlex.quote(unquote(urlsplit(url).path) + "[demo]")
        editable = "-e " if direct["dir_info"].get("editable") else ""
        return f"{pip} {editable}{source}"
    return f"{pip} '{DISTRIBUTION}[demo]'"


def missing_extras() -> str | None:
    """One line naming the missing packages and the install command, or None when all are there."""
    missing = []
    for name in DEMO_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name.split(".")[0])
    if not missing:
        return None
    names = ", ".join(dict.fromkeys(missing))
    return f"the demo's apps need {names} (the `demo` extra), not installed here; run: {install_command()}"
