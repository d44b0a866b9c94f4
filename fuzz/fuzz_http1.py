"""Fuzz the HTTP/1.1 path for longer than CI does: `python fuzz/fuzz_http1.py [EXAMPLES] [MODE]`.

Two properties over the same client byte streams (fuzz/strategies.py):
- parser path: no crash, every malformed input answered with a 4xx/5xx and a close (fuzz/harness.py);
- framing: the requests an independent strict upstream (h11) parses are exactly the ones the client gets
  answers to, in order and with the same bodies, and a second client on the same pooled upstream
  connection gets its own answer (fuzz/framing.py).
And one over the responses (MODE `hostile`, alone):
- hostile upstream: an origin answering with random response bytes, pipelined clients one after the
  other on its pool; every client gets exactly the responses to its own requests, or a 5xx, or a close
  (fuzz/hostile.py).
And one over upstream connection reuse (MODE `reuse`, alone, on real sockets):
- careless upstream: a back-end that leaves bodies unread and reads them as requests, behind an HTTP/1.1
  or HTTP/2 client; no request gets another's answer (tests/proxy/test_reuse_property.py).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.framing import check_case
from fuzz.harness import check, feed
from fuzz.hostile import Answer, answers_strategy, client_strategy, hostile_case
from fuzz.strategies import requests_strategy

_loop = asyncio.new_event_loop()


def parser_case(chunks: list[bytes]) -> None:
    out, closed = feed(_loop, chunks)
    check(out, closed)


def framing_case(chunks: list[bytes]) -> None:
    _loop.run_until_complete(check_case(_loop, chunks))


def hostile(answers: tuple[Answer, ...], clients: list[list[tuple[bytes, bytes, bool]]]) -> None:
    _loop.run_until_complete(hostile_case(_loop, answers, clients))


def run(examples: int, mode: str = "requests") -> None:
    fuzz = settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    if mode == "hostile":
        fuzz(given(answers_strategy(), st.lists(client_strategy(), min_size=2, max_size=3))(hostile))()
        print(f"hostile upstream: {examples} examples held")
        return
    if mode == "reuse":
        from tests.proxy.test_reuse_property import PROTOCOLS, requests
        from tests.proxy.test_reuse_property import case as reuse_case

        def reuse(clients: list[list[Any]], protocol: str) -> None:
            _loop.run_until_complete(reuse_case(clients, protocol))

        fuzz(given(st.lists(requests(), min_size=1, max_size=2), st.sampled_from(PROTOCOLS))(reuse))()
        print(f"careless upstream, connection reuse: {examples} examples held")
        return
    for name, case in (("parser path", parser_case), ("framing", framing_case)):
        fuzz(given(requests_strategy())(case))()
        print(f"{name}: {examples} examples held")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 20000, sys.argv[2] if len(sys.argv) > 2 else "requests")
