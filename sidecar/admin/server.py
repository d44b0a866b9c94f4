"""The admin listening socket (bound here, so failures are one clear line) and the aiohttp runner on it."""

from __future__ import annotations

import ipaddress
import logging
import socket

from aiohttp import web

from sidecar.admin.app import build_admin_app
from sidecar.admin.view import AdminView
from sidecar.config.address import join_host_port

log = logging.getLogger("sidecar.admin")


class AdminBindError(Exception):
    """The admin address cannot be used; the message is one line for the user."""


def bind_admin(host: str, port: int) -> socket.socket:
    """A listening, non-blocking socket on host:port; warns when it is reachable beyond loopback."""
    where = f"admin {join_host_port(host, port)}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AdminBindError(
            f"{where}: cannot resolve {host!r} ({exc.strerror}); change --admin-address"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise AdminBindError(
            f"{where}: cannot listen: {exc.strerror or exc}; change --admin-address"
        ) from None
    sock.setblocking(False)
    if not _loopback(str(address[0])):
        log.warning(
            "%s is reachable from other hosts: anyone who can connect can drain listeners and change log "
            "levels; bind 127.0.0.1 unless something outside must reach it",
            where,
        )
    return sock


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


def bound_address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return str(host), int(port)


async def start_admin(view: AdminView, sock: socket.socket) -> web.AppRunner:
    runner = web.AppRunner(build_admin_app(view), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner
