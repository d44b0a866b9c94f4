"""Frame boundaries of a client's HTTP/2 input, followed only far enough to tell whether a header block
is unfinished (a HEADERS frame whose block, with its CONTINUATIONs, has not fully arrived), the same way
for every codec. No I/O: the connection feeds it what it reads and reads `open`."""

from __future__ import annotations

_HEADERS, _CONTINUATION = 0x1, 0x9
_END_HEADERS = 0x4
_FRAME_HEADER = 9
PREFACE_SIZE = 24  # the client connection preface, skipped first


class HeaderBlockWatch:
    """`open` is true from the first byte of a HEADERS frame's header until the last byte of the frame
    that carries END_HEADERS (RFC 9113 6.2, 6.10: nothing else may come in between)."""

    __slots__ = ("_ends", "_head", "_skip", "open")

    def __init__(self, skip: int = PREFACE_SIZE) -> None:
        self._skip = skip  # bytes of the current frame's payload (or of the preface) still to come
        self._head = b""  # a frame header received in part
        self._ends = False  # the current frame carries END_HEADERS
        self.open = False

    def feed(self, data: bytes) -> None:
        pos, size = 0, len(data)
        while pos < size:
            if self._skip:
                take = min(self._skip, size - pos)
                self._skip -= take
                pos += take
                if not self._skip and self._ends:
                    self.open = self._ends = False
                continue
            head = self._head + data[pos : pos + _FRAME_HEADER - len(self._head)]
            pos += len(head) - len(self._head)
            if len(head) < _FRAME_HEADER:
                self._head = head
                if head[3:4] and head[3] == _HEADERS:
                    self.open = True
                return
            self._head = b""
            kind, flags = head[3], head[4]
            if kind == _HEADERS or (kind == _CONTINUATION and self.open):
                self.open = True
                self._ends = bool(flags & _END_HEADERS)
            else:
                self.open = self._ends = False
            self._skip = int.from_bytes(head[:3], "big")
            if not self._skip and self._ends:
                self.open = self._ends = False
