"""INTERFACE STUB written by the lead; the reporting helper replaces the bodies (keep the names)."""

from __future__ import annotations


class Reporter:
    """Ships encoded spans of one backend in batches; `submit` never blocks and never raises."""

    def submit(self, span: bytes) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def aclose(self, timeout: float = 2.0) -> None:
        """Final flush with a deadline, then close the HTTP session."""
        raise NotImplementedError
