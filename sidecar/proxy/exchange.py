"""What every proxied request shares, whatever protocol it arrived in: endpoint choice, the upstream
connect, the response timeout, and the one record at the end (stats, span, access log).

Subclasses say how to send a response downstream (`attach`, `local_flag`); this base never writes bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from sidecar.proxy import errors
from sidecar.proxy.endpoint import Endpoint, ResolutionError
from sidecar.proxy.outbox import AfterSend
from sidecar.tracing import grpc

if TYPE_CHECKING:
    from sidecar.proxy.host import ConnectionHost, Upstream
    from sidecar.proxy.route import Route
    from sidecar.tracing.decide import Decision

log: Final = logging.getLogger("sidecar.proxy")
_DEBUG: Final = logging.DEBUG
_perf_counter: Final = time.perf_counter  # Final: a C static when compiled, no lookup per request

_UPSTREAM_FAILURES: Final = frozenset(
    {
        errors.UPSTREAM_CONNECT_FAILURE,
        errors.UPSTREAM_RESET,
        errors.UPSTREAM_TIMEOUT,
        errors.UPSTREAM_PROTOCOL_ERROR,
    }
)


NO_ENDPOINT_WARNING_EVERY: Final = 60.0  # seconds: one line per service, not one per request
_no_endpoint_warned: Final[dict[str, float]] = {}


def _warn_no_endpoint(service: str, now: float) -> None:
    last = _no_endpoint_warned.get(service)
    if last is None or now - last >= NO_ENDPOINT_WARNING_EVERY:
        _no_endpoint_warned[service] = now
        log.warning(
            'outbound "%s" has no endpoint: no Dataplane inbound or ExternalService provides that service; '
            "answering 503 UH (`sidecar validate` checks the names; said at most once a minute)",
            service,
        )


class Exchange(AfterSend):
    """One request through the proxy, from its head to the end of its response."""

    __slots__ = (
        "_timer",
        "deadline",
        "decision",
        "endpoint",
        "extra_tags",
        "finished",
        "flags",
        "host",
        "method",
        "peer",
        "protocol",
        "request_size",
        "response_size",
        "response_timeout",
        "route",
        "started",
        "status",
        "target",
        "upstream_address",
    )

    def __init__(
        self,
        host: ConnectionHost,
        route: Route,
        decision: Decision,
        *,
        method: bytes,
        target: bytes,
        protocol: str,
        peer: str,
        grpc_timeout: bytes | None = None,  # the request's grpc-timeout header, as received
    ) -> None:
        self.host = host
        self.route = route
        self.decision = decision
        self.method = method
        self.target = target
        self.protocol = protocol
        self.peer = peer
        self.started = _perf_counter()
        # The one deadline for the response head, whatever the protocols: --upstream-timeout, cut by a
        # gRPC caller's own deadline (Envoy's max_grpc_timeout behaviour), on every path.
        timeout = host.settings.upstream_timeout
        if grpc_timeout is not None:
            caller = grpc.timeout_seconds(grpc_timeout)
            if caller is not None and caller < timeout:
                timeout = caller
        self.response_timeout = timeout
        self.endpoint: Endpoint | None = None
        self.upstream_address: str | None = None
        self.request_size = 0
        self.response_size = 0
        self.status = 0
        self.flags = errors.NO_FLAGS
        self.finished = False
        self._timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0  # when on_timeout fires (0: no timeout running)
        self.extra_tags: dict[str, str] | None = None  # protocol-specific closing tags (gRPC's)

    # To be provided by the protocol -------------------------------------------------------------
    def attach(self, upstream: Upstream) -> None:
        raise NotImplementedError

    def local_flag(self, flag: str) -> None:
        raise NotImplementedError

    def on_timeout(self) -> None:
        raise NotImplementedError

    # Upstream -----------------------------------------------------------------------------------
    def pick_endpoint(self) -> Endpoint | None:
        """The next endpoint (round robin), counted; None after answering 503 UH when there is none."""
        endpoint = self.route.next_endpoint()
        if endpoint is None:
            _warn_no_endpoint(self.route.cluster, self.host.loop.time())
            self.local_flag(errors.NO_HEALTHY_UPSTREAM)
            return None
        self.endpoint = endpoint
        counts = self.host.stats.upstream_rq
        counts[endpoint.key] = counts.get(endpoint.key, 0) + 1
        return endpoint

    def begin(self) -> None:
        """Pick an endpoint and attach to an idle pooled connection, or open one."""
        endpoint = self.pick_endpoint()
        if endpoint is None:
            return
        conn = self.host.pool.acquire(endpoint)
        if conn is not None:
            self.attach(conn)
        else:
            self.connect()

    def connect(self) -> None:
        assert self.endpoint is not None
        future = asyncio.ensure_future(self.host.pool.connect(self.endpoint))
        future.add_done_callback(self._connected)

    def _connected(self, future: asyncio.Future[Upstream]) -> None:
        exc = asyncio.CancelledError() if future.cancelled() else future.exception()
        if self.finished:
            if exc is None:
                future.result().close()
            return
        stats = self.host.stats
        assert self.endpoint is not None
        if exc is not None:
            stats.count_endpoint(stats.upstream_cx_connect_fail, self.endpoint.key)
            self.local_flag(
                errors.NO_HEALTHY_UPSTREAM
                if isinstance(exc, ResolutionError)
                else errors.UPSTREAM_CONNECT_FAILURE
            )
            return
        stats.count_endpoint(stats.upstream_cx_total, self.endpoint.key)
        self.attach(future.result())
        self.flush_upstream()

    def flush_upstream(self) -> None:
        pass

    def start_response_timer(self) -> None:
        """From the request sent upstream to the response head: `response_timeout`, then 504 UT."""
        self.start_timer(self.response_timeout)

    def start_timer(self, seconds: float) -> None:
        """`on_timeout` in `seconds`. Most timeouts are checked by the listener's periodic sweep (a set
        insertion per request instead of a loop timer); one shorter than the sweep gets its own timer."""
        host = self.host
        if seconds < host.sweep_interval:
            self._timer = host.loop.call_later(seconds, self.fire_timer)
        else:
            self.deadline = host.loop.time() + seconds
            host.deadlines.add(self)

    def fire_timer(self) -> None:
        self._timer = None
        self.deadline = 0.0
        if not self.finished:
            self.on_timeout()

    def cancel_timer(self) -> None:
        if self.deadline:
            self.deadline = 0.0
            self.host.deadlines.discard(self)
        elif self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # The end ------------------------------------------------------------------------------------
    def record(self) -> None:
        """The exchange is over: stats, span and access log, once, after the bytes this loop turn
        queued are sent (the response's last bytes among them: its span ends when they leave)."""
        if self.finished:
            return
        self.finished = True
        self.cancel_timer()
        self.host.outbox.after(self)

    def after_send(self) -> None:
        seconds = _perf_counter() - self.started
        stats = self.host.stats
        stats.record(self.status, seconds, self.request_size, self.response_size, self.flags)
        if self.endpoint is not None and (self.status >= 500 or self.flags in _UPSTREAM_FAILURES):
            stats.count_endpoint(stats.upstream_rq_error, self.endpoint.key)
        route = self.route
        span = self.decision.span
        if span is not None and route.sink is not None:
            route.sink(
                route.tracer.finish(
                    span,
                    status=self.status,
                    request_size=self.request_size,
                    response_size=self.response_size,
                    response_flags=self.flags,
                    upstream_address=self.upstream_address,
                    tags=self.extra_tags,
                )
            )
        if route.access_log is not None:
            route.access_log(self.access_record(seconds))
        if log.isEnabledFor(_DEBUG):  # a cached check: nothing more per request at INFO
            log.debug("%s", self.debug_line(seconds))

    def debug_line(self, seconds: float) -> str:
        """One line per request at --log-level debug; a local reply says so, with its flag."""
        flags = self.flags
        origin = (
            f"local reply {flags}"
            if flags in errors.STATUS_FOR_FLAG or flags == errors.DOWNSTREAM_PROTOCOL_ERROR
            else f"upstream {self.upstream_address or '-'}"
        )
        return (
            f"{self.host.name} {self.method.decode('latin-1')} {self.target.decode('latin-1')[:256]} "
            f"{self.protocol} -> {self.status} {flags} {seconds * 1000:.1f} ms, {origin}, "
            f"x-request-id {self.decision.request_id}"
        )

    def access_record(self, seconds: float) -> dict[str, Any]:
        return {
            "start_time": time.time() - seconds,
            "direction": self.route.direction,
            "listener": self.host.name,
            "method": self.method.decode("latin-1"),
            "path": self.target.decode("latin-1"),
            "protocol": self.protocol,
            "status": self.status,
            "response_flags": self.flags,
            "duration_ms": round(seconds * 1000, 3),
            "bytes_received": self.request_size,
            "bytes_sent": self.response_size,
            "upstream_cluster": self.route.cluster,
            "upstream_host": self.upstream_address,
            "downstream_remote_address": self.peer,
            "x_request_id": self.decision.request_id,
            "trace_id": self.decision.trace_id or None,
            "span_id": self.decision.span_id or None,
            "sampled": self.decision.sampled,
        }
