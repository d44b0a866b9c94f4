"""Property test of the reporter's HTTP client against a hostile collector (fuzz/fuzz_collector.py runs
it longer): answers made of desync parts, in any pieces, with or without the end of the connection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.collector import collector_case
from fuzz.hostile import response_bytes


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=response_bytes(), cuts=st.lists(st.integers(0, 400), max_size=4), eof=st.booleans())
def test_a_hostile_collector(
    loop: asyncio.AbstractEventLoop, data: bytes, cuts: list[int], eof: bool
) -> None:
    collector_case(loop, data, cuts, eof)
