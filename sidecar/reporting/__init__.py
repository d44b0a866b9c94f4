"""Span reporting: batched, bounded, retrying Zipkin v2 POSTs (the only I/O tracing causes)."""

from sidecar.reporting.reporter import Reporter
from sidecar.reporting.settings import ReporterSettings, SettingsError
from sidecar.reporting.stats import ReporterStats

__all__ = ["Reporter", "ReporterSettings", "ReporterStats", "SettingsError"]
