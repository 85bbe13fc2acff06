"""The observability node: it starts before the head; head and workers get its IP as OBSERVABILITY_HOST
and its ports (seed 002), on both backends; with the default scripts Ray's metrics from every node reach
its Prometheus (pushed by the head's Prometheus agent) and Ray's dashboard uses that Prometheus.

Grafana is not installable here: its provisioning (Ray's dashboards, the datasource) is tested as files;
running grafana-server on them is not.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raydog_core import RayDogCluster, auth
from raydog_core.backends import NodeRole
from raydog_core.backends.base import NodeLaunch
from raydog_core.backends.yellowdog.placement import observability_env
from raydog_core.errors import SpecError
from raydog_core.observability import password as observability_password
from raydog_core.private_files import loose_entries
from raydog_core.ray_nodes import alive_ray_nodes
from raydog_core.scripts import default_script
from raydog_core.spec import NodePlacement
from raydog_core.state import ClusterState, ObservabilityState
from raydog_core.testing.emulator import DEFAULT_TEMPLATES
from raydog_core.testing.leaks import count_leaks
from raydog_core.testing.secrets_scan import assert_no_secrets, scan_text, scan_tree
from raydog_core.tunnels import RayTunnels, SSHTunnelSpec

pytestmark = pytest.mark.slow
OBSERVABILITY = "#!/usr/bin/env bash\necho observability node up\nexec sleep 600\n"
NODE_VARIABLES = (
    "OBSERVABILITY_HOST",
    "RAYDOG_PROMETHEUS_PORT",
    "RAYDOG_GRAFANA_PORT",
    "RAY_PROMETHEUS_HOST",
)
METRICS_WAIT_S = 120.0
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="needs Prometheus (scripts/bootstrap.sh installs it)"
)


@ray.remote(num_cpus=0)
def node_view() -> tuple[str, dict[str, str | None]]:
    """(Ray node id, the observability variables this node's Ray runs with)."""
    return ray.get_runtime_context().get_node_id(), {name: os.environ.get(name) for name in NODE_VARIABLES}


def backend_kwargs(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "local":
        return {}
    emulator = request.getfixturevalue("yellowdog_emulator")
    return {
        "backend": "yellowdog",
        **emulator.cluster_kwargs(),
        "head_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0],
        "observability_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0],
    }


@pytest.mark.parametrize("kind", ["local", "yellowdog"])
def test_observability_node_its_address_everywhere_and_ray_metrics(kind: str, request, raydog_home) -> None:
    """One cluster per backend (head + 1 worker, default scripts; the YellowDog one through the real SDK
    against the emulator, the password in the task environment), checked for two things:

    - the observability node starts first; head and worker get its IP and ports, never Prometheus' and
      Grafana's usual ones; Ray's dashboard on the head is pointed at its Prometheus;
    - both nodes' metrics arrive there, pushed with the cluster's password; Ray's dashboard queries
      Prometheus with it; without it Prometheus refuses reads and pushes; the password reaches no log,
      state or repr, and nothing is left afterwards.

    Without Prometheus installed, the observability node is a stand-in and only the first part runs.
    """
    kwargs = backend_kwargs(kind, request)
    worker_template = {"worker_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0]} if kwargs else {}
    with_prometheus = shutil.which("prometheus") is not None
    script = {} if with_prometheus else {"observability_node_start_script": OBSERVABILITY}
    with RayDogCluster(
        cluster_name=f"obs-{kind[:5]}", enable_observability=True, **script, **kwargs
    ) as cluster:
        cluster.add_worker_pool(worker_pool_node_count=1, **worker_template)
        cluster.build()
        state = cluster.state
        roles = [pool.role for pool in state.pools]
        assert roles[0] == "head" and "observability" in roles
        observability = next(n for n in cluster.nodes() if n.role == NodeRole.OBSERVABILITY)
        assert state.observability_host == observability.private_ip
        # Nodes share this host on both backends: free ports, never Prometheus' and Grafana's usual ones.
        assert state.observability is not None
        assert {state.observability.prometheus_port, state.observability.grafana_port}.isdisjoint(
            {9090, 3000}
        )
        head_id, views = _observability_variables_of_every_node(cluster.ray_address)
        assert len(views) == 2
        for node_id, seen in views.items():
            assert seen["OBSERVABILITY_HOST"] == observability.private_ip
            assert seen["RAYDOG_PROMETHEUS_PORT"] == str(state.observability.prometheus_port)
            assert seen["RAYDOG_GRAFANA_PORT"] == str(state.observability.grafana_port)
            # The head's dashboard (and everything Ray starts there) is pointed at the observability node.
            assert seen["RAY_PROMETHEUS_HOST"] == (state.prometheus_url if node_id == head_id else None)
        if with_prometheus:
            password, texts = _ray_metrics_reach_prometheus(cluster)
    if with_prometheus:
        secrets = {"observability password": password, "its basic-auth header": _basic(f"raydog:{password}")}
        hits = scan_tree([raydog_home], secrets, allowed=_password_files(raydog_home))
        hits += [hit for where, text in texts.items() for hit in scan_text(where, text, secrets)]
        assert_no_secrets(hits)
    assert observability_password.PASSWORDS.load(state.cluster_id) is None  # deleted at shut-down
    emulator = request.getfixturevalue("yellowdog_emulator") if kwargs else None
    leaks = count_leaks(raydog_home, emulator=emulator)
    assert leaks.total == 0, leaks.describe()


def _ray_metrics_reach_prometheus(cluster: RayDogCluster) -> tuple[str, dict[str, str]]:
    """Checks the metrics path of a running cluster with default scripts; returns its observability
    password and the texts (state, reprs) that must not hold it."""
    state = cluster.state
    password = observability_password.PASSWORDS.load(state.cluster_id)
    assert password and _mode(observability_password.PASSWORDS.path(state.cluster_id)) == 0o600
    token = auth.load_token(state.cluster_id)
    exporters = {
        f"{n['raylet']['nodeManagerAddress']}:{n['raylet']['metricsExportPort']}"
        for n in alive_ray_nodes(state.dashboard_url or "", token)
    }
    assert len(exporters) == 2
    instances = _wait_for_node_metrics(state, exporters, password)
    assert instances == exporters
    health = _dashboard_get(state, token, "/api/prometheus_health")
    assert health["result"] is True, health
    for path, data in (("/api/v1/query?query=up", None), ("/api/v1/write", b"x")):
        assert _prometheus_status(state, path, data, None) == 401
        assert _prometheus_status(state, path, data, "raydog:wrong") == 401
    return password, {"state": cluster.save_state_to_json(), "repr": repr(cluster) + repr(cluster.nodes())}


def _observability_variables_of_every_node(address: str) -> tuple[str, dict[str, dict[str, str | None]]]:
    """The head's Ray node id, and Ray node id -> the observability variables a task pinned to that
    node sees."""
    ray.init(address=address)
    try:
        head_id = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and _is_head(n))
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        pinned = [
            node_view.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
            for n in nodes
        ]
        return head_id, dict(ray.get(pinned))
    finally:
        ray.shutdown()


def _is_head(node: dict[str, Any]) -> bool:
    return "node:__internal_head__" in node.get("Resources", {})


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _basic(credentials: str) -> str:
    return base64.b64encode(credentials.encode()).decode()


def _password_files(home: Path) -> list[Path]:
    """Where the password belongs: the client's file and, on nodes sharing this host, the nodes' own
    private copies (the head's, the observability node's and its Grafana datasource)."""
    return [
        home / "observability",
        *home.glob("local/*/nodes/*/home/.raydog-observability-password"),
        *home.glob("local/*/nodes/*/home/observability"),
    ]


def _prometheus_status(state: ClusterState, path: str, data: bytes | None, credentials: str | None) -> int:
    request = urllib.request.Request(f"{state.prometheus_url}{path}", data=data)
    if credentials:
        request.add_header("Authorization", f"Basic {_basic(credentials)}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


def _wait_for_node_metrics(state: ClusterState, exporters: set[str], password: str) -> set[str]:
    """The `instance` labels of the ray_node_* series in the observability node's Prometheus, once they
    cover every Ray node (or what there is after METRICS_WAIT_S)."""
    query = urllib.parse.quote('count by (instance) ({__name__=~"ray_node_.+"})')
    deadline = time.monotonic() + METRICS_WAIT_S
    instances: set[str] = set()
    request = urllib.request.Request(f"{state.prometheus_url}/api/v1/query?query={query}")
    request.add_header("Authorization", f"Basic {_basic(f'raydog:{password}')}")
    while time.monotonic() < deadline and not exporters <= instances:
        with urllib.request.urlopen(request, timeout=10) as reply:
            result = json.loads(reply.read())["data"]["result"]
        instances = {series["metric"]["instance"] for series in result}
        if not exporters <= instances:
            time.sleep(1)
    return instances


def _dashboard_get(state: ClusterState, token: str | None, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{state.dashboard_url}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def test_default_observability_script_says_what_is_missing(tmp_path) -> None:
    script = tmp_path / "observability.sh"
    script.write_text(default_script("observability"))
    result = subprocess.run(
        ["/bin/bash", str(script)],
        env={"PATH": "/nonexistent", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "prometheus is not installed" in result.stderr


def test_default_head_script_warns_once_without_prometheus(tmp_path) -> None:
    """No Prometheus on the head: one clear warning, then Ray starts anyway (here `ray` is absent too,
    so the script stops right after the warning, at `ray start`)."""
    script = tmp_path / "head.sh"
    script.write_text(default_script("head"))
    result = subprocess.run(
        ["/bin/bash", str(script)],
        env={"PATH": "/nonexistent", "HOME": str(tmp_path), "OBSERVABILITY_HOST": "127.0.0.1"},
        capture_output=True,
        text=True,
    )
    warnings = [line for line in result.stderr.splitlines() if "prometheus is not installed" in line]
    assert len(warnings) == 1 and "ray: command not found" in result.stderr


def test_grafana_provisioning_uses_rays_dashboards(tmp_path: Path) -> None:
    prometheus = "http://127.0.0.1:19090"
    (tmp_path / "password").write_text("s3cret\n")
    output = tmp_path / "grafana"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "raydog_core.observability.grafana",
            str(output),
            prometheus,
            str(tmp_path / "password"),
        ],
        check=True,
        capture_output=True,
    )
    assert loose_entries(output) == []  # the datasource holds the password
    datasources = yaml.safe_load((output / "provisioning/datasources/raydog.yml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == prometheus
    assert datasource["basicAuth"] is True and datasource["basicAuthUser"] == "raydog"
    assert datasource["secureJsonData"] == {"basicAuthPassword": "s3cret"}
    assert datasource["name"] == "Prometheus"  # the name Ray's dashboard passes to embedded panels
    providers = yaml.safe_load((output / "provisioning/dashboards/raydog.yml").read_text())["providers"]
    dashboards = Path(providers[0]["options"]["path"])
    assert dashboards == output / "dashboards"
    by_uid = {}
    for path in dashboards.glob("*.json"):
        dashboard = json.loads(path.read_text())
        by_uid[dashboard["uid"]] = dashboard
    assert "rayDefaultDashboard" in by_uid and len(by_uid) >= 2
    assert by_uid["rayDefaultDashboard"]["panels"]
    ini = (output / "grafana.ini").read_text()
    assert f"provisioning = {output / 'provisioning'}" in ini and "allow_embedding = true" in ini
    assert configparser_section(ini, "auth.anonymous") == {"enabled": "false"}


def test_observability_tunnels_follow_the_state() -> None:
    state = ClusterState(backend="local", cluster_id="c-1", cluster_name="c", cluster_namespace="raydog")
    with pytest.raises(SpecError, match="no observability node"):
        RayTunnels.observability_forwards(state)
    state.observability_host = "10.0.0.7"
    state.observability = ObservabilityState(prometheus_port=19090, grafana_port=13000)
    assert state.prometheus_url == "http://10.0.0.7:19090" and state.grafana_url == "http://10.0.0.7:13000"
    assert RayTunnels.observability_forwards(state, local_grafana_port=3000) == [
        SSHTunnelSpec(0, 19090, "10.0.0.7"),
        SSHTunnelSpec(3000, 13000, "10.0.0.7"),
    ]
    assert ClusterState.from_json(state.to_json()).observability == state.observability


def configparser_section(ini: str, section: str) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read_string(ini)
    return dict(parser[section])


@needs_prometheus
def test_default_observability_script_refuses_to_serve_without_a_password(tmp_path) -> None:
    """Prometheus would listen beyond loopback on YellowDog: never without the cluster's password."""
    script = tmp_path / "observability.sh"
    script.write_text(default_script("observability"))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RAYDOG_OBSERVABILITY_BIND": "0.0.0.0"}
    result = subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "refusing to serve metrics unprotected" in result.stderr
    assert (tmp_path / "observability").stat().st_mode & 0o077 == 0


def test_observability_node_listens_beyond_loopback_only_on_its_own_machine() -> None:
    own, shared = NodePlacement.OWN_MACHINE, NodePlacement.SHARED_HOST
    launch = NodeLaunch(role=NodeRole.OBSERVABILITY, pool_name="o", script="", env={})
    assert observability_env(own, launch, {}) == {"RAYDOG_OBSERVABILITY_BIND": "0.0.0.0"}
    assert observability_env(shared, launch, {}) == {}  # the script's loopback default
