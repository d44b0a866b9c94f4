"""In-memory harness for the HTTP/2 client path: frames in, what the proxy wrote out.

Each case runs on one of the HTTP/2 codecs (h2, and libnghttp2 where it loads). The connection is an
`http` listener's (HTTP/2 client, HTTP/1.1 upstream) in front of the strict h11
origin of fuzz/framing.py, so streams that parse go all the way through and back. The property: no
exception escapes the protocol, everything written is well-formed HTTP/2 framing, a connection the
proxy closes ends with GOAWAY, and one that got a GOAWAY with an error code is closed.
"""

from __future__ import annotations

import asyncio
import dataclasses

from hyperframe.frame import Frame, GoAwayFrame

from fuzz.framing import new_run, settle
from fuzz.harness import FakeTransport
from sidecar.proxy.h2_codec import PREFERENCE, unavailable
from sidecar.proxy.http2 import H2Downstream


def codecs() -> list[str]:
    """The HTTP/2 codecs this machine can run: each parses what the client sends."""
    return [name for name in PREFERENCE if unavailable(name) is None]


async def feed_h2(
    loop: asyncio.AbstractEventLoop, chunks: list[bytes], codec: str = "h2"
) -> tuple[bytes, bool]:
    run = new_run(loop)
    run.listener.settings = dataclasses.replace(run.listener.settings, h2_codec=codec)
    transport = FakeTransport()
    conn = H2Downstream(run.listener, upstream_h2=False)
    conn.connection_made(transport)  # type: ignore[arg-type]
    for chunk in chunks:
        if transport.closed:
            break
        conn.data_received(chunk)
        await settle(run)
    written, closed = bytes(transport.written), transport.closed
    conn.connection_lost(None)
    await settle(run)
    return written, closed


def check_h2(out: bytes, closed: bool) -> None:
    """Everything written parses as frames; a close is preceded by a GOAWAY."""
    last: Frame | None = None
    error = False
    data = memoryview(out)
    while data:
        assert len(data) >= 9, "a truncated frame header"
        frame, length = Frame.parse_frame_header(data[:9])
        assert len(data) >= 9 + length, "a truncated frame body"
        frame.parse_body(data[9 : 9 + length])
        last = frame
        error = error or (isinstance(frame, GoAwayFrame) and frame.error_code != 0)
        data = data[9 + length :]
    if closed:
        assert isinstance(last, GoAwayFrame), f"closed after {last!r}"
    assert closed or not error, "a connection error (GOAWAY with an error code) left the connection open"
