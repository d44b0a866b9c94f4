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

from dataclasses import dataclass

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"

_OWS = " \t"
_LOWER_HEX = frozenset("0123456789abcdef")
SAMPLED_FLAG = 0x01
_MAX_MEMBERS = 32
# tracestate keys: a simple key, or tenant@system (section 3.3.1.3.1).
_KEY_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
_KEY_CHARS = _KEY_FIRST | frozenset("0123456789_-*/")
_TENANT_FIRST = _KEY_FIRST | frozenset("0123456789")
# tracestate values: printable ASCII but `,` and `=`; the last one not a space (section 3.3.1.3.2).
_VALUE_LAST = frozenset(chr(c) for c in range(0x21, 0x7F)) - {",", "="}
_VALUE_CHARS = _VALUE_LAST | {" "}


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: str  # 32 lower-hex
    parent_id: str  # 16 lower-hex: the caller's span
    flags: int  # trace-flags; bit 0 = sampled

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED_FLAG)


def _hex(value: str, length: int) -> bool:
    return len(value) == length and _LOWER_HEX.issuperset(value)


def parse_traceparent(raw: bytes) -> TraceParent | None:
    """The context of one `traceparent` value, or None when the value is invalid."""
    try:
        value = raw.decode("ascii").strip(_OWS)
    except UnicodeDecodeError:
        return None
    if len(value) < 55:
        return None
    version = value[:2]
    if not _hex(version, 2) or version == "ff":
        return None
    if version == "00":
        if len(value) != 55:
            return None
    elif len(value) > 55 and value[55] != "-":
        return None  # a future version appends fields, each after a dash
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    trace_id, parent_id, flags = value[3:35], value[36:52], value[53:55]
    if not _hex(trace_id, 32) or not _hex(parent_id, 16) or not _hex(flags, 2):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    bits = int(flags, 16)
    if version != "00":
        bits &= SAMPLED_FLAG  # a later version may give the other bits another meaning
    return TraceParent(trace_id, parent_id, bits)


def format_traceparent(trace_id: str, span_id: str, flags: int) -> bytes:
    """Version 00 toward the next hop; a 64-bit trace id is left-padded with zeros to 128 bits."""
    if len(trace_id) == 16:
        trace_id = "0000000000000000" + trace_id
    return b"00-%s-%s-%02x" % (trace_id.encode(), span_id.encode(), flags & 0xFF)


def _valid_key(key: str) -> bool:
    tenant, at, system = key.partition("@")
    if not at:
        return 0 < len(key) <= 256 and key[0] in _KEY_FIRST and _KEY_CHARS.issuperset(key)
    return (
        0 < len(tenant) <= 241
        and tenant[0] in _TENANT_FIRST
        and _KEY_CHARS.issuperset(tenant)
        and 0 < len(system) <= 14
        and system[0] in _KEY_FIRST
        and _KEY_CHARS.issuperset(system)
    )


def _valid_value(value: str) -> bool:
    return 0 < len(value) <= 256 and value[-1] in _VALUE_LAST and _VALUE_CHARS.issuperset(value)


def parse_tracestate(raw: bytes) -> bytes | None:
    """The list to forward (members joined by `,`, in order), or None when it is invalid or empty."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    members: list[str] = []
    keys: set[str] = set()
    for part in text.split(","):
        member = part.strip(_OWS)
        if not member:
            continue
        key, eq, value = member.partition("=")
        if not eq or not _valid_key(key) or not _valid_value(value) or key in keys:
            return None
        keys.add(key)
        members.append(member)
        if len(members) > _MAX_MEMBERS:
            return None
    return ",".join(members).encode() if members else None
