"""The CLI contract of validate and inspect, as scripts would use it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar import __version__, build_label
from sidecar.cli import RUN_OPTIONS, _parser, env_name, flag, main, run_values, unknown_variables

CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_validate_ok_prints_one_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--config", str(CONFIG)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["OK: 3 files, 1 mesh, 2 traffic traces, 0 mesh traces, 3 dataplanes, 0 external services"]


def test_validate_warnings_go_to_stderr_and_keep_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text(
        "type: Mesh\nname: default\ntracing:\n  backends:\n  - name: j\n    sampling: 0.5\n    conf:\n"
        "      url: http://x:9411/\n"
    )
    assert main(["validate", "--config", str(ok)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "OK: 1 file, 1 mesh, 0 traffic traces, 0 mesh traces, 0 dataplanes, 0 external services"
    ]
    assert captured.err.splitlines() == [
        f"warning: {ok}:6: Mesh/default: tracing.backends[0].sampling: is a percent, not a ratio: 0.5 "
        "samples 0.5 % of requests (for 50 %, write 50)"
    ]


def test_validate_problems_one_line_each_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "type: Mesh\nname: default\ntracing:\n  backends:\n  - name: j\n    sampling: 101\n    conf:\n      url: http://x/\n"
    )
    assert main(["validate", "--config", str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{bad}:6: Mesh/default: tracing.backends[0].sampling: has to be in [0.0 - 100.0] range, got 101",
        f'{bad}:8: Mesh/default: tracing.backends[0].conf.url: port has to be explicitly specified: "http://x/"',
    ]
    # The contract's `FILE: KIND/NAME: FIELD.PATH: message` still splits the same way, FILE carrying :LINE.
    for line in lines:
        file, resource, path, _ = line.split(": ", 3)
        assert (
            file.rsplit(":", 1)[0] == str(bad) and resource == "Mesh/default" and path.startswith("tracing.")
        )


def test_validate_lists_an_unrelated_broken_dataplane_that_inspect_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    for f in CONFIG.glob("*.yaml"):
        (config / f.name).write_text(f.read_text())
    (config / "zz-broken.yaml").write_text(
        "type: Dataplane\nname: broken-01\nmesh: default\nnetworking:\n  address: 127.0.0.1\n"
        "  inbound:\n  - port: 0\n    tags:\n      kuma.io/service: broken\n"
    )
    assert main(["validate", "--config", str(config)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{config / 'zz-broken.yaml'}:7: Dataplane/broken-01: networking.inbound[0].port: "
        "port must be in the range [1, 65535], got 0"
    ]
    assert main(["inspect", "--config", str(config), "--dataplane", "frontend-01"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["dataplane"] == "frontend-01"
    assert err.startswith("warning: skipping Dataplane/broken-01, it is invalid and not this dataplane's: ")


def test_inspect_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--config", str(CONFIG), "--dataplane", "backend-01"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == [
        "mesh",
        "dataplane",
        "trafficTrace",
        "backend",
        "inbound",
        "outbound",
        "policy",
        "meshTraces",
    ]
    assert (doc["policy"], doc["meshTraces"]) == ("TrafficTrace", [])
    assert set(doc["backend"]) == {
        "name",
        "type",
        "sampling",
        "url",
        "traceId128bit",
        "apiVersion",
        "sharedSpanContext",
    }
    assert set(doc["inbound"][0]) == {"address", "port", "serviceAddress", "servicePort", "protocol", "tags"}
    assert set(doc["outbound"][0]) == {"address", "port", "service", "protocol", "endpoints"}
    assert doc["outbound"][0]["endpoints"] == ["127.0.0.1:10021"]


def test_inspect_yaml_is_the_same_document(capsys: pytest.CaptureFixture[str]) -> None:
    main(["inspect", "--config", str(CONFIG), "--dataplane", "db-api-01"])
    as_json = json.loads(capsys.readouterr().out)
    main(["inspect", "--config", str(CONFIG), "--dataplane", "db-api-01", "--format", "yaml"])
    assert yaml.safe_load(capsys.readouterr().out) == as_json


def test_inspect_unknown_dataplane(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--config", str(CONFIG), "--dataplane", "nope"]) == 1
    err = capsys.readouterr().err
    assert 'dataplane "nope" not found' in err and "Traceback" not in err


def test_console_script_in_a_subprocess(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar", "validate", "--config", str(junk), "--config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout.splitlines()[0].startswith(f"{junk}")


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    # Which build runs: the scripts/test-compiled run sees "compiled", scripts/test "pure Python".
    assert done.value.code == 0 and capsys.readouterr().out == f"sidecar {__version__} ({build_label()})\n"


def test_bare_sidecar_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sidecar") and all(c in out for c in ("validate", "inspect", "run", "demo"))


def test_run_help_documents_the_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--log-level LEVEL" in out and "SIDECAR_<OPTION>" in out and "$SIDECAR_LOG_LEVEL" in out


def run_args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["run", "--config", "c", *argv])


def test_a_flag_wins_over_its_variable_and_variables_follow_one_rule() -> None:
    env = {"SIDECAR_REPORT_TIMEOUT": "2.5", "SIDECAR_UPSTREAM_TIMEOUT": "3", "SIDECAR_DATAPLANE": "web-01"}
    values, source = run_values(run_args("--upstream-timeout", "7"), env)
    assert (values["report_timeout"], source["report_timeout"]) == (2.5, "SIDECAR_REPORT_TIMEOUT")
    assert (values["upstream_timeout"], source["upstream_timeout"]) == (7.0, "--upstream-timeout")
    assert (values["dataplane"], values["log_level"], source["log_level"]) == ("web-01", "info", "default")
    for dest in RUN_OPTIONS:  # every option's variable is SIDECAR_ + its flag's name
        assert env_name(dest) == "SIDECAR_" + flag(dest)[2:].replace("-", "_").upper()


def test_trace_context_mode_from_flag_variable_or_default() -> None:
    env = {"SIDECAR_DATAPLANE": "web-01"}
    assert run_values(run_args(), env)[0]["trace_context"] == "b3+w3c"
    assert run_values(run_args(), env | {"SIDECAR_TRACE_CONTEXT": "B3"})[0]["trace_context"] == "b3"
    assert (
        run_values(run_args("--trace-context", "w3c"), env | {"SIDECAR_TRACE_CONTEXT": "b3"})[0][
            "trace_context"
        ]
        == "w3c"
    )


def test_a_dataplane_file_flag_beats_the_dataplane_variable() -> None:
    values, _ = run_values(run_args("--dataplane-file", "own.yaml"), {"SIDECAR_DATAPLANE": "web-01"})
    assert (values["dataplane"], values["dataplane_file"]) == (None, "own.yaml")


def test_unknown_variables_get_a_hint() -> None:
    env = {
        "SIDECAR_DATAPLANE": "x",
        "SIDECAR_LOGLEVEL": "debug",
        "HOME": "/",
        "SIDECAR_BENCH_PYTHON_ONLY": "1",
    }
    assert unknown_variables(env) == [
        "unknown environment variable SIDECAR_LOGLEVEL (ignored); did you mean SIDECAR_LOG_LEVEL?"
    ]


BAD_VALUES = {
    "otlp_endpoint": "ftp://collector:4317",
    "admin_address": "9901",
    "workers": "0",
    "drain_grace": "-1",
    "log_level": "loud",
    "upstream_timeout": "0",
    "connect_timeout": "-2",
    "idle_timeout": "never",
    "max_header_kb": "0",
    "max_headers": "-1",
    "stream_idle_timeout": "0",
    "request_headers_timeout": "0",
    "h2_codec": "nghttp3",
    "headers_with_underscores": "strip",
    "lag_probe_interval": "0.0001",
    "flush_interval": "0",
    "min_batch": "0",
    "max_batch": "1.5",
    "buffer_capacity": "-3",
    "report_timeout": "inf",
    "retry_budget": "-1",
    "trace_context": "b3,w3c",
}


@pytest.mark.parametrize("dest", sorted(BAD_VALUES))
def test_every_checked_option_names_itself_as_flag_and_as_variable(
    dest: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("SIDECAR_")]:
        monkeypatch.delenv(name)
    with pytest.raises(SystemExit) as done:
        main(["run", "--config", "c", "--dataplane", "d", flag(dest), BAD_VALUES[dest]])
    err = capsys.readouterr().err
    assert (
        done.value.code == 2
        and err.startswith(f"sidecar run: argument {flag(dest)}: ")
        and err.count("\n") == 1
    )
    monkeypatch.setenv(env_name(dest), BAD_VALUES[dest])
    assert main(["run", "--config", "c", "--dataplane", "d"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sidecar run: {env_name(dest)}={BAD_VALUES[dest]}: ")
    assert err.rstrip().endswith(f"(the variable of {flag(dest)})") and err.count("\n") == 1


def test_every_option_with_a_check_is_in_the_table() -> None:
    assert set(BAD_VALUES) == {d for d, (check, _) in RUN_OPTIONS.items() if check.__name__ != "_text"}


def test_a_lower_max_batch_alone_lowers_min_batch_with_it() -> None:
    from sidecar.cli import REPORTER_FIELDS, _reporter

    def settings(**given: int) -> tuple[int, int]:
        values = {dest: given.get(dest) for dest in REPORTER_FIELDS}
        source = {dest: "flag" if dest in given else "default" for dest in REPORTER_FIELDS}
        got = _reporter(values, source)
        return got.min_batch, got.max_batch

    assert settings() == (200, 1000)
    assert settings(max_batch=100) == (100, 100)
    assert settings(max_batch=5000) == (200, 5000)
    assert settings(min_batch=10, max_batch=100) == (10, 100)


def test_headers_with_underscores_takes_envoys_three_actions() -> None:
    env = {"SIDECAR_DATAPLANE": "web-01", "SIDECAR_HEADERS_WITH_UNDERSCORES": "Reject"}
    values, source = run_values(run_args(), env)
    assert (values["headers_with_underscores"], source["headers_with_underscores"]) == (
        "reject",
        "SIDECAR_HEADERS_WITH_UNDERSCORES",
    )
    values, _ = run_values(run_args("--headers-with-underscores", "allow"), env)
    assert values["headers_with_underscores"] == "allow"
    values, _ = run_values(run_args(), {"SIDECAR_DATAPLANE": "web-01"})
    assert values["headers_with_underscores"] is None  # ProxySettings' default: drop
