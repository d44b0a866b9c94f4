"""W3C Trace Context (Level 1): parse and format the `traceparent` and `tracestate` request headers.

Pure and strict, as the specification's section 3 says; anything invalid is ignored as a whole (the
caller starts a new trace), never an error:

- `traceparent` is `version-traceid-parentid-flags`, lower-case hex only, with optional spaces or tabs
  around the value. Version `ff` is invalid. Version `00` is exactly 55 characters. A higher version is
  read by its first four fields (the rest must start with `-`). An all-zero trace id or parent id is
  invalid. Two `traceparent` fields in one request are invalid (the proxy hands over an empty value then).
- `tracestate` is a list of `key=value` members, several fields joined by commas. Empty members and the
  spaces around members are dropped; a bad key or value, a repeated key or more than 32 members make the
  whole list invalid, and it is not forwarded.
"""

from __future__ import annotations

import re
from typing import Final

TRACEPARENT: Final = b"traceparent"
TRACESTATE: Final = b"tracestate"

_OWS: Final = b" \t"
SAMPLED_FLAG: Final = 0x01
_MAX_MEMBERS: Final = 32
_ZERO_TRACE: Final = b"0" * 32
_ZERO_SPAN: Final = b"0" * 16
_FLAGS: Final = tuple(b"-%02x" % bits for bits in range(256))  # the formatted flags field, by value
# version-traceid-parentid-flags, lower-case hex; a later version may append "-" and more (section 3.2).
_TRACEPARENT: Final = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL
)
# One tracestate member (section 3.3.1.3): a simple key (a letter, then up to 255 of [a-z0-9_-*/]) or
# tenant@system (up to 241 and 14), `=`, a value of up to 256 printable characters but `,` and `=`,
# not ending in a space.
_MEMBER: Final = re.compile(
    rb"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    rb"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)


class TraceParent:
    """A valid incoming `traceparent`. A plain class: compiled, it is built without an interpreted
    __new__ (a NamedTuple's), once per request that carries one."""

    __slots__ = ("flags", "parent_id", "trace_id")

    def __init__(self, trace_id: str, parent_id: str, flags: int) -> None:
        self.trace_id = trace_id  # 32 lower-hex
        self.parent_id = parent_id  # 16 lower-hex: the caller's span
        self.flags = flags  # trace-flags; bit 0 (SAMPLED_FLAG) = sampled

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TraceParent)
            and self.trace_id == other.trace_id
            and self.parent_id == other.parent_id
            and self.flags == other.flags
        )

    def __repr__(self) -> str:
        return f"TraceParent({self.trace_id!r}, {self.parent_id!r}, {self.flags})"


def parse_traceparent(raw: bytes) -> TraceParent | None:
    """The context of one `traceparent` value, or None when the value is invalid."""
    match = _TRACEPARENT.fullmatch(raw.strip(_OWS))
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None  # ff is never valid; version 00 is exactly 55 characters
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    bits = int(flags, 16)
    if version != b"00":
        bits &= SAMPLED_FLAG  # a later version may give the other bits another meaning
    return TraceParent(trace_id.decode(), parent_id.decode(), bits)


def format_traceparent(trace_id: str, span_id: str, flags: int) -> bytes:
    """Version 00 toward the next hop; a 64-bit trace id is left-padded with zeros to 128 bits."""
    head = "00-0000000000000000" if len(trace_id) == 16 else "00-"
    return (head + trace_id + "-" + span_id).encode() + _FLAGS[flags & 0xFF]


def parse_tracestate(raw: bytes) -> bytes | None:
    """The list to forward (members joined by `,`, in order), or None when it is invalid or empty."""
    members: list[bytes] = []
    keys: set[bytes] = set()
    for part in raw.split(b","):
        member = part.strip(_OWS)
        if not member:
            continue
        if _MEMBER.fullmatch(member) is None:
            return None
        key = member[: member.index(b"=")]
        if key in keys or len(members) == _MAX_MEMBERS:
            return None
        keys.add(key)
        members.append(member)
    return b",".join(members) if members else None
