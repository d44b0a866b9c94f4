"""Where a client's header block starts and ends, followed from frame headers only, however the bytes
are cut: a table of frame sequences, and the property that any cut gives the same answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.proxy.h2_watch import PREFACE_SIZE, HeaderBlockWatch

HEADERS, CONTINUATION, DATA, PING = 0x1, 0x9, 0x0, 0x6
END_HEADERS, END_STREAM = 0x4, 0x1


def frame(kind: int, flags: int = 0, length: int = 3, sid: int = 1) -> bytes:
    return length.to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + b"p" * length


CASES = [
    ("nothing yet", b"", False),
    ("a whole request head", frame(HEADERS, END_HEADERS | END_STREAM), False),
    ("HEADERS without END_HEADERS", frame(HEADERS), True),
    ("HEADERS, then its last CONTINUATION", frame(HEADERS) + frame(CONTINUATION, END_HEADERS), False),
    ("HEADERS, then a CONTINUATION not the last", frame(HEADERS) + frame(CONTINUATION), True),
    ("a HEADERS frame still arriving", frame(HEADERS, END_HEADERS)[:-1], True),
    ("only the first bytes of a HEADERS frame header", frame(HEADERS)[:5], True),
    ("only the first bytes of a DATA frame header", frame(DATA)[:5], False),
    ("an empty HEADERS frame with END_HEADERS", frame(HEADERS, END_HEADERS, length=0), False),
    ("DATA and PING", frame(DATA, END_STREAM, length=100) + frame(PING, length=8), False),
    ("a stray CONTINUATION", frame(CONTINUATION), False),
    ("a head after DATA", frame(DATA, length=10) + frame(HEADERS), True),
]


@pytest.mark.parametrize(("case", "data", "open_"), CASES, ids=[c[0] for c in CASES])
def test_where_a_header_block_is(case: str, data: bytes, open_: bool) -> None:
    watch = HeaderBlockWatch(skip=0)
    watch.feed(data)
    assert watch.open is open_


def test_the_preface_is_skipped() -> None:
    watch = HeaderBlockWatch()
    watch.feed(b"\x01" * PREFACE_SIZE)  # looks like a HEADERS frame header, but is the preface
    assert not watch.open
    watch.feed(frame(HEADERS))
    assert watch.open


@given(st.lists(st.sampled_from([c[1] for c in CASES[1:] if c[1]]), max_size=6), st.data())
def test_any_cut_gives_the_same_answer(parts: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(parts)
    whole = HeaderBlockWatch(skip=0)
    whole.feed(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    cut = HeaderBlockWatch(skip=0)
    for piece in pieces:
        cut.feed(piece)
    assert cut.open is whole.open
