"""The admin socket: one clear line when it cannot be used, a warning when it faces other hosts."""

from __future__ import annotations

import logging
import socket

import pytest

from sidecar.admin.server import AdminBindError, bind_admin, bound_address


def test_loopback_binds_quietly_and_reports_its_port(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), bind_admin("127.0.0.1", 0) as sock:
        host, port = bound_address(sock)
        assert host == "127.0.0.1" and port > 0
    assert caplog.records == []


def test_binding_beyond_loopback_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), bind_admin("0.0.0.0", 0):
        pass
    [record] = caplog.records
    assert record.levelname == "WARNING" and "admin 0.0.0.0:0 is reachable from other hosts" in record.message


def test_busy_port_names_the_admin_and_the_flag() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AdminBindError) as err:
            bind_admin("127.0.0.1", port)
    assert str(err.value) == (
        f"admin 127.0.0.1:{port}: cannot listen: Address already in use; change --admin-address"
    )


def test_unresolvable_host_is_one_line() -> None:
    with pytest.raises(AdminBindError) as err:
        bind_admin("nohost.invalid", 9901)
    assert str(err.value).startswith("admin nohost.invalid:9901: cannot resolve 'nohost.invalid' (")
    assert str(err.value).endswith("); change --admin-address") and "\n" not in str(err.value)
