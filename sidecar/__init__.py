"""A tracing sidecar proxy with Kuma's TrafficTrace semantics (B3 propagation, Zipkin v2 spans)."""

__version__ = "0.1.0"
