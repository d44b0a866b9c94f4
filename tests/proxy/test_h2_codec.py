"""Which HTTP/2 codec a connection gets: libnghttp2 where it loads (auto), h2 when asked for or when the
library is missing; `sidecar run --h2-codec nghttp2` without the library is a one-line error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sidecar.cli import main
from sidecar.proxy import ProxySettings, h2_nghttp2
from sidecar.proxy.h2_codec import codec_name, new_codec
from sidecar.proxy.h2_hyper import H2Connection

needs_nghttp2 = pytest.mark.skipif(not h2_nghttp2.available(), reason="libnghttp2 does not load here")


@needs_nghttp2
def test_auto_picks_nghttp2_where_it_loads() -> None:
    conn = new_codec(ProxySettings(), client_side=False)
    assert isinstance(conn, h2_nghttp2.NgConnection)
    assert codec_name(ProxySettings()).startswith("nghttp2")


@needs_nghttp2
def test_a_dropped_connection_frees_its_session_at_once() -> None:
    before = len(h2_nghttp2._connections)
    conns = [new_codec(ProxySettings(), client_side=bool(i % 2)) for i in range(100)]
    assert len(h2_nghttp2._connections) == before + 100
    del conns  # no reference cycle: freed now, not at the next collection
    assert len(h2_nghttp2._connections) == before


# Everything a running sidecar imports, then the codec loaded at start-up for each choice.
_IMPORTS = """
import sys
import sidecar.cli, sidecar.runtime, sidecar.serve, sidecar.reporting.transports
from sidecar.proxy import ProxySettings
from sidecar.proxy.h2_codec import load_codec
load_codec(ProxySettings(h2_codec=sys.argv[1]))
print("h2.connection" in sys.modules)
"""


@pytest.mark.parametrize(("choice", "loaded"), [("nghttp2", "False"), ("h2", "True")])
def test_h2s_connection_machinery_is_imported_only_for_the_h2_codec(choice: str, loaded: str) -> None:
    """1.5 MB of RSS that a sidecar on libnghttp2 (or OTLP/HTTP) never uses; with the h2 codec it is
    imported at start-up, not on the first HTTP/2 connection."""
    out = subprocess.run([sys.executable, "-c", _IMPORTS, choice], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == loaded


def test_h2_when_asked_for() -> None:
    assert isinstance(new_codec(ProxySettings(h2_codec="h2"), client_side=True), H2Connection)
    assert codec_name(ProxySettings(h2_codec="h2")) == "h2 (pure Python)"


def test_auto_falls_back_to_h2_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h2_nghttp2, "_library", None)
    monkeypatch.setattr(h2_nghttp2, "_load_error", "libnghttp2.so.14: cannot open shared object file")
    assert isinstance(new_codec(ProxySettings(), client_side=False), H2Connection)
    assert codec_name(ProxySettings()) == (
        "h2 (pure Python); libnghttp2 not loaded: libnghttp2.so.14: cannot open shared object file"
    )


def test_nghttp2_asked_for_but_missing_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(h2_nghttp2, "_library", None)
    monkeypatch.setattr(h2_nghttp2, "_load_error", "libnghttp2.so.14: cannot open shared object file")
    assert main(["run", "--config", "c", "--dataplane", "d", "--h2-codec", "nghttp2"]) == 2
    assert capsys.readouterr().err == (
        "sidecar run: --h2-codec nghttp2: libnghttp2.so.14: cannot open shared object file\n"
    )


@needs_nghttp2
def test_an_answer_to_a_stream_the_client_reset_is_refused_and_holds_nothing() -> None:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.exceptions

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server = new_codec(ProxySettings(), client_side=False)
    assert isinstance(server, h2_nghttp2.NgConnection)
    server.initiate_connection()
    client.send_headers(
        1, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
    )
    client.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    events = server.receive_data(client.data_to_send())
    assert [type(e).__name__ for e in events][-2:] == ["RequestReceived", "StreamReset"]
    with pytest.raises(h2.exceptions.StreamClosedError):
        server.send_headers(1, [(b":status", b"200")])
    assert not server._out and server._buffered == 0


def test_the_fall_back_to_h2_is_logged_once_with_what_was_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from sidecar.proxy import h2_codec

    monkeypatch.setattr(h2_nghttp2, "_library", None)
    monkeypatch.setattr(h2_nghttp2, "_load_error", "libnghttp2.so.14 lacks nghttp2_session_want_write")
    monkeypatch.setattr(h2_codec, "_fallback_logged", False)
    with caplog.at_level(logging.WARNING, "sidecar.proxy"):
        for _ in range(3):
            assert isinstance(new_codec(ProxySettings(), client_side=False), H2Connection)
    assert [r.getMessage() for r in caplog.records] == [
        "HTTP/2 codec nghttp2 not used: libnghttp2.so.14 lacks nghttp2_session_want_write"
    ]


def test_codec_names_come_from_one_place() -> None:
    from sidecar.proxy import h2_codec

    assert h2_codec.parse_choice(" NGHTTP2 ") == "nghttp2"
    with pytest.raises(ValueError, match="choose auto, nghttp2 or h2"):
        h2_codec.parse_choice("nghttp3")
    assert set(h2_codec.PREFERENCE) == set(h2_codec.DESCRIPTIONS) == set(h2_codec.CHOICES) - {"auto"}


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, 10.0),
        (["--request-headers-timeout", "2.5"], {}, 2.5),
        ([], {"SIDECAR_REQUEST_HEADERS_TIMEOUT": "4"}, 4.0),
    ],
    ids=["default", "flag", "variable"],
)
def test_request_headers_timeout_reaches_the_proxy_settings(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], expected: float
) -> None:
    import sidecar.serve

    got: list[ProxySettings] = []
    monkeypatch.setattr(sidecar.serve, "setup_logging", lambda level: None)
    monkeypatch.setattr(sidecar.serve, "run", lambda options: got.append(options.proxy) or 0)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["run", "--config", "c", "--dataplane", "d", "--h2-codec", "h2", *argv]) == 0
    assert got[0].header_timeout == expected
