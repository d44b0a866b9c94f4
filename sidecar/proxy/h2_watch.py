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
        if self._head:  # the rest of a frame header that came in part
            head = self._head + data[: _FRAME_HEADER - len(self._head)]
            pos = len(head) - len(self._head)
            if len(head) < _FRAME_HEADER:
                self._partial(head)
                return
            self._head = b""
            self._frame(head[3], head[4], int.from_bytes(head[:3], "big"))
        skip = self._skip
        while True:  # whole frame headers read in place: the common case, kept cheap
            if skip:
                if skip > size - pos:
                    self._skip = skip - (size - pos)
                    return
                pos += skip
                skip = 0
                if self._ends:
                    self.open = self._ends = False
            if pos >= size:
                self._skip = 0
                return
            if size - pos < _FRAME_HEADER:
                self._skip = 0
                self._partial(data[pos:])
                return
            kind, flags = data[pos + 3], data[pos + 4]
            skip = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
            pos += _FRAME_HEADER
            if kind == _HEADERS or (kind == _CONTINUATION and self.open):
                self.open = True
                self._ends = bool(flags & _END_HEADERS)
                if not skip and self._ends:
                    self.open = self._ends = False
            else:
                self.open = self._ends = False

    def _partial(self, head: bytes) -> None:
        self._head = head
        if len(head) > 3 and head[3] == _HEADERS:
            self.open = True

    def _frame(self, kind: int, flags: int, length: int) -> None:
        if kind == _HEADERS or (kind == _CONTINUATION and self.open):
            self.open = True
            self._ends = bool(flags & _END_HEADERS)
        else:
            self.open = self._ends = False
        self._skip = length
        if not length and self._ends:
            self.open = self._ends = False
