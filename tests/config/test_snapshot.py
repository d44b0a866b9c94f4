"""Snapshot building: listeners, endpoints from other dataplanes and external services, protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.config import SnapshotError, build_snapshot, resolve
from sidecar.config.snapshot import kubernetes_service_endpoint
from tests.config.helpers import FORMS, MESH, dataplane, load, trace, write

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"


def with_outbound(doc: dict[str, Any], *services: str) -> dict[str, Any]:
    doc["networking"]["outbound"] = [
        {"port": 20000 + i, "tags": {"kuma.io/service": s}} for i, s in enumerate(services)
    ]
    return doc


@pytest.mark.parametrize("form", FORMS)
def test_outbound_endpoints_protocols_and_service_name(tmp_path: Path, form: str) -> None:
    web = with_outbound(
        dataplane(
            "web-01", {"kuma.io/service": "web", "kuma.io/protocol": "http"}, {"kuma.io/service": "aaa-admin"}
        ),
        "backend",
        "mixed",
        "nobody",
        "httpbin",
    )
    docs = [
        MESH,
        web,
        dataplane("backend-02", {"kuma.io/service": "backend", "kuma.io/protocol": "http"}, port=10021),
        dataplane("backend-01", {"kuma.io/service": "backend", "kuma.io/protocol": "http"}, port=10011),
        dataplane("m-1", {"kuma.io/service": "mixed", "kuma.io/protocol": "http"}, port=10031),
        dataplane("m-2", {"kuma.io/service": "mixed", "kuma.io/protocol": "tcp"}, port=10041),
        {
            "type": "ExternalService",
            "name": "httpbin",
            "mesh": "default",
            "networking": {"address": "httpbin.org:80"},
            "tags": {"kuma.io/service": "httpbin", "kuma.io/protocol": "http"},
        },
        trace("t", {"kuma.io/service": "*"}),
    ]
    result = load(tmp_path, docs, form)
    assert result.ok, result.problems
    snap = build_snapshot(result.resources, "web-01")
    assert snap.service_name == "aaa-admin"  # alphabetically first kuma.io/service
    assert snap.node_id == "default.web-01"
    inbound = snap.inbound[1]
    assert (inbound.port, inbound.service_port, inbound.service_address, inbound.protocol) == (
        10002,
        8081,
        "127.0.0.1",
        "tcp",
    )
    by_service = {o.service: o for o in snap.outbound}
    assert by_service["backend"].endpoints == (
        "127.0.0.1:10011",
        "127.0.0.1:10021",
    )  # sorted by dataplane name
    assert by_service["backend"].protocol == "http" and by_service["backend"].traced
    assert by_service["mixed"].protocol == "tcp"
    # nobody serves it: HTTP, so a caller gets a 503 UH rather than a closed connection
    assert by_service["nobody"].endpoints == () and by_service["nobody"].protocol == "http"
    assert by_service["httpbin"].endpoints == ("httpbin.org:80",) and by_service["httpbin"].protocol == "http"
    assert by_service["backend"].address == "127.0.0.1"


def test_unknown_dataplane(tmp_path: Path) -> None:
    result = load(tmp_path, [MESH, dataplane("web-01", {"kuma.io/service": "web"})])
    with pytest.raises(SnapshotError, match='dataplane "nope" not found'):
        build_snapshot(result.resources, "nope")


def test_dataplane_from_its_own_file(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    write(
        shared,
        [
            MESH,
            trace("t", {"kuma.io/service": "*"}),
            dataplane("backend-01", {"kuma.io/service": "backend", "kuma.io/protocol": "http"}),
        ],
    )
    own = write(
        tmp_path, [with_outbound(dataplane("web-01", {"kuma.io/service": "web"}), "backend")], name="me.yaml"
    )
    snap, problems = resolve([str(shared)], dataplane_file=str(own))
    assert problems == [] and snap is not None
    assert snap.dataplane == "web-01" and snap.outbound[0].endpoints == ("127.0.0.1:10001",)


def test_repository_example_config_resolves() -> None:
    snap, problems = resolve([str(REPO_CONFIG)], dataplane="frontend-01")
    assert problems == [] and snap is not None
    assert snap.to_json()["trafficTrace"] == "trace-all-traffic"
    assert snap.to_json()["outbound"] == [
        {
            "address": "127.0.0.1",
            "port": 10002,
            "service": "backend",
            "protocol": "http",
            "endpoints": ["127.0.0.1:10011"],
        }
    ]
    db, _ = resolve([str(REPO_CONFIG)], dataplane="db-api-01")
    assert db is not None and db.traffic_trace == "trace-db-api" and db.backend is not None
    assert db.backend.name == "zipkin-sampled" and db.backend.api_version == "httpProto"


@pytest.mark.parametrize(
    ("service", "endpoint"),
    [
        ("backend_shop_svc_8080", "backend.shop.svc:8080"),
        ("db-api_kuma-trace-demo_svc_10021", "db-api.kuma-trace-demo.svc:10021"),
        ("a_b_svc_1", "a.b.svc:1"),
        ("backend_shop_svc_0", None),
        ("backend_shop_svc_65536", None),
        ("backend", None),
        ("Backend_shop_svc_80", None),  # Kubernetes names are lowercase DNS labels
        ("back_end_shop_svc_80", None),
        ("backend-_shop_svc_80", None),
        ("backend_shop_svc_80x", None),
        ("backend.shop_x_svc_80", None),
    ],
)
def test_kubernetes_service_names(service: str, endpoint: str | None) -> None:
    assert kubernetes_service_endpoint(service) == endpoint


@pytest.mark.parametrize("form", FORMS)
def test_kubernetes_service_name_resolves_to_the_service_dns_name(tmp_path: Path, form: str) -> None:
    """One Dataplane per Deployment, its address each pod's own ${POD_IP}: for a service named like a
    Kubernetes Service, peers' Dataplanes give the protocol, the Service's DNS name is the endpoint."""
    frontend = with_outbound(
        dataplane("frontend", {"kuma.io/service": "frontend_shop_svc_10001", "kuma.io/protocol": "http"}),
        "backend_shop_svc_10011",
        "payments_billing_svc_8080",
        "legacy_shop_svc_80",
        "orders",
    )
    frontend["networking"]["outbound"][1]["tags"]["kuma.io/protocol"] = "http"
    docs = [
        MESH,
        frontend,
        dataplane(
            "backend", {"kuma.io/service": "backend_shop_svc_10011", "kuma.io/protocol": "http"}, port=10011
        ),
        dataplane("orders", {"kuma.io/service": "orders", "kuma.io/protocol": "http"}, port=10031),
        {
            "type": "ExternalService",
            "name": "legacy",
            "mesh": "default",
            "networking": {"address": "legacy.example.internal:8000"},
            "tags": {"kuma.io/service": "legacy_shop_svc_80", "kuma.io/protocol": "http"},
        },
    ]
    result = load(tmp_path, docs, form)
    assert result.ok, result.problems
    outbound = [o.to_json() for o in build_snapshot(result.resources, "frontend").outbound]
    assert [(o["service"], o["endpoints"], o["protocol"]) for o in outbound] == [
        # a Dataplane in the config carries the service: its protocol, the Service's address
        ("backend_shop_svc_10011", ["backend.shop.svc:10011"], "http"),
        # no Dataplane: the Service's address, the protocol from the outbound's own tag
        ("payments_billing_svc_8080", ["payments.billing.svc:8080"], "http"),
        # an ExternalService of that name wins over the convention
        ("legacy_shop_svc_80", ["legacy.example.internal:8000"], "http"),
        # any other name: the Dataplanes' inbounds, as before
        ("orders", ["127.0.0.1:10031"], "http"),
    ]


def test_kubernetes_service_name_without_any_protocol_is_tcp(tmp_path: Path) -> None:
    web = with_outbound(dataplane("web", {"kuma.io/service": "web"}), "cache_shop_svc_6379")
    result = load(tmp_path, [MESH, web])
    (out,) = build_snapshot(result.resources, "web").outbound
    assert (out.endpoints, out.protocol, out.traced) == (("cache.shop.svc:6379",), "tcp", False)
