"""deploy/kubernetes, checked offline: the rendered kustomizations validate against the Kubernetes schemas of
the versions we target, and the pieces agree with each other (ports, names, probes, grace, Kuma
resources)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sidecar.config import load_config
from sidecar.config.snapshot import build_snapshot
from tests.kubernetes.kustomize import render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "kubernetes"
PLAIN = EXAMPLE / "plain-sidecar"
#: Native sidecars (an init container with restartPolicy: Always) are on by default from 1.29 and GA in
#: 1.33; the plain variant is for older clusters (the oldest schemas kubernetes-validate bundles: 1.25).
NATIVE_VERSIONS = ("1.29.0", "1.33.0")
PLAIN_VERSIONS = ("1.25.0", "1.29.0")
FLUSH_SECONDS = 2.0  # the reporter's final flush on shutdown (runtime.py: reporter.aclose(2.0))

Obj = dict[str, Any]


def by_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def key(o: Obj) -> tuple[str, str, str, str]:
    return (o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])


@pytest.fixture(scope="module")
def native() -> list[Obj]:
    return render(EXAMPLE)


@pytest.fixture(scope="module")
def plain() -> list[Obj]:
    return render(PLAIN)


def sidecar_deployments(objects: list[Obj]) -> dict[str, Obj]:
    return {
        name: d
        for name, d in by_kind(objects, "Deployment").items()
        if d["metadata"].get("labels", {}).get("kuma-trace.io/sidecar") == "true"
    }


def pod(deployment: Obj) -> Obj:
    spec: Obj = deployment["spec"]["template"]["spec"]
    return spec


def arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("directory", [EXAMPLE, PLAIN], ids=["native", "plain-sidecar"])
def test_renderer_matches_kubectl_kustomize(directory: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl is not installed: the manifests are checked through tests/kubernetes/kustomize.py"
        )
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    theirs = {key(o): o for o in yaml.safe_load_all(out) if o}
    ours = {key(o): o for o in render(directory)}
    assert ours == theirs


@pytest.mark.parametrize("version", NATIVE_VERSIONS)
def test_native_example_validates(native: list[Obj], version: str) -> None:
    assert len(native) == 10
    for obj in native:
        kubernetes_validate.validate(obj, version, strict=True)


def test_native_sidecars_do_not_validate_before_1_28(native: list[Obj]) -> None:
    """The schemas do check fields: an init container's restartPolicy is unknown to 1.27."""
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(by_kind(native, "Deployment")["frontend"], "1.27.0", strict=True)


@pytest.mark.parametrize("version", PLAIN_VERSIONS)
def test_plain_sidecar_variant_validates(plain: list[Obj], version: str) -> None:
    assert len(plain) == 10
    for obj in plain:
        kubernetes_validate.validate(obj, version, strict=True)


def test_native_sidecar_pod_shape(native: list[Obj]) -> None:
    deployments = sidecar_deployments(native)
    assert set(deployments) == {"frontend", "backend", "db-api"}
    for name, deployment in deployments.items():
        spec = pod(deployment)
        (sidecar,) = spec["initContainers"]
        (app,) = spec["containers"]
        assert sidecar["restartPolicy"] == "Always"
        args = sidecar["args"]
        assert args[0] == "run" and arg(args, "--admin-address") == "0.0.0.0:9901"
        ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
        assert ports["admin"] == 9901
        for probe in ("startupProbe", "readinessProbe"):
            assert sidecar[probe]["httpGet"] == {"path": "/ready", "port": "admin"}, (name, probe)
        assert "livenessProbe" not in sidecar  # /ready is 503 while draining: a liveness probe would kill it
        drain = float(arg(args, "--drain-grace"))
        assert spec["terminationGracePeriodSeconds"] > drain + FLUSH_SECONDS
        env = {e["name"]: e for e in sidecar["env"]}
        assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert env["SIDECAR_DATAPLANE"]["value"] == name
        for container in (sidecar, app):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            res = container["resources"]
            assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        config = mounts["kuma-resources"]
        assert config["readOnly"] is True and config["mountPath"] == arg(args, "--config")
        assert volumes["kuma-resources"]["configMap"]["name"] == "kuma-resources"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(ports["admin"]),
            "prometheus.io/path": "/stats/prometheus",
        }
        assert sidecar["image"] == "kuma-trace-sidecar:0.1.0"
        assert app["image"] == "kuma-trace-demo-apps:0.1.0"


def test_plain_sidecar_variant_pod_shape(plain: list[Obj]) -> None:
    for name, deployment in sidecar_deployments(plain).items():
        spec = pod(deployment)
        assert "initContainers" not in spec
        sidecar, app = spec["containers"]
        assert (sidecar["name"], app["name"]) == ("sidecar", "app")
        assert "restartPolicy" not in sidecar
        wait = sidecar["lifecycle"]["postStart"]["exec"]["command"]
        assert wait[:2] == ["python", "-c"] and "127.0.0.1:9901/ready" in wait[2]
        compile(wait[2], f"{name} postStart", "exec")
        sleep = sidecar["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep == ["python", "-c", "import time; time.sleep(5)"]
        drain = float(arg(sidecar["args"], "--drain-grace"))
        assert spec["terminationGracePeriodSeconds"] > 5 + drain + FLUSH_SECONDS


def test_kuma_resources_agree_with_deployments_and_services(
    native: list[Obj], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What each sidecar resolves from the ConfigMap (with its pod's POD_IP) matches its container
    ports, its app's ports and URLs, and the Services its outbounds name."""
    (config_map,) = by_kind(native, "ConfigMap").values()
    for file, text in config_map["data"].items():
        (tmp_path / file).write_text(text)
    monkeypatch.setenv("POD_IP", "10.244.1.7")
    result = load_config([str(tmp_path)])
    assert result.ok, result.problems
    services = by_kind(native, "Service")
    namespace = config_map["metadata"]["namespace"]
    inbound_of: dict[str, int] = {}
    for name, deployment in sidecar_deployments(native).items():
        spec = pod(deployment)
        sidecar, app = spec["initContainers"][0], spec["containers"][0]
        snap = build_snapshot(result.resources, name)
        (inbound,) = snap.inbound
        assert inbound.address == "10.244.1.7" and inbound.traced
        ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
        assert ports["inbound"] == inbound.port
        assert arg(app["args"], "--port") == str(inbound.service_port)
        assert arg(app["args"], "--host") == inbound.service_address == "127.0.0.1"
        # The Service in front of this Deployment: its port is the one in the Kuma service name, and
        # it targets the sidecar's inbound, never the app.
        service = services[name]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == inbound.port
        assert inbound.service == f"{name}_{namespace}_svc_{port['port']}"
        inbound_of[f"{name}.{namespace}.svc:{port['port']}"] = inbound.port
        env = {e["name"]: e.get("value") for e in app.get("env", [])}
        for out in snap.outbound:
            assert out.address == "127.0.0.1" and out.traced
            # The app reaches the peer through its outbound, from an environment variable.
            (var,) = [v for v, value in env.items() if value == f"http://{out.address}:{out.port}"]
            assert f"$({var})/" in arg(app["args"], "--next")
        backend = snap.backend
        assert backend is not None and backend.url == f"http://jaeger.{namespace}.svc:9411/api/v2/spans"
        assert {"name": "zipkin", "port": 9411, "targetPort": "zipkin"} in services["jaeger"]["spec"]["ports"]
    endpoints = {
        e: o.service
        for name in sidecar_deployments(native)
        for o in build_snapshot(result.resources, name).outbound
        for e in o.endpoints
    }
    assert endpoints == {
        f"backend.{namespace}.svc:10011": f"backend_{namespace}_svc_10011",
        f"db-api.{namespace}.svc:10021": f"db-api_{namespace}_svc_10021",
    }
    assert set(endpoints) <= set(inbound_of)


def selected_pods(objects: list[Obj], service: Obj) -> list[Obj]:
    selector = service["spec"]["selector"].items()
    return [
        pod(d)
        for d in by_kind(objects, "Deployment").values()
        if selector <= d["spec"]["template"]["metadata"]["labels"].items()
    ]


def unresolved_target_ports(objects: list[Obj]) -> list[str]:
    """Service ports whose targetPort does not resolve on every pod the Service selects, on every
    Kubernetes version we target: a port *name* resolves only on a regular container before 1.32
    (names declared on init containers, native sidecars included, are ignored there); a number must be
    a port that some container of the pod declares."""
    problems = []
    for name, service in by_kind(objects, "Service").items():
        pods = selected_pods(objects, service)
        if not pods:
            problems.append(f"{name}: selects no pod")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for spec in pods:
                regular = [p for c in spec["containers"] for p in c.get("ports", [])]
                every = regular + [p for c in spec.get("initContainers", []) for p in c.get("ports", [])]
                if isinstance(target, str):
                    ok = any(p.get("name") == target for p in regular)
                else:
                    ok = any(p["containerPort"] == target for p in every)
                if not ok:
                    problems.append(f"{name}: targetPort {target!r}")
    return problems


@pytest.mark.parametrize("variant", ["native", "plain"])
def test_every_service_target_port_resolves_before_1_32(variant: str, request: pytest.FixtureRequest) -> None:
    objects = request.getfixturevalue(variant)
    assert unresolved_target_ports(objects) == []


def test_target_port_named_on_an_init_container_is_caught(native: list[Obj]) -> None:
    """The check itself: the shape that left Services without endpoints on 1.29-1.31."""
    broken = yaml.safe_load(yaml.safe_dump(native))
    for service in by_kind(broken, "Service").values():
        if service["metadata"]["name"] == "backend":
            service["spec"]["ports"][0]["targetPort"] = "inbound"
    assert unresolved_target_ports(broken) == ["backend: targetPort 'inbound'"]


def test_jaeger_v2_with_zipkin_receiver_on_all_interfaces(native: list[Obj]) -> None:
    jaeger = pod(by_kind(native, "Deployment")["jaeger"])["containers"][0]
    assert jaeger["image"].startswith("jaegertracing/jaeger:2.")
    assert {"name": "JAEGER_LISTEN_HOST", "value": "0.0.0.0"} in jaeger["env"]
    assert {p["containerPort"] for p in jaeger["ports"]} == {9411, 16686}
    namespaces = by_kind(native, "Namespace")
    assert set(namespaces) == {o["metadata"]["namespace"] for o in native if o["kind"] != "Namespace"}
