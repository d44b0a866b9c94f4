"""A tracing sidecar proxy with Kuma's tracing semantics (TrafficTrace, B3 propagation, Zipkin v2 spans)."""

from pathlib import Path

__version__ = "0.1.0"

_HERE = Path(__file__).parent


def build() -> str:
    """Which build runs: "compiled" when the hot path's mypyc extension modules are installed (they are
    imported before a `.py` of the same name), else "pure Python". Read from the files, importing nothing."""
    return "compiled" if any((_HERE / "proxy").glob("http1.*.so")) else "pure Python"


def build_note() -> str:
    """Why an installed build is pure Python (setup.py writes it: "no C compiler (cc)"...), or ""."""
    try:
        return (_HERE / "BUILD_NOTE").read_text(encoding="utf-8").strip()
    except OSError:
        return ""  # a source tree or an editable install


def build_label() -> str:
    """The build, and for a pure-Python install the reason: "pure Python: no C compiler (cc)"."""
    name = build()
    note = build_note() if name != "compiled" else ""
    return f"{name}: {note}" if note else name


def version_line() -> str:
    return f"sidecar {__version__} ({build_label()})"
