"""MeshTrace settings through `Tracer.start`: the three sampling knobs, x-client-trace-id, custom tags on
SERVER and CLIENT spans, and the headers the tracer asks the proxy to collect."""

from __future__ import annotations

import pytest

from sidecar.tracing.custom_tags import TagRule
from sidecar.tracing.decide import TRACE_HEADER_NAMES, Decision, TracerSettings, header_names_for
from sidecar.tracing.sampling import CLIENT_TRACE_ID
from tests.tracing.conftest import make_tracer

RID = "0a1b2c3d-0000-4000-8000-000000000000"  # r = 0x0a1b2c3d % 10000 = 2957
TAGS = (TagRule("team", literal="core"), TagRule("env", header=b"x-env", default="prod"))


def start(settings: TracerSettings, kind: str = "SERVER", **headers: str) -> Decision:
    tracer, _ = make_tracer(settings)
    incoming = {k.replace("_", "-").encode(): v.encode() for k, v in headers.items()}
    assert set(incoming) <= tracer.header_names  # the proxy passes only what the tracer asks for
    return tracer.start(
        kind,  # type: ignore[arg-type]
        incoming,
        method="GET",
        authority="web:8080",
        path="/",
        scheme="http",
        protocol="HTTP/1.1",
        user_agent="curl/8",
        peer_address="10.0.0.7:41000",
        upstream_cluster="localhost:8080",
        remote_service="backend" if kind == "CLIENT" else None,
    )


def test_client_trace_id_is_traced_by_the_client_knob_when_random_is_zero() -> None:
    settings = TracerSettings(sampling=100.0, client_sampling=100.0, random_sampling=0.0)
    assert start(settings, x_request_id=RID, x_client_trace_id="abc").sampled
    assert not start(settings, x_request_id=RID).sampled


def test_overall_bounds_client_traces() -> None:
    settings = TracerSettings(sampling=20.0, client_sampling=100.0, random_sampling=0.0)
    assert not start(settings, x_request_id=RID, x_client_trace_id="abc").sampled  # r 2957 >= 2000


def test_an_incoming_sampled_trace_is_never_unsampled() -> None:
    settings = TracerSettings(sampling=0.0, client_sampling=0.0, random_sampling=0.0)
    d = start(
        settings,
        x_request_id=RID,
        x_b3_traceid="463ac35c9f6413ad",
        x_b3_spanid="a2fb4a1d1a96d312",
        x_b3_sampled="1",
    )
    assert d.sampled and d.span is not None


@pytest.mark.parametrize(("random_sampling", "reads"), [(100.0, False), (10.0, True)])
def test_client_header_collected_only_when_it_matters(random_sampling: float, reads: bool) -> None:
    tracer, _ = make_tracer(TracerSettings(random_sampling=random_sampling, client_sampling=50.0))
    assert (CLIENT_TRACE_ID in tracer.header_names) is reads
    assert tracer.header_names >= TRACE_HEADER_NAMES


def test_tag_headers_are_collected_but_not_removed() -> None:
    tracer, _ = make_tracer(TracerSettings(tags=TAGS))
    assert b"x-env" in tracer.header_names
    d = start(TracerSettings(tags=TAGS), x_env="staging")
    assert b"x-env" not in d.remove  # the header still reaches the upstream


@pytest.mark.parametrize("kind", ["SERVER", "CLIENT"])
def test_custom_tags_on_every_span(kind: str) -> None:
    d = start(TracerSettings(tags=TAGS), kind, x_env="staging")
    assert d.span is not None
    assert (d.span.tags["team"], d.span.tags["env"]) == ("core", "staging")
    d = start(TracerSettings(tags=TAGS), kind)
    assert d.span is not None and d.span.tags["env"] == "prod"
    assert d.span.tags["component"] == "proxy"  # Envoy's own tags stay


def test_no_custom_tags_and_no_extra_headers_by_default() -> None:
    tracer, _ = make_tracer(TracerSettings())
    assert tracer.header_names == header_names_for("b3+w3c")  # the default mode's, nothing more
    d = start(TracerSettings())
    assert d.span is not None and "team" not in d.span.tags
