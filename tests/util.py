"""Ports for the tests: servers in the test process bind port 0 themselves; `free_port` is only for a port
that must be written into a config before another process binds it."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_handed_out: set[int] = set()
_rng = random.Random()  # seeded from the OS: parallel runs of the suite pick different ports


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A port outside the kernel's ephemeral range, so no outgoing connection of any process can take it
    between now and its use; never the same twice in this process; free when checked. Another program
    may still bind it meanwhile: tests that start a process with it retry on a bind failure."""
    low, high = ephemeral_range()
    choices = range(10000, low) if low - 10000 >= 2000 else range(high + 1, 65536)
    for _ in range(200):
        port = _rng.choice(choices)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port outside the ephemeral range")


def bound_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening socket on port 0, for a server in the test process (aiohttp's SockSite takes it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def refusing_port(host: str = "127.0.0.1") -> tuple[socket.socket, int]:
    """A port that refuses connections and stays ours: bound, never listening. Keep the socket open."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    return sock, port_of(sock)
