"""A problem found in the resources: its one line for the user, and whose it is.

The line is `FILE:LINE: KIND/NAME: FIELD.PATH: message`. `:LINE` after FILE is the form compilers and
YAML syntax errors (`FILE:LINE: yaml: ...`) already use, so a reader that splits on ": " still gets the
same four parts and editors jump to the line. Knowing the resource a problem belongs to lets a sidecar
skip a broken resource that is not its own (config/__init__.py) while `validate` still lists them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    text: str  # the whole line
    file: str
    line: int | None = None
    kind: str | None = None  # None: the problem is the file's or a document's, not one resource's
    name: str | None = None
    mesh: str | None = None  # the mesh of a mesh-scoped resource ("" when unknown)
    # A consequence of what may be a problem elsewhere (a missing mesh may sit in a file that did not
    # parse): not reported when a file-level problem is, so one YAML error is one line.
    follows: bool = False
    warning: bool = False  # worth saying, but the resource is valid: `validate` still exits 0

    def __str__(self) -> str:
        return self.text

    @property
    def resource(self) -> tuple[str, str, str] | None:
        if self.kind is None or self.name is None:
            return None
        return (self.kind, self.name, self.mesh or "")


def where(file: str, line: int | None) -> str:
    return f"{file}:{line}" if line else file


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute), row by row."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def did_you_mean(value: object, choices: Iterable[str], limit: int = 2) -> str:
    """`; did you mean "x"?` for the closest choice within `limit` edits (ignoring case), else ""."""
    if not isinstance(value, str) or not value:
        return ""
    scored = sorted((edit_distance(value.lower(), c.lower()), c) for c in choices if c != value)
    if scored and scored[0][0] <= limit:
        return f'; did you mean "{scored[0][1]}"?'
    return ""


def shown(value: object) -> str:
    """A user's value quoted the way messages show it: strings in double quotes, the rest as YAML wrote it."""
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return str(value)
