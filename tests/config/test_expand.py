"""Environment expansion in resource files: the string rules, then whole documents through load_config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.config import build_snapshot, load_config
from sidecar.config.expand import expand
from sidecar.config.load import load_raw

ENV = {"POD_IP": "10.0.0.7", "POD_NAME": "backend-7d9f-x2", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${POD_IP}", "10.0.0.7"),
        ("pod ${POD_NAME} at ${POD_IP}:10011", "pod backend-7d9f-x2 at 10.0.0.7:10011"),
        ("${UNSET:-127.0.0.1}", "127.0.0.1"),
        ("${EMPTY:-fallback}", "fallback"),  # `:-` also replaces an empty value, as in the shell
        ("${POD_IP:-fallback}", "10.0.0.7"),
        ("${EMPTY}", ""),  # set but empty is not an error
        ("${UNSET:-}", ""),
        ("${UNSET:-a:-b}", "a:-b"),  # the default is literal text up to the first }
        ("price $5 and $HOME", "price $5 and $HOME"),  # a $ without { is kept
        ("$${POD_IP}", "${POD_IP}"),  # $$ escapes
        ("$$$${POD_IP}", "$${POD_IP}"),
        ("$$${POD_IP}", "$10.0.0.7"),
        ("trailing $", "trailing $"),
        ("no reference", "no reference"),
    ],
)
def test_expand_cases(text: str, expected: str) -> None:
    assert expand(text, ENV) == (expected, [])


def test_unset_without_default_names_the_variable_and_keeps_the_text() -> None:
    value, problems = expand("http://${COLLECTOR_HOST}:9411/${POD_IP}", ENV)
    assert value == "http://${COLLECTOR_HOST}:9411/10.0.0.7"
    assert problems == [
        "${COLLECTOR_HOST}: environment variable COLLECTOR_HOST is not set and has no default"
    ]


@pytest.mark.parametrize(
    "text", ["${}", "${1ABC}", "${A-b}", "${A:=b}", "${A B}", "${ POD_IP}", "${POD_IP:?x}"]
)
def test_malformed_references_are_problems(text: str) -> None:
    value, problems = expand(text, ENV)
    assert value == text
    assert len(problems) == 1 and problems[0].startswith(f"{text}: not a variable reference")


def test_unterminated_reference() -> None:
    value, problems = expand("a ${POD_IP", ENV)
    assert value == "a ${POD_IP"
    assert problems == ['"${" without a closing "}" in \'a ${POD_IP\' (write $$ for a literal $)']


def test_the_environment_is_only_what_is_passed_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLY_IN_OS", "x")
    assert expand("${ONLY_IN_OS:-default}", {}) == ("default", [])


DATAPLANE = """\
type: Mesh
name: default
---
type: Dataplane
name: backend
mesh: default
networking:
  address: ${POD_IP}
  inbound:
  - port: ${INBOUND_PORT:-10011}
    servicePort: "${APP_PORT:-8082}"
    tags:
      kuma.io/service: backend
      kuma.io/protocol: http
      pod: ${POD_NAME}
      literal: $${NOT_EXPANDED}
      ${KEY_NOT_EXPANDED}: x
"""


def test_documents_are_expanded_in_values_only(tmp_path: Path) -> None:
    (tmp_path / "dp.yaml").write_text(DATAPLANE)
    raws, _, problems = load_raw([str(tmp_path)], ENV)
    assert problems == []
    body = next(r for r in raws if r.kind == "Dataplane").body
    net = body["networking"]
    assert net["address"] == "10.0.0.7"
    inbound = net["inbound"][0]
    assert inbound["port"] == 10011  # a plain scalar is typed again after expansion
    assert inbound["servicePort"] == "8082"  # a quoted one stays a string
    assert inbound["tags"]["pod"] == "backend-7d9f-x2"
    assert inbound["tags"]["literal"] == "${NOT_EXPANDED}"
    assert inbound["tags"]["${KEY_NOT_EXPANDED}"] == "x"  # keys are never expanded


def test_unset_variable_is_a_problem_naming_variable_file_line_resource_and_field(tmp_path: Path) -> None:
    path = tmp_path / "dp.yaml"
    path.write_text(DATAPLANE)
    _, _, found = load_raw([str(tmp_path)], {"POD_NAME": "p"})
    problems = [str(p) for p in found]
    assert found[0].resource == ("Dataplane", "backend", "default")  # so it stops only that sidecar
    assert problems == [
        f"{path}:8: Dataplane/backend: networking.address: ${{POD_IP}}: "
        "environment variable POD_IP is not set and has no default"
    ]


def test_kubernetes_form_paths_carry_spec_and_tag_keys(tmp_path: Path) -> None:
    path = tmp_path / "dp.yaml"
    path.write_text(
        "apiVersion: kuma.io/v1alpha1\nkind: Dataplane\nmesh: default\nmetadata:\n  name: web\nspec:\n"
        "  networking:\n    address: 10.0.0.1\n    inbound:\n    - port: 1\n      tags:\n"
        "        kuma.io/service: ${SVC}\n"
    )
    _, _, found = load_raw([str(path)], {})
    problems = [str(p) for p in found]
    assert problems == [
        f'{path}:12: Dataplane/web: spec.networking.inbound[0].tags["kuma.io/service"]: '
        "${SVC}: environment variable SVC is not set and has no default"
    ]


def test_an_alias_is_expanded_once(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("type: Mesh\nname: default\nx: &a $${A}\ny: *a\n")
    raws, _, problems = load_raw([str(path)], {"A": "no"})
    assert problems == [] and raws[0].body["x"] == raws[0].body["y"] == "${A}"


def test_validation_and_snapshot_see_expanded_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dp.yaml").write_text(DATAPLANE)
    monkeypatch.setenv("POD_IP", "10.1.2.3")
    monkeypatch.setenv("POD_NAME", "b-1")
    monkeypatch.setenv("APP_PORT", "8090")
    monkeypatch.delenv("INBOUND_PORT", raising=False)
    result = load_config([str(tmp_path)])
    # servicePort was quoted: it stays the string "8090", which validation rejects as a port.
    assert result.problems == [
        f"{tmp_path / 'dp.yaml'}:11: Dataplane/backend: networking.inbound[0].servicePort: "
        'port must be in the range [1, 65535], got "8090"'
    ]
    (tmp_path / "dp.yaml").write_text(DATAPLANE.replace('"${APP_PORT:-8082}"', "${APP_PORT:-8082}"))
    result = load_config([str(tmp_path)])
    assert result.ok, result.problems
    inbound = build_snapshot(result.resources, "backend").inbound[0]
    assert (inbound.address, inbound.port, inbound.service_port) == ("10.1.2.3", 10011, 8090)


def test_cli_validate_and_inspect_show_what_a_pod_does(tmp_path: Path) -> None:
    (tmp_path / "dp.yaml").write_text(DATAPLANE.replace('"${APP_PORT:-8082}"', "8082"))
    base = [sys.executable, "-m", "sidecar"]
    env = {"PATH": "/usr/bin:/bin", "POD_NAME": "b-1"}
    bad = subprocess.run(
        [*base, "validate", "--config", str(tmp_path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stdout.splitlines() == [
        f"{tmp_path / 'dp.yaml'}:8: Dataplane/backend: networking.address: ${{POD_IP}}: "
        "environment variable POD_IP is not set and has no default"
    ]
    good = subprocess.run(
        [*base, "inspect", "--config", str(tmp_path), "--dataplane", "backend"],
        capture_output=True,
        text=True,
        env={**env, "POD_IP": "10.9.8.7"},
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    inbound = json.loads(good.stdout)["inbound"][0]
    assert inbound["address"] == "10.9.8.7" and inbound["tags"]["pod"] == "b-1"
