"""MeshTrace in a running sidecar: hot reload of MeshTrace changes (a bad edit keeps the running
config), the tracer getting the sampling knobs and tag headers, and an OpenTelemetry backend that never
reaches the Zipkin reporter."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.runtime import RunOptions, Runtime
from tests.util import free_port


def meshtrace(backends: list[dict[str, Any]], **default: Any) -> dict[str, Any]:
    return {
        "type": "MeshTrace",
        "name": "mt",
        "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"}, "default": {"backends": backends, **default}},
    }


def zipkin(port: int) -> list[dict[str, Any]]:
    return [{"type": "Zipkin", "zipkin": {"url": f"http://127.0.0.1:{port}/api/v2/spans"}}]


def write(path: Path, port: int, app_port: int, trace: dict[str, Any]) -> None:
    dataplane = {
        "type": "Dataplane",
        "name": "web-01",
        "mesh": "default",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {
                    "port": port,
                    "servicePort": app_port,
                    "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http"},
                }
            ],
        },
    }
    path.write_text(yaml.safe_dump_all([{"type": "Mesh", "name": "default"}, dataplane, trace]))


async def test_meshtrace_reload(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "all.yaml"
    port, app_port, first, second = free_port(), free_port(), free_port(), free_port()
    write(config, port, app_port, meshtrace(zipkin(first)))
    runtime = Runtime(RunOptions(config=[str(config)], dataplane="web-01", admin_port=0, watch=False))
    await runtime.start()
    try:
        assert runtime.reporter is not None and runtime.reporter.url.endswith(f":{first}/api/v2/spans")
        assert runtime.config_dump()["meshTraces"] == ["mt"]

        tags = [{"name": "env", "header": {"name": "X-Env", "default": "prod"}}]
        write(
            config,
            port,
            app_port,
            meshtrace(zipkin(second), sampling={"random": 10, "client": 50}, tags=tags),
        )
        assert await runtime.reload()
        assert runtime.reporter is not None and runtime.reporter.url.endswith(f":{second}/api/v2/spans")
        [listener] = runtime.listeners.values()
        tracer = listener.route.tracer
        assert {b"x-env", b"x-client-trace-id"} <= tracer.header_names
        assert runtime.config_dump()["backend"]["sampling"] == {
            "overall": 100.0,
            "client": 50.0,
            "random": 10.0,
        }

        before = runtime.snapshot
        write(config, port, app_port, meshtrace(zipkin(first), sampling={"overall": 101}))
        with caplog.at_level(logging.WARNING, logger="sidecar"):
            assert not await runtime.reload()  # a bad edit keeps the running config
        assert "spec.default.sampling.overall: must be between 0 and 100" in caplog.text
        assert runtime.snapshot is before and runtime.counters.reloads_failed == 1

        caplog.clear()
        write(
            config,
            port,
            app_port,
            meshtrace([{"type": "OpenTelemetry", "openTelemetry": {"endpoint": "127.0.0.1:4317"}}]),
        )
        with caplog.at_level(logging.WARNING, logger="sidecar"):
            assert await runtime.reload()
        # An OpenTelemetry backend gets the OTLP reporter, never the Zipkin one.
        reporter = runtime.reporter
        assert reporter is not None and reporter.stats.protocol == "otlp_grpc"
        assert "127.0.0.1:4317" in reporter.url
        assert runtime.config_dump()["backend"]["type"] == "openTelemetry"

        write(config, port, app_port, meshtrace([]))
        assert await runtime.reload()
        assert runtime.reporter is None and runtime.config_dump()["backend"] is None
        assert runtime.config_dump()["policy"] == "MeshTrace"
    finally:
        await runtime.shutdown()
