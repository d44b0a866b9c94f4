"""Log levels by Envoy's names (trace, debug, info, warning|warn, error, critical, off) for --log-level,
SIDECAR_LOG_LEVEL and POST /logging?level=, and the one place that applies them."""

from __future__ import annotations

import logging

LEVELS = {
    "trace": logging.DEBUG,  # Python has no finer level; trace and debug are the same here
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "off": logging.CRITICAL + 10,
}
CHOICES = "trace, debug, info, warning, error, critical, off"
LOGGER = "sidecar"


def parse_level(text: str) -> int:
    """A level by name, any case; ValueError naming the valid choices."""
    level = LEVELS.get(text.strip().lower())
    if level is None:
        raise ValueError(f"unknown log level {text!r}; valid: {CHOICES}")
    return level


def level_name(level: int) -> str:
    return next((name for name, value in LEVELS.items() if value == level and name != "trace"), str(level))


def set_level(level: int) -> None:
    """The sidecar's loggers follow `level`; the root (aiohttp, asyncio, watchfiles) follows it too, but
    never below INFO: their debug output (a file watcher's heartbeat every few seconds) would bury the
    sidecar's own lines."""
    logging.getLogger().setLevel(max(level, logging.INFO))
    logging.getLogger(LOGGER).setLevel(level)


def active_loggers() -> str:
    """The body Envoy's /logging answers with: every logger that has a level of its own."""
    names = sorted(
        name
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and (name == LOGGER or name.startswith(LOGGER + "."))
    )
    lines = [f"  {name}: {level_name(logging.getLogger(name).getEffectiveLevel())}" for name in names]
    return "active loggers:\n" + "".join(line + "\n" for line in lines)
