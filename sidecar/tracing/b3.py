"""B3 propagation (openzipkin/b3-propagation): parse multi and single headers, format them.

Anything invalid or partial is ignored as a whole: `extract` returns None and the caller starts a new
trace. Only a sampling decision without ids (`x-b3-sampled: 0`, `b3: 0`) is kept on its own.
"""

from __future__ import annotations

from typing import Final

from sidecar.tracing.ids import is_lower_hex

B3_SINGLE: Final = b"b3"
TRACE_ID: Final = b"x-b3-traceid"
SPAN_ID: Final = b"x-b3-spanid"
PARENT_SPAN_ID: Final = b"x-b3-parentspanid"
SAMPLED: Final = b"x-b3-sampled"
FLAGS: Final = b"x-b3-flags"

# x-b3-sampled values: B3's "1"/"0" and the legacy "true"/"false" some old tracers send.
_SAMPLED_VALUES: Final = {"1": True, "0": False, "true": True, "false": False}
_SINGLE_SAMPLED: Final = {"1": (True, False), "0": (False, False), "d": (True, True)}


# A plain class, not a dataclass: mypyc builds it with a native __init__ (a compiled dataclass keeps the
# generated __init__ interpreted), and one is built for every request that carries B3.
class B3Context:
    """An extracted context, read only. `trace_id`/`span_id` are None for a sampling-only header."""

    __slots__ = ("debug", "parent_id", "sampled", "span_id", "trace_id")

    def __init__(
        self,
        trace_id: str | None,
        span_id: str | None,
        parent_id: str | None,
        sampled: bool | None,  # None: defer to the local decision
        debug: bool = False,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.debug = debug

    def _fields(self) -> tuple[str | None, str | None, str | None, bool | None, bool]:
        return (self.trace_id, self.span_id, self.parent_id, self.sampled, self.debug)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, B3Context) and self._fields() == other._fields()

    def __repr__(self) -> str:
        fields = zip(("trace_id", "span_id", "parent_id", "sampled", "debug"), self._fields(), strict=True)
        return "B3Context(" + ", ".join(f"{name}={value!r}" for name, value in fields) + ")"

    @property
    def has_ids(self) -> bool:
        return self.trace_id is not None


def _decode(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("ascii").strip()
    except UnicodeDecodeError:
        return ""  # not ASCII: certainly not a valid B3 value


def parse_single(value: str) -> B3Context | None:
    """`{trace}-{span}[-{sampled}[-{parent}]]` or a bare `0`/`1`/`d`."""
    if value in _SINGLE_SAMPLED:
        only_sampled, only_debug = _SINGLE_SAMPLED[value]
        return B3Context(None, None, None, only_sampled, only_debug)
    parts = value.split("-")
    if not 2 <= len(parts) <= 4:
        return None
    trace_id, span_id = parts[0], parts[1]
    if not is_lower_hex(trace_id, 16, 32) or not is_lower_hex(span_id, 16):
        return None
    sampled: bool | None = None
    debug = False
    if len(parts) >= 3:
        flag = _SINGLE_SAMPLED.get(parts[2])
        if flag is None:
            return None
        sampled, debug = flag
    parent_id = None
    if len(parts) == 4:
        parent_id = parts[3]
        if not is_lower_hex(parent_id, 16):
            return None
    return B3Context(trace_id, span_id, parent_id, sampled, debug)


def parse_multi(headers: dict[bytes, bytes]) -> B3Context | None:
    trace_id = _decode(headers.get(TRACE_ID))
    span_id = _decode(headers.get(SPAN_ID))
    parent_id = _decode(headers.get(PARENT_SPAN_ID))
    sampled_raw = _decode(headers.get(SAMPLED))
    flags_raw = _decode(headers.get(FLAGS))

    sampled: bool | None = None
    if sampled_raw is not None:
        if sampled_raw.lower() not in _SAMPLED_VALUES:
            return None
        sampled = _SAMPLED_VALUES[sampled_raw.lower()]
    debug = False
    if flags_raw is not None:
        if flags_raw not in ("0", "1"):
            return None
        debug = flags_raw == "1"

    if trace_id is None and span_id is None:
        if parent_id is not None:
            return None  # a parent without a context is partial
        if sampled is None and not debug:
            return None
        return B3Context(None, None, None, sampled, debug)
    if trace_id is None or span_id is None:
        return None  # partial context
    if not is_lower_hex(trace_id, 16, 32) or not is_lower_hex(span_id, 16):
        return None
    if parent_id is not None and not is_lower_hex(parent_id, 16):
        return None
    return B3Context(trace_id, span_id, parent_id, sampled, debug)


def extract(headers: dict[bytes, bytes]) -> B3Context | None:
    """The single `b3` header wins when present and valid; otherwise the `x-b3-*` headers."""
    single = _decode(headers.get(B3_SINGLE))
    if single is not None:
        context = parse_single(single)
        if context is not None:
            return context
    return parse_multi(headers)


def format_multi(
    trace_id: str, span_id: str, parent_id: str | None, sampled: bool, debug: bool
) -> list[tuple[bytes, bytes]]:
    """Headers toward the next hop; the decision is always explicit (never "defer")."""
    out = [(TRACE_ID, trace_id.encode()), (SPAN_ID, span_id.encode())]
    if parent_id is not None:
        out.append((PARENT_SPAN_ID, parent_id.encode()))
    # Debug implies sampled; x-b3-sampled is still sent because Envoy ignores x-b3-flags.
    out.append((SAMPLED, b"1" if sampled or debug else b"0"))
    if debug:
        out.append((FLAGS, b"1"))
    return out


def format_single(trace_id: str, span_id: str, parent_id: str | None, sampled: bool, debug: bool) -> bytes:
    flag = "d" if debug else ("1" if sampled else "0")
    value = f"{trace_id}-{span_id}-{flag}"
    if parent_id is not None:
        value += f"-{parent_id}"
    return value.encode()
