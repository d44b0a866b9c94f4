"""Upstream endpoints ("host:port" from the snapshot) and the resolution of DNS names with a TTL.

An endpoint named by an IP address is used as is. A name (a Kubernetes Service, an ExternalService) is
resolved with the loop's getaddrinfo, kept for `ttl` seconds, then resolved again, so a Service that moves
is followed without a reload; a failed resolution is an error the exchange turns into 503 `UH`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from typing import NamedTuple

log = logging.getLogger("sidecar.proxy")


class Endpoint(NamedTuple):
    """A tuple, so the pool's per-request dictionary lookups hash it in C."""

    host: str  # an IP address or a DNS name, without brackets
    port: int
    key: str  # "host:port" as configured: stats and logs use it

    @property
    def is_name(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False


def endpoint_of(host: str, port: int) -> Endpoint:
    return Endpoint(host, port, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


def parse_endpoint(text: str) -> Endpoint:
    host, _, port = text.rpartition(":")
    return Endpoint(host.strip("[]"), int(port), text)


def _retrieve(lookup: asyncio.Future[list[str]]) -> None:
    """Mark a failed lookup's error seen: every waiter may have gone (they raise it themselves)."""
    if not lookup.cancelled():
        lookup.exception()


class ResolutionError(OSError):
    """A name did not resolve (or not in time); the message says which and why."""


class Resolver:
    """getaddrinfo with a cache of `ttl` seconds per name, rotating over the addresses it returned."""

    def __init__(self, ttl: float = 5.0, timeout: float = 5.0) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}
        # One lookup per name at a time: a burst of requests (a cold start, an expired entry under load)
        # would otherwise queue one getaddrinfo each on the executor's few threads.
        self._pending: dict[tuple[str, int], asyncio.Future[list[str]]] = {}
        self._turn = 0
        self._failed: dict[str, float] = {}  # name -> last time a failure was logged

    async def address(self, endpoint: Endpoint) -> str:
        """One address of `endpoint`: the host itself when it is an IP, else a cached resolution."""
        if not endpoint.is_name:
            return endpoint.host
        key = (endpoint.host, endpoint.port)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is None or cached[0] < now:
            addresses = await self._shared_lookup(endpoint, key)
        else:
            addresses = cached[1]
        self._turn += 1
        return addresses[self._turn % len(addresses)]

    async def _shared_lookup(self, endpoint: Endpoint, key: tuple[str, int]) -> list[str]:
        lookup = self._pending.get(key)
        if lookup is None:
            # Its own task, so no waiter's cancellation (a client gone, a connect timeout) cancels it.
            lookup = self._pending[key] = asyncio.ensure_future(self._resolve(endpoint, key))
            lookup.add_done_callback(_retrieve)
        return await asyncio.shield(lookup)

    async def _resolve(self, endpoint: Endpoint, key: tuple[str, int]) -> list[str]:
        try:
            addresses = await self._lookup(endpoint)
        finally:
            del self._pending[key]
        self._cache[key] = (time.monotonic() + self.ttl, addresses)
        return addresses

    async def _lookup(self, endpoint: Endpoint) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                infos = await loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            self._log_failure(endpoint, reason)
            raise ResolutionError(f"cannot resolve {endpoint.host}: {reason}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            self._log_failure(endpoint, "no address")
            raise ResolutionError(f"cannot resolve {endpoint.host}: no address")
        return addresses

    def _log_failure(self, endpoint: Endpoint, reason: str) -> None:
        now = time.monotonic()
        if now - self._failed.get(endpoint.host, -60.0) >= 10.0:  # one line per name per 10 s
            self._failed[endpoint.host] = now
            log.warning("endpoint %s: cannot resolve %s: %s (503 UH)", endpoint.key, endpoint.host, reason)
