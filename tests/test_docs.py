"""The docs: the Envoy-compatibility tables list every admin path and stat name the admin serves, every
metric is named, and every relative link in the README and docs/ leads to a file (and heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

from sidecar.admin.app import ENDPOINTS
from sidecar.admin.envoy_stats import envoy_stats
from sidecar.admin.metrics import metric_families
from tests.admin.test_app import View

ROOT = Path(__file__).resolve().parents[1]
ADMIN = (ROOT / "docs" / "admin.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def section(title: str) -> str:
    start = ADMIN.index(f"## {title}\n")
    end = ADMIN.find("\n## ", start + 1)
    return ADMIN[start:] if end < 0 else ADMIN[start:end]


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


def test_every_sidecar_metric_is_named_in_the_admin_doc() -> None:
    suffix = {"counter": "_total", "info": "_info"}
    for family in metric_families(View().stats()):
        name = family.name + suffix.get(family.type, "")
        assert f"`{name}`" in ADMIN or f"`{name}{{" in ADMIN, name


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(m[1]) for m in re.finditer(r"(?m)^#{1,6} (.+)$", path.read_text())}


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code holds no links
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_every_relative_link_in_the_docs_resolves() -> None:
    checked = 0
    for doc in DOCS:
        for target in relative_links(doc):
            file, _, fragment = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            assert dest.exists(), f"{doc.relative_to(ROOT)}: {target}"
            assert ROOT in dest.parents or dest == ROOT, (
                f"{doc.relative_to(ROOT)}: {target} leaves the repository"
            )
            if fragment:
                assert fragment in anchors(dest), f"{doc.relative_to(ROOT)}: {target}"
            checked += 1
    assert checked > 20


def test_the_link_check_catches_a_broken_link(tmp_path: Path) -> None:
    doc = tmp_path / "a.md"
    doc.write_text("# Top\n[ok](#top) [gone](missing.md) [web](https://example.org) `[x](y)`\n")
    assert relative_links(doc) == ["#top", "missing.md"]
    assert anchor("Kubernetes in five lines") == "kubernetes-in-five-lines"


def test_no_doc_cites_team_notes_or_issue_numbers() -> None:
    for doc in DOCS:
        text = doc.read_text()
        assert not re.search(r"\b(DESIGN|ANCHORS|KUMA|STYLE)\.md\b", text), doc
        assert not re.search(
            r"(?i)\bissue \d+\b(?! ?\d)", re.sub(r"envoy issue \d+", "", text, flags=re.I)
        ), doc


def test_no_source_cites_team_notes_or_issue_numbers() -> None:
    """Code, tests, benchmarks and fuzz targets say what a reader needs, not where a team note said it."""
    sources = [
        p
        for d in ("sidecar", "tests", "bench", "fuzz", "scripts", "deploy", "demo")
        for p in (ROOT / d).rglob("*")
    ]
    checked = 0
    for path in sources:
        if (
            path.suffix not in (".py", ".yaml", ".yml", ".sh", "")
            or not path.is_file()
            or "__pycache__" in path.parts
        ):
            continue
        text = path.read_text(errors="replace")
        assert not re.search(r"\b(DESIGN|ANCHORS|KUMA|STYLE)\.md\b", text), path
        assert not re.search(r"(?i)(?<!envoy )\bissue \d+", text), path
        checked += 1
    assert checked > 100
