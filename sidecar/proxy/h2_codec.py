"""Which HTTP/2 codec a connection gets, decided here only: the names `--h2-codec` takes, the interface
every codec offers the proxy (`Codec`), and one constructor per codec. A codec is one module behind this
interface (`h2_nghttp2` for libnghttp2, `h2_hyper` for python-hyper's h2); adding one is a row below."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import h2.events
import h2.settings

from sidecar.proxy import h2_nghttp2
from sidecar.proxy.head import Headers
from sidecar.proxy.settings import ProxySettings

log = logging.getLogger("sidecar.proxy")

NGHTTP2, H2 = "nghttp2", "h2"
AUTO = "auto"
CHOICES = (AUTO, NGHTTP2, H2)  # `--h2-codec`; auto: the first of PREFERENCE that loads
PREFERENCE = (NGHTTP2, H2)
DESCRIPTIONS = {NGHTTP2: "nghttp2 (libnghttp2 through ctypes)", H2: "h2 (pure Python)"}


class Codec(Protocol):
    """What the proxy uses of an HTTP/2 codec: h2's `H2Connection` interface, plus
    `stream_errors` (streams the codec reset for what the peer sent, for the owner to count) and
    `late_events` (events that arose while sending, for the owner to take)."""

    @property
    def max_outbound_frame_size(self) -> int: ...
    @property
    def highest_inbound_stream_id(self) -> int: ...
    @property
    def remote_settings(self) -> Any: ...
    @property
    def stream_errors(self) -> list[str]: ...
    @property
    def late_events(self) -> list[h2.events.Event]: ...
    def initiate_connection(self) -> None: ...
    def increment_flow_control_window(self, increment: int) -> None: ...
    def receive_data(self, data: bytes) -> list[h2.events.Event]: ...
    def data_to_send(self) -> bytes: ...
    def get_next_available_stream_id(self) -> int: ...
    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None: ...
    def send_data(self, stream_id: int, data: memoryview) -> None: ...
    def end_stream(self, stream_id: int) -> None: ...
    def local_flow_control_window(self, stream_id: int) -> int: ...
    def reset_stream(self, stream_id: int, error_code: int = 0) -> None: ...
    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None: ...
    def close_connection(self, error_code: int = 0) -> None: ...


def parse_choice(text: str) -> str:
    """`--h2-codec`'s value, checked."""
    choice = text.strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"{text!r}: choose {', '.join(CHOICES[:-1])} or {CHOICES[-1]}")
    return choice


def unavailable(name: str) -> str | None:
    """Why codec `name` cannot run here (None: it can)."""
    return h2_nghttp2.load_error() if name == NGHTTP2 else None


_fallback_logged = False


def resolve(choice: str) -> str:
    """The codec that runs for `choice`: itself, or for auto the first that loads (once, one log line
    naming what kept a preferred codec out)."""
    global _fallback_logged
    if choice != AUTO:
        return choice
    for name in PREFERENCE:
        why = unavailable(name)
        if why is None:
            return name
        if not _fallback_logged:
            _fallback_logged = True
            log.warning("HTTP/2 codec %s not used: %s", name, why)
    return H2


def codec_name(settings: ProxySettings) -> str:
    name = resolve(settings.h2_codec)
    why = None
    if settings.h2_codec == AUTO:
        why = next((unavailable(n) for n in PREFERENCE[: PREFERENCE.index(name)] if unavailable(n)), None)
    return DESCRIPTIONS[name] + (f"; libnghttp2 not loaded: {why}" if why else "")


def _initial(settings: ProxySettings) -> dict[h2.settings.SettingCodes, int]:
    return {
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: settings.h2_max_concurrent_streams,
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: settings.h2_stream_window,
        h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_bytes,
        h2.settings.SettingCodes.ENABLE_PUSH: 0,
    }


def _new_nghttp2(settings: ProxySettings, client_side: bool) -> Codec:
    return h2_nghttp2.NgConnection(
        client_side=client_side,
        settings={int(k): v for k, v in _initial(settings).items()},
        max_header_bytes=settings.max_header_bytes,
        max_resets=settings.h2_max_resets,
    )


def load_codec(settings: ProxySettings) -> None:
    """Import the codec that will run, at start-up rather than on the first HTTP/2 connection. The h2
    codec's connection machinery (1.5 MB of RSS) is imported only when that codec is the one."""
    if resolve(settings.h2_codec) == H2:
        import sidecar.proxy.h2_hyper  # noqa: F401


def _new_h2(settings: ProxySettings, client_side: bool) -> Codec:
    from sidecar.proxy.h2_hyper import H2Connection, h2_config  # imported at start-up by load_codec

    conn = H2Connection(h2_config(client_side=client_side))
    conn.local_settings = h2.settings.Settings(client=client_side, initial_values=_initial(settings))
    return conn


_CONSTRUCTORS = {NGHTTP2: _new_nghttp2, H2: _new_h2}


def new_codec(settings: ProxySettings, *, client_side: bool) -> Codec:
    return _CONSTRUCTORS[resolve(settings.h2_codec)](settings, client_side)
