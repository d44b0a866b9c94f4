"""In-memory trace store with Zipkin's query semantics and bounded memory (oldest traces evicted)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

_HEX = frozenset("0123456789abcdef")


class InvalidSpan(ValueError):
    pass


def normalize_trace_id(trace_id: str) -> str:
    """A 128-bit id whose high half is zero is the same trace as its 64-bit low half (padded proto ids)."""
    trace_id = trace_id.lower()
    if len(trace_id) == 32 and trace_id.startswith("0" * 16):
        return trace_id[16:]
    return trace_id


def check_span(span: Any) -> dict[str, Any]:
    if not isinstance(span, dict):
        raise InvalidSpan("a span must be a JSON object")
    trace_id, span_id = span.get("traceId"), span.get("id")
    if (
        not isinstance(trace_id, str)
        or len(trace_id) not in (16, 32)
        or not _HEX.issuperset(trace_id.lower())
    ):
        raise InvalidSpan(f"traceId must be 16 or 32 hex characters, got {trace_id!r}")
    if not isinstance(span_id, str) or len(span_id) != 16 or not _HEX.issuperset(span_id.lower()):
        raise InvalidSpan(f"id must be 16 hex characters, got {span_id!r}")
    span["traceId"] = normalize_trace_id(trace_id)
    return span


class TraceStore:
    def __init__(self, max_spans: int = 200_000) -> None:
        self.max_spans = max_spans
        self._traces: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.span_count = 0
        self.accepted = 0  # spans ever accepted, including evicted ones

    def add(self, spans: Iterable[dict[str, Any]]) -> int:
        n = 0
        for span in spans:
            trace = self._traces.get(span["traceId"])
            if trace is None:
                trace = self._traces[span["traceId"]] = []
            trace.append(span)
            n += 1
        self.span_count += n
        self.accepted += n
        while self.span_count > self.max_spans and self._traces:
            _, evicted = self._traces.popitem(last=False)
            self.span_count -= len(evicted)
        return n

    def trace(self, trace_id: str) -> list[dict[str, Any]] | None:
        return self._traces.get(normalize_trace_id(trace_id))

    def services(self) -> list[str]:
        names = {
            s.get("localEndpoint", {}).get("serviceName")
            for spans in self._traces.values()
            for s in spans
            if s.get("localEndpoint")
        }
        return sorted(n for n in names if n)

    def traces(
        self,
        service_name: str | None = None,
        span_name: str | None = None,
        end_ts_ms: int | None = None,
        lookback_ms: int | None = None,
        limit: int = 10,
    ) -> list[list[dict[str, Any]]]:
        """Newest traces first, each filtered like Zipkin's /api/v2/traces."""
        out: list[list[dict[str, Any]]] = []
        for spans in reversed(self._traces.values()):
            if service_name and not any(
                s.get("localEndpoint", {}).get("serviceName") == service_name for s in spans
            ):
                continue
            if span_name and not any(s.get("name") == span_name for s in spans):
                continue
            if end_ts_ms is not None:
                start = min((s.get("timestamp", 0) for s in spans), default=0) // 1000
                lookback = lookback_ms if lookback_ms is not None else 24 * 3600 * 1000
                if not end_ts_ms - lookback <= start <= end_ts_ms:
                    continue
            out.append(spans)
            if len(out) >= limit:
                break
        return out
