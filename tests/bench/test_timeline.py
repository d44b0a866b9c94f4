"""bench/timeline.py's parser: requests followed through a proxy's system calls, as strace prints them."""

from __future__ import annotations

import pytest

from bench.timeline import parse, summarize

# Two requests reported by one poll (a burst), forwarded at the end of the turn, answered in the next
# turn; one EAGAIN read and a timer wake-up in between; nginx-style recvfrom/writev for the second.
LOG = """\
100.000000 epoll_pwait(3, [], 1024, 100, NULL, 8) = 0 <0.100000>
100.100000 epoll_pwait(3, [{events=EPOLLIN, data={u32=15, u64=15}}, {events=EPOLLIN, data={u32=16, u64=16}}], 1024, 100, NULL, 8) = 2 <0.000010>
100.100020 read(15, "GET / HTTP/1.1\\r\\n"..., 256000) = 112 <0.000005>
100.100040 recvfrom(16, "POST /a HTTP/1.1"..., 1024, 0, NULL, NULL) = 140 <0.000005>
100.100045 read(16, 0x7f0000000000, 256000) = -1 EAGAIN (Resource temporarily unavailable) <0.000002>
100.100060 write(30, "GET / HTTP/1.1\\r\\n"..., 339) = 339 <0.000010>
100.100080 writev(31, [{iov_base="POST /a HTTP/1.1"..., iov_len=300}], 1) = 300 <0.000010>
100.100300 epoll_pwait(3, [{events=EPOLLIN, data={u32=31, u64=31}}, {events=EPOLLIN, data={u32=30, u64=30}}], 1024, 100, NULL, 8) = 2 <0.000010>
100.100320 read(31, "HTTP/1.1 201 Cre"..., 256000) = 90 <0.000005>
100.100340 read(30, "HTTP/1.1 200 OK\\r"..., 256000) = 90 <0.000005>
100.100360 write(15, "HTTP/1.1 200 OK\\r"..., 200) = 200 <0.000010>
100.100380 write(16, "HTTP/1.1 201 Cre"..., 200) = 200 <0.000010>
"""


def test_each_request_is_followed_through_its_four_system_calls() -> None:
    tl = parse(LOG.splitlines())
    assert [(r.client, r.upstream, r.position) for r in tl.done] == [(15, 30, 1), (16, 31, 2)]
    first, second = tl.done
    assert first.ready == pytest.approx(100.10001)  # the poll's return, not its start
    assert (first.read, first.up_write, first.up_read, first.client_write) == (
        100.10002,
        100.10006,
        100.10034,
        100.10036,
    )
    assert second.up_read == 100.10032 and second.client_write == 100.10038
    assert tl.polls == 2 and tl.reads_per_turn == {2: 1, 0: 1}


def test_the_summary_gives_each_step_and_the_turns() -> None:
    text = summarize("proxy", parse(LOG.splitlines()))
    assert "2 requests followed, 2 polls" in text
    assert "turns by client reads held: 2: 1" in text
    step = next(line for line in text.splitlines() if "client read -> upstream write" in line)
    assert step.split()[-3:] == ["40", "40", "40"]  # p50, p90, p99 in µs: 40 and 40 (the higher median)


def test_nothing_followed_is_said_plainly() -> None:
    assert "no request followed" in summarize("proxy", parse(["garbage\n"]))
