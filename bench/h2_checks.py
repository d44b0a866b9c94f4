"""The cost of the checks the HTTP/2 hardening put on the hot path, each timed alone, per proxied gRPC
unary call: the header-block watch on the client's read, the scan of an upstream read's events for
streams the codec reset, and nghttp2's want_read/want_write after each read on both sides.

    .venv/bin/python bench/h2_checks.py [RUNS]

Compare the total with the proxy's own µs per call from bench/bench_h2_proxy.py, run beside it.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

import h2.events
import hpack
from hyperframe.frame import DataFrame, HeadersFrame

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.proxy import ProxySettings, h2_nghttp2
from sidecar.proxy.h2_codec import new_codec
from sidecar.proxy.h2_upstream import _without_failed
from sidecar.proxy.h2_watch import HeaderBlockWatch


def main(runs: int) -> None:
    head = HeadersFrame(1)
    head.data = hpack.Encoder().encode(
        [(":method", "POST"), (":scheme", "http"), (":path", "/t.Echo/Ping"), (":authority", "a"),
         ("content-type", "application/grpc"), ("te", "trailers")]
    )  # fmt: skip
    head.flags.add("END_HEADERS")
    body = DataFrame(1)
    body.data = b"\0\0\0\0\x20" + b"x" * 32
    body.flags.add("END_STREAM")
    read = head.serialize() + body.serialize()
    watch = HeaderBlockWatch(skip=0)
    events = [
        h2.events.ResponseReceived(stream_id=1, headers=[]),
        h2.events.DataReceived(stream_id=1, data=b"", flow_controlled_length=0),
        h2.events.TrailersReceived(stream_id=1, headers=[]),
        h2.events.StreamEnded(stream_id=1),
    ]
    timed = {
        "watch.feed, one client read": lambda: watch.feed(read),
        "scan of an upstream read's events": lambda: _without_failed(events),
    }
    if h2_nghttp2.available():
        conn = new_codec(ProxySettings(h2_codec="nghttp2"), client_side=False)
        lib, session = conn.lib, conn.session  # type: ignore[attr-defined]
        timed["want_read"] = lambda: lib.nghttp2_session_want_read(session)
        timed["want_write"] = lambda: lib.nghttp2_session_want_write(session)
    cost = {name: timeit.timeit(f, number=runs) / runs * 1e6 for name, f in timed.items()}
    for name, us in cost.items():
        print(f"{name:<36} {us:6.2f} us")
    per_call = cost["watch.feed, one client read"] + cost["scan of an upstream read's events"]
    per_call += 2 * (cost.get("want_read", 0) + cost.get("want_write", 0))  # one read on each side
    print(f"{'per proxied call':<36} {per_call:6.2f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
