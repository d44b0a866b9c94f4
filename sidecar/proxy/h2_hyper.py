"""The pure-Python codec: python-hyper's h2 `H2Connection`, adjusted to behave as the proxy expects of
either codec (`h2_codec.Codec`): a GOAWAY received leaves open streams open, every RST_STREAM h2 sends
on its own is reported as a `StreamReset` with `remote_reset=False`, and a malformed response from an
upstream resets that stream only instead of ending the connection or being relayed."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from h2.connection import ConnectionInputs, ConnectionState
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

from sidecar.proxy.head import Headers

if TYPE_CHECKING:
    from typing_extensions import Buffer  # what h2 declares receive_data to take

# RFC 9113 8.2.2: fields that belong to one HTTP/1.1 connection and are malformed in HTTP/2.
_CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)


def h2_config(*, client_side: bool) -> h2.config.H2Configuration:
    """A client's headers are validated by h2 (pseudo-headers, connection-specific fields, characters):
    that side is the hostile one. An upstream's response headers are not (h2 checks them character by
    character in Python, the largest single cost of a proxied gRPC call): `malformed_response` checks
    what makes a response unusable, and what is relayed is filtered by `head.h2_response_from_h2`.
    Outbound headers come from validated input or from us, so h2 need not check them again."""
    return h2.config.H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_inbound_headers=not client_side,
        normalize_inbound_headers=not client_side,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


def malformed_response(headers: Headers) -> bool:
    """A response head no proxy may relay (RFC 9113 8.3.2 and 8.2.2): no `:status` first, a status
    that is not three digits, another pseudo-header, or a connection-specific field."""
    if not headers or headers[0][0] != b":status":
        return True
    status = headers[0][1]
    if len(status) != 3 or not status.isdigit():
        return True
    for name, value in headers[1:]:
        if name[:1] == b":" or name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            return True
    return False


class _GoawayKeepsOpen(h2.connection.H2ConnectionStateMachine):
    """h2 closes a connection's state machine when a GOAWAY arrives, and then refuses every frame
    either way. RFC 9113 6.8 says the streams up to the GOAWAY's last-stream-id may still finish: a
    gRPC server stopping with a grace period answers its calls after the GOAWAY, a client may say
    goodbye with calls open. So a GOAWAY received leaves an open connection open; which streams may
    still start is the proxy's decision (the pool opens none on it, the downstream refuses new ones)."""

    _transitions = {
        **h2.connection.H2ConnectionStateMachine._transitions,
        (ConnectionState.CLIENT_OPEN, ConnectionInputs.RECV_GOAWAY): (None, ConnectionState.CLIENT_OPEN),
        (ConnectionState.SERVER_OPEN, ConnectionInputs.RECV_GOAWAY): (None, ConnectionState.SERVER_OPEN),
    }


class H2Connection(h2.connection.H2Connection):
    """h2's connection as the proxy drives it (see the module doc)."""

    # How many closed streams h2 remembers (to tell a frame on a stream it reset, a stream error, from one
    # on a stream never opened or ended, a connection error): 1024 as for nghttp2, not h2's 65536
    # (about 10 MB a connection once that many streams have passed).
    MAX_CLOSED_STREAMS = 1024

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        self.state_machine = _GoawayKeepsOpen()
        self.stream_errors: list[str] = []  # h2 raises instead: always empty
        self.late_events: list[h2.events.Event] = []  # h2 resets nothing while sending: always empty
        self._receiving = False
        self._self_resets: list[h2.events.StreamReset] = []

    def clear_outbound_data_buffer(self) -> None:
        """h2 calls this only on a GOAWAY received, dropping what it queued before it in the same
        read (a SETTINGS or PING acknowledgement): the connection goes on, so those frames must too."""

    def receive_data(self, data: Buffer) -> list[h2.events.Event]:
        self._receiving = True
        try:
            events: list[h2.events.Event] = super().receive_data(data)
        finally:
            self._receiving = False
        if self._self_resets:  # those h2 did not report itself
            told = {e.stream_id for e in events if isinstance(e, h2.events.StreamReset)}
            events += [e for e in self._self_resets if e.stream_id not in told]
            self._self_resets = []
        return events

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        if self._receiving:  # the proxy resets nothing inside a read: these are h2's own resets
            for frame in frames:
                if isinstance(frame, RstStreamFrame):
                    reset = h2.events.StreamReset(
                        stream_id=frame.stream_id, error_code=_code(frame.error_code), remote_reset=False
                    )
                    self._self_resets.append(reset)
        super()._prepare_for_sending(frames)

    def _receive_frame(self, frame: Any) -> list[h2.events.Event]:
        if not self.config.client_side:
            events: list[h2.events.Event] = super()._receive_frame(frame)
            return events
        try:
            events = super()._receive_frame(frame)
        except h2.exceptions.ProtocolError as exc:
            # A body longer or shorter than its content-length, or a content-length that is no
            # number: that response is malformed, the connection is not.
            if not (isinstance(exc, h2.exceptions.InvalidBodyLengthError) or "content-length" in str(exc)):
                raise
            self._malformed(frame.stream_id, getattr(frame, "flow_controlled_length", 0))
            return []
        if isinstance(frame, HeadersFrame):
            for event in events:
                if isinstance(event, h2.events.ResponseReceived) and malformed_response(event.headers):
                    self._malformed(frame.stream_id, 0)
                    return []
        return events

    def _malformed(self, stream_id: int, flow_controlled: int) -> None:
        told = len(self._self_resets)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.reset_stream(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
        if len(self._self_resets) == told:  # already closed (it ended with its head): report it all the same
            code = h2.errors.ErrorCodes.PROTOCOL_ERROR
            self._self_resets.append(
                h2.events.StreamReset(stream_id=stream_id, error_code=code, remote_reset=False)
            )
        if flow_controlled:  # the DATA that was refused still counts against the connection window
            self.acknowledge_received_data(flow_controlled, stream_id)


def _code(value: int) -> h2.errors.ErrorCodes | int:
    try:
        return h2.errors.ErrorCodes(value)
    except ValueError:
        return value
