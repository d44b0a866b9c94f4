"""Endpoints by name: resolved at connect time, kept for the TTL, a failure is 503 UH with one warning."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from typing import Any

import pytest

from sidecar.proxy.endpoint import Endpoint, ResolutionError, Resolver, endpoint_of, parse_endpoint
from tests.proxy.conftest import Bench, exchange


def test_parse_and_key() -> None:
    assert parse_endpoint("backend.ns.svc:8080") == Endpoint("backend.ns.svc", 8080, "backend.ns.svc:8080")
    assert parse_endpoint("[::1]:80").host == "::1" and endpoint_of("::1", 80).key == "[::1]:80"
    assert parse_endpoint("backend.ns.svc:8080").is_name and not parse_endpoint("10.0.0.1:80").is_name


async def test_names_are_cached_for_the_ttl_and_resolved_again(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    answers = [["10.1.0.1", "10.1.0.2"], ["10.1.0.9"]]
    calls: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[len(calls) - 1]]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    resolver = Resolver(ttl=0.2)
    endpoint = parse_endpoint("backend.ns.svc:8080")
    got = {await resolver.address(endpoint) for _ in range(4)}
    assert got == {"10.1.0.1", "10.1.0.2"} and calls == ["backend.ns.svc"]  # one lookup, both used
    assert await resolver.address(parse_endpoint("127.0.0.1:80")) == "127.0.0.1"  # an IP: no lookup
    await asyncio.sleep(0.25)
    assert await resolver.address(endpoint) == "10.1.0.9" and len(calls) == 2  # the TTL passed


async def test_an_unresolvable_name_is_503_uh_with_one_warning(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    listener = await bench.proxy(None, outbound=True, endpoints=("nohost.invalid:80",))
    with caplog.at_level(logging.WARNING, logger="sidecar.proxy"):
        for _ in range(2):
            reply = await exchange(
                listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            assert reply.startswith(b"HTTP/1.1 503 ") and reply.endswith(b"no healthy upstream")
    assert listener.stats.local_replies == {"UH": 2}
    warnings = [r.getMessage() for r in caplog.records if "nohost.invalid" in r.getMessage()]
    assert len(warnings) == 1 and "503 UH" in warnings[0]


async def test_resolution_failure_is_an_error_naming_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fail(host: str, port: int, **_: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fail)
    with pytest.raises(
        ResolutionError, match=re.escape("cannot resolve backend.ns.svc: Name or service not known")
    ):
        await Resolver().address(parse_endpoint("backend.ns.svc:8080"))


async def test_a_burst_of_requests_shares_one_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold start (or an entry expiring under load) with a hundred requests at once is one getaddrinfo,
    not a hundred queued on the executor's few threads; a waiter that goes away cancels nothing."""
    release = asyncio.Event()
    calls: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        calls.append(host)
        await release.wait()
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.0.1", port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    resolver = Resolver()
    endpoint = parse_endpoint("backend.ns.svc:8080")
    first = asyncio.ensure_future(resolver.address(endpoint))
    waiters = [asyncio.ensure_future(resolver.address(endpoint)) for _ in range(99)]
    await asyncio.sleep(0)
    first.cancel()  # the request that started the lookup went away
    release.set()
    assert await asyncio.gather(*waiters) == ["10.1.0.1"] * 99
    assert calls == ["backend.ns.svc"] and first.cancelled()
    assert await resolver.address(endpoint) == "10.1.0.1" and len(calls) == 1  # cached


async def test_a_shared_lookup_failure_reaches_every_waiter(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def fail(host: str, port: int, **_: Any) -> list[Any]:
        calls.append(host)
        await asyncio.sleep(0)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fail)
    resolver = Resolver()
    endpoint = parse_endpoint("backend.ns.svc:8080")
    results = await asyncio.gather(*(resolver.address(endpoint) for _ in range(5)), return_exceptions=True)
    assert calls == ["backend.ns.svc"] and all(isinstance(r, ResolutionError) for r in results)
    with pytest.raises(ResolutionError):  # not cached: the next request tries again
        await resolver.address(endpoint)
    assert len(calls) == 2
