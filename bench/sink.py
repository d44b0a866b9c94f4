"""A span sink for the benchmark: `sink.py PORT`. Reads every POST whole (Zipkin JSON to /api/v2/spans,
OTLP/HTTP protobuf to /v1/traces), counts its spans and answers 202 (OTLP: 200 with an empty
ExportTraceServiceResponse); GET /stats says how many were accepted. No storage, no JSON decoding; an
OTLP body is walked only down to its spans' lengths.

Why: on the 2 shared cores the project's collector (aiohttp, JSON decode, a trace store) costs ~10 us of
CPU per span, more than the sidecar's own tracing, and in a real deployment Jaeger runs elsewhere. The
spans still cross the wire and are counted, so "spans/req" stays a delivery check. `bench/run.py
--collector full` measures with the real collector instead.
"""

from __future__ import annotations

import asyncio
import sys

import httptools

accepted = 0
JSON_KEY = b'"traceId"'  # once per span in a JSON batch: as a value it would be escaped (\"traceId\")


def _fields(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(field number, start, end) of the length-delimited fields of one protobuf message."""
    out = []
    pos = start
    while pos < end:
        key = shift = 0
        while True:
            b = data[pos]
            pos += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        wire = key & 7
        if wire == 0:
            while data[pos] & 0x80:
                pos += 1
            pos += 1
            continue
        if wire in (1, 5):
            pos += 8 if wire == 1 else 4
            continue
        size = shift = 0
        while True:
            b = data[pos]
            pos += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out.append((key >> 3, pos, pos + size))
        pos += size
    return out


def otlp_spans(body: bytes) -> int:
    """Spans in an ExportTraceServiceRequest: resource_spans(1) > scope_spans(2) > spans(2)."""
    n = 0
    for number, start, end in _fields(body, 0, len(body)):
        if number == 1:
            for inner, s, e in _fields(body, start, end):
                if inner == 2:
                    n += sum(1 for f, _, _ in _fields(body, s, e) if f == 2)
    return n


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.body = []
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        global accepted
        if self.url.startswith(b"/stats"):
            payload = b'{"accepted": %d}' % accepted
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                                 % (len(payload), payload))  # fmt: skip
            return
        if self.url.startswith(b"/v1/traces"):
            accepted += otlp_spans(b"".join(self.body))
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
            )
            return
        accepted += b"".join(self.body).count(JSON_KEY)
        self.transport.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1])))
