"""What either HTTP/2 codec reports beyond h2's own classes: errors that carry their metric kind and
error code, the event for a connection that failed outside a read, and the kind of any h2 exception."""

from __future__ import annotations

import h2.errors
import h2.events
import h2.exceptions


class CodecError(h2.exceptions.ProtocolError):
    """A connection error named by its metric kind (`ListenerStats.h2_errors`) and its GOAWAY code."""

    def __init__(
        self, kind: str, message: str, code: h2.errors.ErrorCodes = h2.errors.ErrorCodes.PROTOCOL_ERROR
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.error_code = code


class CodecFailed(h2.events.Event):
    """The connection failed while sending (a failing callback, the library out of memory): the owner
    closes it as after a connection error raised by `receive_data`."""

    def __init__(self, error: CodecError) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"<CodecFailed {self.error.kind}: {self.error}>"


# h2's exception classes that name the abuse themselves.
_KINDS: list[tuple[type[Exception], str]] = [
    (h2.exceptions.DenialOfServiceError, "header_list_too_large"),
    (h2.exceptions.FlowControlError, "flow_control"),
    (h2.exceptions.TooManyStreamsError, "too_many_streams"),
    (h2.exceptions.StreamClosedError, "stream_id_reuse"),
    (h2.exceptions.StreamIDTooLowError, "stream_id_reuse"),
    (h2.exceptions.FrameTooLargeError, "frame_size"),
]


def kind_of(exc: h2.exceptions.ProtocolError) -> str:
    """The metric label of a connection error: the kind a CodecError carries, else h2's class; h2
    words its preamble and CONTINUATION errors only in their text."""
    if isinstance(exc, CodecError):
        return exc.kind
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    text = str(exc).lower()
    if "preamble" in text:
        return "bad_preface"
    if "continuation" in text:
        return "continuation_flood"
    if "header" in text:
        return "bad_headers"
    return "protocol_error"
