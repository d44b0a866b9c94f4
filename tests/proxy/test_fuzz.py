"""Property test of the downstream parser path: no crash, every malformed input answered 4xx + close.

Runs briefly in CI; `python fuzz/fuzz_http1.py 100000` runs it longer.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.harness import check, feed

VALID = b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nx-b3-traceid: 463ac35c9f6413ad\r\n\r\nhello"
TOKENS = [b"GET", b"POST", b" ", b"/", b"HTTP/1.1", b"HTTP/1.0", b"\r\n", b"\n", b":", b"Host", b"Content-Length",
          b"Transfer-Encoding", b"chunked", b"0", b"5", b"ff", b"x-b3-traceid", b"b3", b"\x00", b"\xff", b"Upgrade",
          b"Connection", b"Expect", b"100-continue", b"\t", b"-1", b"99999999999999999999"]  # fmt: skip


def requests_strategy() -> st.SearchStrategy[list[bytes]]:
    mutated = st.builds(
        lambda data, i, b: data[:i] + bytes([b]) + data[i + 1 :],
        st.just(VALID),
        st.integers(0, len(VALID) - 1),
        st.integers(0, 255),
    )
    tokens = st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join)
    raw = st.binary(max_size=300)
    one = st.one_of(mutated, tokens, raw, st.just(VALID))
    return st.lists(one, min_size=1, max_size=4)


_loop = asyncio.new_event_loop()


def run_case(chunks: list[bytes]) -> None:
    out, closed = feed(_loop, chunks)
    check(out, closed)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(requests_strategy())
def test_parser_path_never_crashes(chunks: list[bytes]) -> None:
    run_case(chunks)


def test_harness_sees_valid_and_invalid() -> None:
    out, closed = feed(_loop, [VALID])
    assert out.startswith(b"HTTP/1.1 503 ")  # valid: parsed, no endpoint
    out, closed = feed(_loop, [b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"])
    assert out.startswith(b"HTTP/1.1 400 ") and closed
