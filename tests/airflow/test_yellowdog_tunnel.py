"""The YellowDog path through a real SSH tunnel: the Ray Jobs API of the head reached via OpenSSH sshd.

The emulator's instances are processes on this machine with public IP 127.0.0.1, and the `ssh_server`
fixture is a real sshd on 127.0.0.1; a connection naming an SSH user makes RayDogSubmitJobOperator open
a real SSH tunnel to the head's dashboard. The key is given as text (as in an Airflow connection), so the
private temporary key file is exercised too. The test proves the job went through the tunnel (the job
client's URL is the tunnel's local port, not the head's dashboard port) and that the tunnel, its key
file, the cluster and every emulated resource are gone afterwards, with no secret in logs or XCom.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from dag_runs import live, load_dag, task_states, xcom_rows, xcom_value

from raydog_core.ports import is_listening
from raydog_core.state import ClusterState
from raydog_core.testing.emulator import Emulator
from raydog_core.testing.services import SSHServer

pytestmark = pytest.mark.slow

JOB_CLIENT_URL = re.compile(r"through the Ray Jobs API at http://127\.0\.0\.1:(\d+)")


def test_yellowdog_dag_reaches_the_jobs_api_through_a_real_ssh_tunnel(
    airflow_db: Path,
    raydog_home: Path,
    yellowdog_emulator: Emulator,
    ssh_server: SSHServer,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    kwargs = yellowdog_emulator.cluster_kwargs()
    secret = kwargs["yd_application_key_secret"]
    private_key = ssh_server.client_key.read_text()
    connection = {
        "conn_type": "raydog",
        "host": kwargs["yd_platform_api_url"],
        "login": kwargs["yd_application_key_id"],
        "password": secret,
        "extra": {
            "backend": "yellowdog",
            "namespace": "raydog-airflow",
            "ssh_user": ssh_server.user,
            "ssh_private_key": private_key,
            "ssh_port": str(ssh_server.port),
            "ssh_known_hosts_file": str(ssh_server.known_hosts),
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_RAYDOG_YD", json.dumps(connection))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a key file would show up

    dag_run = load_dag("raydog_test_yellowdog").test()

    states = task_states(dag_run)
    assert str(dag_run.state) == "success", states
    output = capfd.readouterr()
    logs = output.out + output.err
    assert "yellowdog job sees 2 nodes" in logs
    head = ClusterState.from_json(xcom_value(dag_run, "build_cluster")).head
    tunnel_ports = {int(port) for port in JOB_CLIENT_URL.findall(logs)}
    assert tunnel_ports, "the job operator did not log the Ray Jobs API URL it used"
    assert head.dashboard_port not in tunnel_ports, "the job went to the head's dashboard directly"
    assert not any(is_listening("127.0.0.1", port) for port in tunnel_ports), "a tunnel is still open"
    assert not list(tmp_path.glob("raydog-ssh-*")), "the SSH key was written to a file"

    xcoms = json.dumps([row[2] for row in xcom_rows(dag_run)])
    for leaked in (secret, private_key.strip().splitlines()[1]):
        assert leaked not in xcoms
        assert leaked not in logs
    assert yellowdog_emulator.wait_until_clean() == []
    assert live(raydog_home) == []
