"""The README's Envoy-compatibility tables list every admin path and every stat name the admin serves."""

from __future__ import annotations

import re
from pathlib import Path

from sidecar.admin.app import ENDPOINTS
from sidecar.admin.envoy_stats import envoy_stats
from sidecar.admin.metrics import metric_families
from tests.admin.test_app import View

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def table_rows(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_every_admin_path_has_a_row_saying_same_or_differs() -> None:
    rows = table_rows(section("Envoy compatibility"), "admin path")
    for path in ENDPOINTS:
        pattern = rf"`(?:(?:GET|POST) )?{re.escape(path)}(?:\?[^`]*)?`"
        row = next((r for r in rows if re.search(pattern, r)), None)
        assert row is not None, path
        assert "same as Envoy" in row or "differs:" in row, row


def generic(name: str) -> str:
    """`http.localhost_8080.downstream_rq_2xx` -> `http.<prefix>.downstream_rq_2xx`, as the table writes it."""
    parts = name.split(".")
    if parts[0] in ("http", "tcp"):
        return f"{parts[0]}.<prefix>.{parts[-1]}"
    if parts[0] == "listener" and len(parts) > 2:
        return f"listener.<address>.{parts[-1]}"
    if parts[0] == "cluster" and len(parts) > 2:
        return f"cluster.<name>.{parts[-1]}"
    return name


def test_every_envoy_stat_name_has_a_row_saying_same_or_differs() -> None:
    rows = table_rows(section("Envoy compatibility"), "stat")
    names = {generic(name) for name, _ in envoy_stats(View().stats())}
    assert len(names) > 20
    for name in names:
        family, _, stat = name.rpartition(".")
        stat = "downstream_rq_1xx" if re.fullmatch(r"downstream_rq_\dxx", stat) else stat
        row = next((r for r in rows if f"`{family}." in r and stat in r), None)
        assert row is not None, name
        assert "same as Envoy" in row or "differs:" in row, row


def test_every_sidecar_metric_is_named_in_the_readme() -> None:
    suffix = {"counter": "_total", "info": "_info"}
    for family in metric_families(View().stats()):
        name = family.name + suffix.get(family.type, "")
        assert f"`{name}`" in README or f"`{name}{{" in README, name
