"""One trace rendered as an indented text tree: service, kind, name, duration, status.

A shared SERVER span carries the id of the CLIENT span that called it; it nests under that CLIENT,
and children naming that id as parent nest under the SERVER side (the deeper one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Span = dict[str, Any]


def _is_proxy(span: Span) -> bool:
    return bool(span.get("tags", {}).get("component") == "proxy")


def _parent(span: Span, by_id: dict[str, list[Span]]) -> Span | None:
    same = [other for other in by_id.get(span["id"], []) if other is not span]
    if span.get("kind") == "SERVER":
        # An app library that reuses the incoming ids for its own server span (py_zipkin does)
        # records a twin of the sidecar's SERVER span: it runs inside the proxy's one.
        if not _is_proxy(span):
            for other in same:
                if other.get("kind") == "SERVER" and _is_proxy(other):
                    return other
        if span.get("shared") or not _is_proxy(span):
            for other in same:
                if other.get("kind") == "CLIENT":
                    return other
    parent_id = span.get("parentId")
    if parent_id is None:
        return None
    candidates = [c for c in by_id.get(parent_id, []) if c is not span]
    shared = [c for c in candidates if c.get("shared")]
    pick = shared or candidates
    return pick[0] if pick else None


def _line(span: Span) -> str:
    service = span.get("localEndpoint", {}).get("serviceName", "?")
    tags = span.get("tags", {})
    status = tags.get("http.status_code", "-")
    duration_ms = span.get("duration", 0) / 1000
    flags = tags.get("response_flags", "-")
    method = tags.get("http.method", "")
    url = tags.get("http.url", span.get("name", ""))
    mark = "  ERROR" if tags.get("error") == "true" else ""
    extra = f"  [{flags}]" if flags not in ("-", "") else ""
    kind = span.get("kind") or "LOCAL"
    return f"{service} {kind} {method} {url}  {duration_ms:.2f} ms  {status}{extra}{mark}".replace(
        "  ", " ", 0
    )


def render_trace(spans: Sequence[Span], note: Callable[[Span], str] | None = None) -> str:
    """The trace as lines; `note(span)` may append a remark to a span's line (e.g. its backend)."""
    by_id: dict[str, list[Span]] = {}
    for span in spans:
        by_id.setdefault(span["id"], []).append(span)
    children: dict[int, list[Span]] = {}
    roots: list[Span] = []
    for span in spans:
        parent = _parent(span, by_id)
        if parent is None:
            roots.append(span)
        else:
            children.setdefault(id(parent), []).append(span)
    services = {s.get("localEndpoint", {}).get("serviceName") for s in spans} - {None}
    trace_id = spans[0]["traceId"] if spans else "?"
    lines = [f"trace {trace_id}  ({len(spans)} spans, {len(services)} services)"]

    def walk(span: Span, depth: int, seen: set[int]) -> None:
        if id(span) in seen:  # a malformed trace could loop
            return
        seen.add(id(span))
        lines.append("  " * depth + "└─ " + _line(span) + (note(span) if note else ""))
        for child in sorted(children.get(id(span), []), key=lambda s: s.get("timestamp", 0)):
            walk(child, depth + 1, seen)

    seen: set[int] = set()
    for root in sorted(roots, key=lambda s: s.get("timestamp", 0)):
        walk(root, 1, seen)
    return "\n".join(lines)
