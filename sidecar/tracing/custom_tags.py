"""Custom span tags (a MeshTrace's `tags`): a literal value, or a request header's value or its default.

Pure. The tracer adds them to every span it opens, SERVER and CLIENT alike, after its own tags (so a
custom tag of the same name wins). A header tag reads the first value of the header as the proxy
collected it (`Tracer.header_names` includes every tag header); with no such header it takes its default,
and with no default the tag is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TagRule:
    name: str
    literal: str | None = None
    header: bytes | None = None  # lowercase header name
    default: str | None = None


def header_names(rules: Iterable[TagRule]) -> frozenset[bytes]:
    """The request headers the rules read."""
    return frozenset(rule.header for rule in rules if rule.header is not None)


def add_custom_tags(tags: dict[str, str], rules: Iterable[TagRule], incoming: dict[bytes, bytes]) -> None:
    for rule in rules:
        if rule.literal is not None:
            tags[rule.name] = rule.literal
            continue
        value = incoming.get(rule.header) if rule.header is not None else None
        if value is not None:
            tags[rule.name] = value.decode("latin-1")
        elif rule.default is not None:
            tags[rule.name] = rule.default
