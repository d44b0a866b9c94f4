"""The data path: HTTP/1.1 and HTTP/2 exchanges (traced), upstream pools, TCP passthrough, listeners."""

from sidecar.proxy.listener import (
    H2Listener,
    HttpListener,
    Listener,
    TcpListener,
    listener_class,
    start_listener,
)
from sidecar.proxy.route import Route
from sidecar.proxy.settings import ProxySettings
from sidecar.proxy.stats import ListenerStats

__all__ = [
    "H2Listener",
    "HttpListener",
    "Listener",
    "ListenerStats",
    "ProxySettings",
    "Route",
    "TcpListener",
    "listener_class",
    "start_listener",
]
