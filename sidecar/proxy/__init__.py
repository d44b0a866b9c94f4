"""The data path: HTTP/1.1 exchange (traced), upstream pool, TCP passthrough, listeners."""

from sidecar.proxy.listener import HttpListener, Listener, TcpListener, start_listener
from sidecar.proxy.route import Route
from sidecar.proxy.settings import ProxySettings
from sidecar.proxy.stats import ListenerStats

__all__ = [
    "HttpListener",
    "Listener",
    "ListenerStats",
    "ProxySettings",
    "Route",
    "TcpListener",
    "start_listener",
]
