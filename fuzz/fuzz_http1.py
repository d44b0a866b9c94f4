"""Fuzz the downstream parser path for longer than CI does: `python fuzz/fuzz_http1.py [EXAMPLES]`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings

from tests.proxy.test_fuzz import requests_strategy, run_case


def main() -> None:
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 20000

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests_strategy())
    def fuzz(chunks: list[bytes]) -> None:
        run_case(chunks)

    fuzz()
    print(f"{examples} examples: no crash, every malformed input answered 4xx and closed")


if __name__ == "__main__":
    main()
