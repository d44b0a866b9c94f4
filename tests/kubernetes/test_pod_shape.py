"""The pod shape of deploy/kubernetes, run for real: each sidecar Deployment becomes a network namespace with
its own IP on a private bridge, running its app and `sidecar run` exactly as the rendered manifests say
(args, env, `$(VAR)` references, the downward API's POD_IP), all reading one kubelet-style ConfigMap
directory. Service names resolve to the pod IPs through /etc/netns/NS/hosts (bind-mounted over
/etc/hosts by `ip netns exec`); the project's collector stands in for Jaeger in a hub namespace,
which also hosts the client. Then: one trace spans the three pods, and a ConfigMap symlink swap
reloads every sidecar (an invalid one is rejected by all of them).

Every address is inside namespaces made here (10.200.0.0/29 on a bridge in the hub namespace); nothing
is sent anywhere else. Skips, with the reason, where namespaces cannot be made (not root, no `ip`,
no permission); namespaces, /etc/netns entries and processes are removed in every case.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.kubernetes.kustomize import render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "kubernetes"
PREFIX = f"kts{os.getpid()}"
HUB_IP = "10.200.0.1"
POD_IPS = {"frontend": "10.200.0.2", "backend": "10.200.0.3", "db-api": "10.200.0.4"}
PREFIX_LEN = 29

Obj = dict[str, Any]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "not root: network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN"
    if shutil.which("ip") is None:
        return "no `ip` command (Debian: apt-get install iproute2; .ci/run does it)"
    return None


def write_config_map(directory: Path, data: dict[str, str], stamp: str) -> None:
    """What the kubelet does for a ConfigMap volume: the files in a new timestamped directory, an
    atomic rename of the `..data` symlink onto it, one symlink per key through `..data`, then the old
    directory removed."""
    target = directory / f"..{stamp}"
    target.mkdir()
    for name, text in data.items():
        (target / name).write_text(text)
    data_link = directory / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp = directory / "..data_tmp"
    tmp.symlink_to(target.name)
    os.replace(tmp, data_link)
    for name in data:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(directory / old)


def _k8s_expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) references in command/args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


@dataclass
class Cluster:
    tmp: Path
    namespace: str  # the Kubernetes namespace of the example
    config: Path
    config_data: dict[str, str]
    netns: dict[str, str] = field(default_factory=dict)  # "hub" / deployment name -> netns name
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, where: str, label: str, argv: list[str], env: dict[str, str]) -> None:
        log = self.tmp / f"{label}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns[where], *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
        self.procs.append((label, proc, log))

    def logs(self) -> str:
        parts = []
        for label, proc, log in self.procs:
            text = log.read_text(errors="replace").strip().splitlines()[-15:]
            parts.append(f"--- {label} (exit {proc.poll()}):\n" + "\n".join(text))
        return "\n".join(parts)

    def poll(self, *urls: str, until: str = "status == 200", where: str = "hub", timeout: float = 30) -> Any:
        """Run tests/kubernetes/nsclient.py in a namespace; its JSON answer."""
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.netns[where],
                sys.executable,
                "-m",
                "tests.kubernetes.nsclient",
                "--timeout",
                str(timeout),
                "--until",
                until,
                *urls,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=timeout + 30,
        )
        assert done.returncode == 0, done.stderr + "\n" + self.logs()
        return json.loads(done.stdout)

    def admin(self, name: str, path: str) -> str:
        return f"http://{POD_IPS[name]}:9901{path}"


def _network(cluster: Cluster) -> None:
    hub = cluster.netns["hub"]
    _ip("-n", hub, "link", "set", "lo", "up")
    _ip("-n", hub, "link", "add", "br0", "type", "bridge")
    _ip("-n", hub, "addr", "add", f"{HUB_IP}/{PREFIX_LEN}", "dev", "br0")
    _ip("-n", hub, "link", "set", "br0", "up")
    for i, (name, ip) in enumerate(POD_IPS.items()):
        ns = cluster.netns[name]
        # The pair is made inside the hub namespace with its peer moved straight into the pod's.
        _ip("-n", hub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", hub, "link", "set", f"p{i}", "master", "br0")
        _ip("-n", hub, "link", "set", f"p{i}", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{ip}/{PREFIX_LEN}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
    # Cluster DNS, as far as these pods need it: every Service name to its (single) pod's IP.
    hosts = ["127.0.0.1 localhost", f"{HUB_IP} jaeger.{cluster.namespace}.svc"]
    hosts += [f"{ip} {name}.{cluster.namespace}.svc" for name, ip in POD_IPS.items()]
    for ns in cluster.netns.values():
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text("\n".join(hosts) + "\n")


def _pods(cluster: Cluster, deployments: dict[str, Obj]) -> None:
    """Start the collector, then every sidecar, then (once every sidecar is ready) every app."""
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1"}
    cluster.start(
        "hub",
        "collector",
        [sys.executable, "-m", "sidecar.collector", "--listen", f"{HUB_IP}:9411"],
        base_env,
    )
    # Native sidecars first: every sidecar /ready before any app starts.
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        sidecar = spec["initContainers"][0]
        fields = {
            "status.podIP": POD_IPS[name],
            "metadata.name": f"{name}-0",
            "metadata.namespace": cluster.namespace,
        }
        env = {
            e["name"]: e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
            for e in sidecar["env"]
        }
        mount = next(m["mountPath"] for m in sidecar["volumeMounts"] if m["name"] == "kuma-resources")
        args = [str(cluster.config) if a == mount else _k8s_expand(a, env) for a in sidecar["args"]]
        env |= base_env | {"SIDECAR_REPORTER_FLUSH_INTERVAL": "0.2"}
        cluster.start(name, f"sidecar-{name}", [sys.executable, "-m", "sidecar", *args], env)
    cluster.poll(*(cluster.admin(name, "/ready") for name in deployments))
    for name, deployment in deployments.items():
        app = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in app.get("env", [])}
        command = [sys.executable if c == "python" else c for c in app["command"]]
        args = [_k8s_expand(a, env) for a in app["args"]]
        cluster.start(name, f"app-{name}", [*command, *args], env | base_env)
    for name, deployment in deployments.items():
        app = deployment["spec"]["template"]["spec"]["containers"][0]
        port = app["args"][app["args"].index("--port") + 1]
        cluster.poll(f"http://127.0.0.1:{port}/healthz", where=name)


def _teardown(cluster: Cluster) -> None:
    for _, proc, _ in cluster.procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for _, proc, _ in cluster.procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for ns in cluster.netns.values():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    objects = render(EXAMPLE)
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    deployments = {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"].get("labels", {}).get("kuma-trace.io/sidecar") == "true"
    }
    assert set(deployments) == set(POD_IPS)
    tmp = tmp_path_factory.mktemp("pods")
    config = tmp / "kuma-resources"
    config.mkdir()
    write_config_map(config, config_map["data"], "2025_01_01_00_00_00.000000001")
    cluster = Cluster(tmp, config_map["metadata"]["namespace"], config, dict(config_map["data"]))
    try:
        for name in ["hub", *POD_IPS]:
            ns = f"{PREFIX}-{name}"
            try:
                _ip("netns", "add", ns)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot create a network namespace here: {exc.stderr.strip()}")
            cluster.netns[name] = ns
        try:
            _network(cluster)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot build the namespaces' network (veth/bridge): {exc.stderr.strip()}")
        _pods(cluster, deployments)
        yield cluster
    finally:
        _teardown(cluster)


def test_one_trace_spans_the_pods(cluster: Cluster) -> None:
    ns = cluster.namespace
    entry = f"http://frontend.{ns}.svc:10001/?order=1"
    answer = cluster.poll(entry)[entry]
    assert answer["service"] == "frontend"
    assert answer["next"]["status"] == 200 and answer["next"]["body"]["service"] == "backend"
    assert answer["next"]["body"]["next"]["status"] == 200
    names = {
        n: f"{n}_{ns}_svc_{port}" for n, port in [("frontend", 10001), ("backend", 10011), ("db-api", 10021)]
    }
    proxy_spans = "sum(1 for s in t if s.get('tags', {}).get('component') == 'proxy')"
    traces_url = f"http://{HUB_IP}:9411/api/v2/traces?limit=100"
    # 5 sidecar spans: SERVER and CLIENT in frontend and backend, SERVER in db-api.
    traces = cluster.poll(traces_url, until=f"any({proxy_spans} == 5 for t in j)")[traces_url]
    (trace,) = [
        t for t in traces if len({s["localEndpoint"]["serviceName"] for s in t} & set(names.values())) == 3
    ]
    spans = {
        (s["localEndpoint"]["serviceName"], s["kind"]): s
        for s in trace
        if s.get("tags", {}).get("component") == "proxy"
    }
    fe_client = spans[(names["frontend"], "CLIENT")]
    be_server = spans[(names["backend"], "SERVER")]
    be_client = spans[(names["backend"], "CLIENT")]
    db_server = spans[(names["db-api"], "SERVER")]
    # Shared span context across the pods: the callee's SERVER span is the caller's CLIENT span.
    assert be_server["id"] == fe_client["id"] and be_server.get("shared") is True
    assert db_server["id"] == be_client["id"] and db_server.get("shared") is True
    # Each hop crossed the bridge from the caller's pod IP to the callee's sidecar on its POD_IP.
    assert be_server["tags"]["peer.address"].startswith(POD_IPS["frontend"] + ":")
    assert db_server["tags"]["peer.address"].startswith(POD_IPS["backend"] + ":")
    assert fe_client["tags"]["upstream_cluster"] == names["backend"]
    for name, ip in POD_IPS.items():
        dump = cluster.poll(cluster.admin(name, "/config_dump"))[cluster.admin(name, "/config_dump")]
        assert dump["inbound"][0]["address"] == ip
    dump = cluster.poll(cluster.admin("frontend", "/config_dump"))[cluster.admin("frontend", "/config_dump")]
    assert dump["outbound"][0]["endpoints"] == [f"backend.{ns}.svc:10011"]


def test_config_map_swap_reloads_every_sidecar(cluster: Cluster) -> None:
    data = dict(cluster.config_data)
    assert "sampling: 100.0" in data["mesh.yaml"]
    data["mesh.yaml"] = data["mesh.yaml"].replace("sampling: 100.0", "sampling: 25.0")
    write_config_map(cluster.config, data, "2025_01_01_00_05_00.000000002")
    assert sorted(p.name for p in cluster.config.glob("..2025*")) == ["..2025_01_01_00_05_00.000000002"]
    dumps = [cluster.admin(name, "/config_dump") for name in POD_IPS]
    answers = cluster.poll(*dumps, until="j['backend']['sampling'] == 25.0", timeout=20)
    assert all(
        a["inbound"][0]["address"] == POD_IPS[n] for n, a in zip(POD_IPS, answers.values(), strict=True)
    )
    # An update a pod cannot expand is rejected by every sidecar; each keeps what it runs.
    data["mesh.yaml"] = data["mesh.yaml"].replace("sampling: 25.0", "sampling: ${SAMPLING_NOT_SET}")
    write_config_map(cluster.config, data, "2025_01_01_00_10_00.000000003")
    failed = """re.search(r'sidecar_config_reloads_total[{]result="failed"[}] [1-9]', body.decode())"""
    stats = [cluster.admin(name, "/stats/prometheus") for name in POD_IPS]
    cluster.poll(*stats, until=failed, timeout=20)
    answers = cluster.poll(*dumps)
    assert all(a["backend"]["sampling"] == 25.0 for a in answers.values())
    for label, proc, _ in cluster.procs:
        assert proc.poll() is None, f"{label} exited\n{cluster.logs()}"
