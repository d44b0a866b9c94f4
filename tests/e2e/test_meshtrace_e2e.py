"""End to end with MeshTrace: real `sidecar run` processes whose tracing comes from a MeshTrace (no Mesh
`tracing`, no TrafficTrace): custom tags from literals, request headers and defaults on every span, and
the client/random sampling knobs deciding by x-client-trace-id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.e2e.topology import Topology


class MeshTraceTopology(Topology):
    default: dict[str, Any] = {}

    def write_mesh(self, sampling: float, conf: dict[str, Any]) -> None:
        (self.config / "mesh.yaml").write_text(yaml.safe_dump({"type": "Mesh", "name": "default"}))
        trace = {
            "type": "MeshTrace",
            "name": "trace-all",
            "mesh": "default",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "default": {"backends": [{"type": "Zipkin", "zipkin": {"url": conf["url"]}}], **self.default},
            },
        }
        (self.config / "mesh-trace.yaml").write_text(yaml.safe_dump(trace))

    def pick_ports(self) -> None:
        super().pick_ports()
        path = self.config / "resources.yaml"
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d["type"] != "TrafficTrace"]
        path.write_text(yaml.safe_dump_all(docs))


class Tagged(MeshTraceTopology):
    default = {
        "tags": [
            {"name": "team", "literal": "core"},
            {"name": "env", "header": {"name": "X-Env", "default": "prod"}},
            {"name": "tenant", "header": {"name": "x-tenant"}},
        ]
    }


class ClientOnly(MeshTraceTopology):
    default = {"sampling": {"random": 0, "client": 100}}


async def test_custom_tags_on_every_span(tmp_path: Path) -> None:
    topo = Tagged(tmp_path)
    try:
        await topo.start()
        assert (await topo.call({"x-env": "staging"})).status == 200
        assert (await topo.call()).status == 200
        first, second = (seen["x-b3-traceid"] for seen in topo.web.seen)
        for trace_id, env in ((first, "staging"), (second, "prod")):
            spans = await topo.trace(trace_id, 3)
            assert {(s["localEndpoint"]["serviceName"], s["kind"]) for s in spans} == {
                ("web", "SERVER"),
                ("web", "CLIENT"),
                ("backend", "SERVER"),
            }
            tags = {(s["localEndpoint"]["serviceName"], s["kind"]): s["tags"] for s in spans}
            assert {t["team"] for t in tags.values()} == {"core"}
            # Each hop reads its own request: the web app forwards only the trace headers, so x-env
            # reaches web's SERVER span and the others take the default.
            assert tags["web", "SERVER"]["env"] == env
            assert tags["web", "CLIENT"]["env"] == tags["backend", "SERVER"]["env"] == "prod"
            assert all("tenant" not in s["tags"] for s in spans)  # no header, no default: no tag
        assert topo.web.seen[0]["x-env"] == "staging"  # the tag header still reaches the app
    finally:
        await topo.stop()


async def test_client_sampling_traces_only_requests_with_a_client_trace_id(tmp_path: Path) -> None:
    topo = ClientOnly(tmp_path)
    try:
        await topo.start()
        assert (await topo.call()).status == 200
        assert (await topo.call({"x-client-trace-id": "abc"})).status == 200
        plain, forced = topo.web.seen
        assert plain["x-b3-sampled"] == "0" and forced["x-b3-sampled"] == "1"
        assert topo.backend.seen[0]["x-b3-sampled"] == "0"  # the next hop follows the decision
        spans = await topo.trace(forced["x-b3-traceid"], 3)
        assert len(spans) == 3
        assert topo.store.trace(plain["x-b3-traceid"]) in (None, [])
    finally:
        await topo.stop()
