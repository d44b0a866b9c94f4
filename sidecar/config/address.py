"""`HOST:PORT` text to a (host, port) pair: the one parser for flags, resources and the collector."""

from __future__ import annotations


def split_host_port(
    text: str, default_host: str = "127.0.0.1", *, allow_zero: bool = True
) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (the default host); ValueError with a message for the user."""
    host, sep, port = text.rpartition(":")
    low = 0 if allow_zero else 1
    if not sep or not port.isdigit() or not low <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port in [{low}, 65535], got {text!r}")
    if host.startswith("[") != host.endswith("]") or ("[" not in host and ":" in host):
        raise ValueError(f"expected HOST:PORT (an IPv6 host in brackets: [::1]:9901), got {text!r}")
    return host.strip("[]") or default_host, int(port)


def join_host_port(host: str, port: int) -> str:
    """The inverse of `split_host_port`: brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
