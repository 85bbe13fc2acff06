"""`ray up` / `ray exec` / `ray submit` / `ray down` on the YellowDog backend, through the real
yellowdog-sdk against the emulator, with the client reaching the tag store through a real SSH tunnel
(OpenSSH sshd on loopback). Nothing may be left alive on the emulated platform afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from autoscaler_cli import cluster_name, ray_cli, write_config

from raydog_core.testing.emulator import DEFAULT_TEMPLATES

pytestmark = pytest.mark.slow


def test_yellowdog_lifecycle_through_the_emulator(
    raydog_home: Path, yellowdog_emulator, ssh_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in yellowdog_emulator.environment().items():
        monkeypatch.setenv(key, value)
    template = {"compute_requirement_template": DEFAULT_TEMPLATES[0]}
    name = cluster_name("yd")
    config = write_config(
        tmp_path,
        name,
        idle_timeout_minutes=0.25,
        max_workers=1,
        auth={"ssh_user": ssh_server.user, "ssh_private_key": str(ssh_server.client_key)},
        **{
            "provider.backend": "yellowdog",
            "provider.node_placement": "shared_host",  # the emulator's instances share this host
            "provider.autoscaler_update_interval_s": 1,
            "provider.head_node_tag_server_port": 0,
            "provider.tag_store_via_ssh": True,
            "provider.ssh_port": ssh_server.port,
            "provider.known_hosts_file": str(ssh_server.known_hosts),
            "available_node_types.ray_head_default.node_config": template,
            "available_node_types.ray_worker_small.node_config": template,
            "available_node_types.ray_worker_small.max_workers": 1,
        },
    )
    try:
        ray_cli("up", "-y", "--no-config-cache", str(config))
        status = ray_cli("exec", str(config), "ray status").stdout
        assert "ray_head_default" in status
        result = ray_cli("submit", str(config), str(tmp_path / "scale_up.py"))
        assert "4 tasks ran on 1 worker node(s)" in result.stdout
    finally:
        ray_cli("down", "-y", str(config), check=False)
    assert yellowdog_emulator.wait_until_clean(30) == []
    assert not (raydog_home / "autoscaler").exists() or not any((raydog_home / "autoscaler").iterdir())
    assert os.environ["YD_API_URL"] == yellowdog_emulator.url
