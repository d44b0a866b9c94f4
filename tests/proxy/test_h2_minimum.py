"""The oldest h2 the project accepts (pyproject.toml) is one the codecs work with: the nghttp2 codec
builds h2's event classes with keyword arguments, which h2 takes from 4.3 (with 4.1 and 4.2 every
request vanished). The whole HTTP/2 suite was run against h2 4.3.0 too (docs/http2.md says how)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import h2.events

MINIMUM = (4, 3)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def test_the_declared_minimum_is_the_real_one() -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    [spec] = [d for d in project["project"]["dependencies"] if re.match(r"h2\b", d)]
    lower = re.search(r">=\s*([\d.]+)", spec)
    assert lower is not None and _version(lower.group(1)) >= MINIMUM, spec


def test_the_installed_h2_takes_the_keyword_arguments_the_codec_passes() -> None:
    assert _version(metadata.version("h2")) >= MINIMUM
    built = [
        h2.events.RequestReceived(stream_id=1, headers=[]),
        h2.events.ResponseReceived(stream_id=1, headers=[]),
        h2.events.InformationalResponseReceived(stream_id=1, headers=[]),
        h2.events.TrailersReceived(stream_id=1, headers=[]),
        h2.events.DataReceived(stream_id=1, data=b"", flow_controlled_length=0),
        h2.events.StreamEnded(stream_id=1),
        h2.events.StreamReset(stream_id=1, error_code=0, remote_reset=False),
        h2.events.WindowUpdated(stream_id=1, delta=1),
        h2.events.PingReceived(ping_data=b""),
    ]
    assert [getattr(e, "stream_id", 1) for e in built] == [1] * len(built)
