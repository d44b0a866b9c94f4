"""Which build is installed: setup.py compiles the hot path when it can and says why when it cannot, and
the running sidecar names the build it runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

import sidecar.proxy.http1
from sidecar import build, build_label, version_line

ROOT = Path(__file__).resolve().parents[1]


def setup_module_() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sidecar_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: setup() does not run
    return module


SETUP = setup_module_()
ABLE = {"have_mypyc": True, "compiler": "/usr/bin/cc", "headers": True}


@pytest.mark.parametrize(
    ("setting", "editable", "able", "reason"),
    [
        ("", False, ABLE, None),  # `pip install .` on a machine that can: compiled
        ("auto", False, ABLE, None),
        ("", True, ABLE, "an editable install (SIDECAR_COMPILE=1 compiles it in place)"),
        ("1", True, ABLE, None),
        ("0", False, ABLE, "SIDECAR_COMPILE=0"),
        ("", False, {**ABLE, "compiler": None}, "no C compiler (cc)"),
        ("", False, {**ABLE, "headers": False}, "no Python headers (python3-dev)"),
        (
            "",
            False,
            {"have_mypyc": False, "compiler": None, "headers": True},
            "no mypyc (pip install mypy) and no C compiler (cc)",
        ),
    ],
)
def test_compile_when_able_else_say_why(
    setting: str, editable: bool, able: dict[str, object], reason: str | None
) -> None:
    assert SETUP.why_not_compiled(setting, editable=editable, **able) == reason


def test_asked_to_compile_but_unable_is_an_error() -> None:
    with pytest.raises(SystemExit, match="SIDECAR_COMPILE=1 but no C compiler"):
        SETUP.why_not_compiled("1", editable=False, **{**ABLE, "compiler": None})


def test_the_build_named_is_the_one_imported() -> None:
    """Under scripts/test-compiled the modules are the mypyc ones, under scripts/test the sources."""
    compiled = str(sidecar.proxy.http1.__file__).endswith(".so")
    assert build() == ("compiled" if compiled else "pure Python")
    assert version_line().endswith(f"({build_label()})") and build_label().startswith(build())
