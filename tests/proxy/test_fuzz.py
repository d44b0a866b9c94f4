"""Property tests of the HTTP/1.1 request path (fuzz/fuzz_http1.py runs the same properties longer).

- no crash, every malformed input answered 4xx/5xx and closed;
- framing: what a strict upstream (h11) parses is exactly what the client gets answers to.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings

from fuzz.fuzz_http1 import framing_case, parser_case
from fuzz.harness import feed
from fuzz.strategies import VALID, requests_strategy

_loop = asyncio.new_event_loop()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(requests_strategy())
def test_parser_path_never_crashes(chunks: list[bytes]) -> None:
    parser_case(chunks)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(requests_strategy())
def test_upstream_parses_what_the_client_gets_answers_to(chunks: list[bytes]) -> None:
    framing_case(chunks)


def test_harness_sees_valid_and_invalid() -> None:
    out, closed = feed(_loop, [VALID])
    assert out.startswith(b"HTTP/1.1 503 ")  # valid: parsed, no endpoint
    out, closed = feed(_loop, [b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"])
    assert out.startswith(b"HTTP/1.1 400 ") and closed
