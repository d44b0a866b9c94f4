"""Log levels: the sidecar's loggers follow the level; third-party loggers never go below INFO."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sidecar.admin.levels import set_level


@pytest.fixture
def restore_levels() -> Iterator[None]:
    before = logging.getLogger().level, logging.getLogger("sidecar").level
    yield
    logging.getLogger().setLevel(before[0])
    logging.getLogger("sidecar").setLevel(before[1])


@pytest.mark.usefixtures("restore_levels")
def test_debug_is_for_the_sidecar_only() -> None:
    set_level(logging.DEBUG)
    assert logging.getLogger("sidecar.proxy").isEnabledFor(logging.DEBUG)
    for third_party in ("watchfiles.main", "asyncio", "aiohttp.access"):
        assert not logging.getLogger(third_party).isEnabledFor(logging.DEBUG)
        assert logging.getLogger(third_party).isEnabledFor(logging.INFO)


@pytest.mark.usefixtures("restore_levels")
def test_a_higher_level_applies_to_every_logger() -> None:
    set_level(logging.ERROR)
    for name in ("sidecar.proxy", "watchfiles.main", "aiohttp.access"):
        assert not logging.getLogger(name).isEnabledFor(logging.WARNING)
