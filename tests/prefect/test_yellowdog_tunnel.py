"""The YellowDog path through a real SSH tunnel: Ray Client (`ray://`) to the head via OpenSSH sshd.

The emulator's instances are processes on this machine with public IP 127.0.0.1, and the `ssh_server`
fixture is a real sshd on 127.0.0.1, so `ray_connection="ssh-tunnel"` opens a real SSH connection that
forwards a local port to the head's Ray client server. The test proves the flow's Ray traffic used the
tunnel (its address is the tunnel's local port, held open by this process over an SSH connection) and
that the tunnel, the cluster and every emulated resource are gone afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from prefect import flow, task
from prefect.context import FlowRunContext
from pydantic import SecretStr
from ray import cloudpickle

from raydog_core.errors import SpecError
from raydog_core.ports import is_listening
from raydog_core.spec import NodeResources
from raydog_core.testing.emulator import DEFAULT_TEMPLATES
from raydog_core.testing.services import SSHServer
from raydog_core.tunnels import LOOPBACK
from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner, YellowDogCredentials

pytestmark = pytest.mark.slow

# Through Ray Client the driver runs on the head, which cannot import this test module (nor, on real
# YellowDog, a user's flow module): ship its functions by value, as users do with a runtime_env.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@task
def double(x: int) -> int:
    return 2 * x


def _connections_of_this_process() -> list[Any]:
    return psutil.Process(os.getpid()).net_connections(kind="tcp")


def _seen_from_inside_the_flow(ssh: SSHServer) -> dict[str, Any]:
    """Where the running task runner sends Ray traffic, and which sockets this process holds for it."""
    runner = FlowRunContext.get().task_runner
    head = runner.raydog_cluster.state.head
    connection = runner._connection
    local_port = connection.tunnels.local_port(head.client_port)
    sockets = _connections_of_this_process()
    return {
        "address": runner.address,
        "head_client_port": head.client_port,
        "local_port": local_port,
        "listening_here": any(
            c.status == psutil.CONN_LISTEN and c.laddr == (LOOPBACK, local_port) for c in sockets
        ),
        "ssh_connected": any(
            c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == ssh.port for c in sockets
        ),
        "tunnel_ports": list(connection.tunnels.local_ports().values()),
        "lease_url": connection.lease_url,
        "lease_tunnelled": connection.lease_url
        == f"http://{LOOPBACK}:{connection.tunnels.local_port(head.lease_port)}",
        "lease_holders": [lease["holder"] for lease in runner.raydog_cluster.lease_view()["leases"]],
        "flow_run_id": str(FlowRunContext.get().flow_run.id),
    }


def _config(emulator, ssh: SSHServer, **ssh_overrides: Any) -> RayDogClusterConfig:
    (template,) = DEFAULT_TEMPLATES
    credentials = emulator.cluster_kwargs()
    ssh_settings = {
        "ssh_user": ssh.user,
        "ssh_private_key_file": str(ssh.client_key),
        "ssh_port": ssh.port,
        "ssh_known_hosts_file": str(ssh.known_hosts),
        **ssh_overrides,
    }
    return RayDogClusterConfig(
        backend="yellowdog",
        cluster_name="prefect-yd-tunnel",
        head_node_compute_requirement_template_id=template,
        head_node_resources=NodeResources(num_cpus=2),
        worker_pools=[],
        ray_connection="auto",  # YellowDog + ssh_user -> Ray Client through an SSH tunnel
        yellowdog_credentials=YellowDogCredentials(
            application_key_id=credentials["yd_application_key_id"],
            application_key_secret=SecretStr(credentials["yd_application_key_secret"]),
            platform_api_url=credentials["yd_platform_api_url"],
        ),
        **ssh_settings,
    )


def test_unusable_ssh_settings_fail_before_any_yellowdog_call(
    yellowdog_emulator, ssh_server: SSHServer, tmp_path: Path
) -> None:
    config = _config(yellowdog_emulator, ssh_server, ssh_private_key_file=str(tmp_path / "no-such-key"))
    calls = yellowdog_emulator.calls

    @flow(task_runner=RayDogTaskRunner(cluster=config))
    def never_connects() -> None:
        double.submit(1).result()  # the cluster is provided on the first submission

    with pytest.raises(SpecError, match="ssh_private_key_file"):
        never_connects()
    assert yellowdog_emulator.calls == calls


def test_flow_reaches_yellowdog_head_through_a_real_ssh_tunnel(
    yellowdog_emulator, ssh_server: SSHServer
) -> None:
    config = _config(yellowdog_emulator, ssh_server)

    @flow(task_runner=RayDogTaskRunner(cluster=config))
    def through_the_tunnel() -> tuple[list[int], dict[str, Any]]:
        results = double.map(range(3)).result()
        return results, _seen_from_inside_the_flow(ssh_server)

    results, seen = through_the_tunnel()

    assert results == [0, 2, 4]
    assert seen["address"] == f"ray://{LOOPBACK}:{seen['local_port']}"
    assert seen["local_port"] != seen["head_client_port"]
    assert seen["listening_here"], "the tunnel's local end was not a socket of this process"
    assert seen["ssh_connected"], "no SSH connection to the sshd carried the tunnel"
    # The flow run's lease went the way its Ray traffic went: through the tunnel, taken by the runner.
    assert seen["lease_tunnelled"], seen["lease_url"]
    assert seen["lease_holders"] == [f"prefect-flow-run:{seen['flow_run_id']}"]

    assert not any(is_listening(LOOPBACK, port) for port in seen["tunnel_ports"])
    assert not any(
        c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == ssh_server.port
        for c in _connections_of_this_process()
    ), "the SSH connection of the tunnel is still open"
    assert yellowdog_emulator.wait_until_clean() == []
