"""Span reporting: batched, bounded, retrying requests to one backend (the only I/O tracing causes),
over Zipkin v2 HTTP, OTLP/HTTP or OTLP/gRPC."""

from sidecar.reporting.reporter import Reporter
from sidecar.reporting.settings import ReporterSettings, SettingsError
from sidecar.reporting.stats import ReporterStats
from sidecar.reporting.transports import otlp_transport, otlp_url

__all__ = ["Reporter", "ReporterSettings", "ReporterStats", "SettingsError", "otlp_transport", "otlp_url"]
