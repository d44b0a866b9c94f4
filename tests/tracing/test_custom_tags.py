"""Custom tags (MeshTrace `tags`): literal, header, header default, and absent."""

from __future__ import annotations

import pytest

from sidecar.tracing.custom_tags import TagRule, add_custom_tags, header_names

RULES = (
    TagRule("team", literal="core"),
    TagRule("env", header=b"x-env", default="prod"),
    TagRule("tenant", header=b"x-tenant"),
)


@pytest.mark.parametrize(
    ("incoming", "expected"),
    [
        ({}, {"team": "core", "env": "prod"}),  # header tags: the default, or no tag without one
        ({b"x-env": b"staging"}, {"team": "core", "env": "staging"}),
        ({b"x-tenant": b"acme", b"x-env": b""}, {"team": "core", "env": "", "tenant": "acme"}),
        ({b"x-tenant": "caf\xe9".encode("latin-1")}, {"team": "core", "env": "prod", "tenant": "caf\xe9"}),
    ],
)
def test_tags_from_literals_headers_and_defaults(
    incoming: dict[bytes, bytes], expected: dict[str, str]
) -> None:
    tags: dict[str, str] = {}
    add_custom_tags(tags, RULES, incoming)
    assert tags == expected


def test_a_custom_tag_replaces_a_tag_of_the_same_name() -> None:
    tags = {"component": "proxy"}
    add_custom_tags(tags, (TagRule("component", literal="edge"),), {})
    assert tags == {"component": "edge"}


def test_header_names_are_the_headers_read() -> None:
    assert header_names(RULES) == {b"x-env", b"x-tenant"}
    assert header_names(()) == frozenset()
