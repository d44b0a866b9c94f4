"""Fuzz the HTTP/1.1 request path for longer than CI does: `python fuzz/fuzz_http1.py [EXAMPLES]`.

Two properties over the same client byte streams (fuzz/strategies.py):
- parser path: no crash, every malformed input answered with a 4xx/5xx and a close (fuzz/harness.py);
- framing: the requests an independent strict upstream (h11) parses are exactly the ones the client gets
  answers to, in order and with the same bodies, and a second client on the same pooled upstream
  connection gets its own answer (fuzz/framing.py).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings

from fuzz.framing import check_case
from fuzz.harness import check, feed
from fuzz.strategies import requests_strategy

_loop = asyncio.new_event_loop()


def parser_case(chunks: list[bytes]) -> None:
    out, closed = feed(_loop, chunks)
    check(out, closed)


def framing_case(chunks: list[bytes]) -> None:
    _loop.run_until_complete(check_case(_loop, chunks))


def run(examples: int) -> None:
    for name, case in (("parser path", parser_case), ("framing", framing_case)):
        check_each = settings(
            max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )(given(requests_strategy())(case))
        check_each()
        print(f"{name}: {examples} examples held")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
