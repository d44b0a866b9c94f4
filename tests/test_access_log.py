"""The access-log writer (sidecar/proxy/access_log.py): Envoy's %START_TIME% form, one JSON line each."""

from __future__ import annotations

import json
from pathlib import Path

from sidecar.proxy.access_log import AccessLog, iso_time


def test_start_time_is_iso8601_utc_with_milliseconds() -> None:
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1714564800.1234) == "2024-05-01T12:00:00.123Z"


def test_lines_are_json_with_the_time_converted(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    log = AccessLog(str(path))
    log({"start_time": 1714564800.5, "status": 200})
    log({"start_time": "already text", "status": 503})
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"start_time": "2024-05-01T12:00:00.500Z", "status": 200},
        {"start_time": "already text", "status": 503},
    ]
    assert log.lines == 2
