"""bootstrap_config validation, `file:` resolution and the local runner's `ray stop` interception."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import yaml
from ray.autoscaler._private.subprocess_output_util import ProcessRunnerError

from raydog_core import commands
from raydog_core.autoscaler import RayDogNodeProvider
from raydog_core.autoscaler.config import parse_provider_config
from raydog_core.autoscaler.runner import LocalCommandRunner, RunningCommands, is_ray_stop
from raydog_core.backends.base import BackendCapabilities, ClusterRecord
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.errors import SpecError, StateError
from raydog_core.lifecycle import shut_down_cluster
from raydog_core.processes import wait_until
from raydog_core.testing.leaks import count_leaks

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "autoscaler"


def _config(**provider: object) -> dict:
    config = yaml.safe_load((EXAMPLES / "local.yaml").read_text())
    config["provider"].update(provider)
    return config


def test_example_bootstraps_with_node_types_and_auth_copied() -> None:
    config = RayDogNodeProvider.bootstrap_config(_config())
    provider = parse_provider_config(config["provider"])
    assert provider.auth == {"ssh_user": "raydog"}
    worker = provider.node_types["ray_worker_small"]
    assert worker.pool_name == "raydog-local-w1"
    assert (worker.resources.num_cpus, worker.resources.memory_mb, worker.resources.object_store_mb) == (
        2,
        1024,
        128,
    )
    assert provider.node_types["ray_head_default"].pool_name == "raydog-local-head"


def test_file_references_resolve_relative_to_the_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "worker.sh").write_text("#!/bin/bash\necho custom worker\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.csv").write_text("a,b\n")
    yaml_path = tmp_path / "cluster.yaml"
    yaml_path.write_text(
        yaml.safe_dump(
            _config(ray_worker_node_task_script="file:scripts/worker.sh", files_to_upload=["data/input.csv"])
        )
    )
    monkeypatch.chdir("/")
    monkeypatch.setattr("sys.argv", ["ray", "up", str(yaml_path)])
    config = RayDogNodeProvider.bootstrap_config(yaml.safe_load(yaml_path.read_text()))
    provider = parse_provider_config(config["provider"])
    assert provider.script("worker") == "#!/bin/bash\necho custom worker\n"
    assert "ray start --head" in provider.script("head")  # the default head script
    (upload,) = provider.files_to_upload
    assert upload.target == "data/input.csv" and Path(upload.source) == tmp_path / "data" / "input.csv"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"provider.clusternamespace": "x"}, "provider.clusternamespace"),
        ({"provider.ray_worker_node_task_script": "file:missing.sh"}, "provider.ray_worker_node_task_script"),
        ({"provider.disable_node_updaters": False}, "provider.disable_node_updaters"),
        ({"provider.cluster_namespace": "Bad Name"}, "provider.cluster_namespace"),
        ({"head_start_ray_commands": ["ray stop", "ray start --head"]}, "head_start_ray_commands"),
        ({"head_node_type": "nope"}, "head_node_type"),
        ({"cluster_name": "Has Spaces"}, "cluster_name"),
        ({"provider.max_node_hours": 5}, "provider.max_node_hours"),  # local nodes cost nothing
        ({"provider.node_placement": "shared_host"}, "provider.node_placement"),  # yellowdog only
        (
            {"provider.backend": "yellowdog"},
            "available_node_types.ray_head_default.node_config.compute_requirement_template",
        ),
    ],
)
def test_bad_config_names_the_field(change: dict, field: str) -> None:
    config = _config()
    for dotted, value in change.items():
        target = config
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    with pytest.raises(SpecError) as error:
        RayDogNodeProvider.bootstrap_config(config)
    assert error.value.field == field


def test_autoscaler_v1_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_UP_enable_autoscaler_v2", "0")
    with pytest.raises(SpecError, match="autoscaler v2"):
        RayDogNodeProvider.bootstrap_config(_config())


@pytest.mark.parametrize(
    "command",
    [
        "ray stop",
        "ray stop --force",
        "export RAY_HEAD_IP=1.2.3.4; export RAY_CLOUD_INSTANCE_ID=n1; ray stop",
        "true && ray  stop",
        "  ray stop\n",
    ],
)
def test_ray_stop_is_recognised_in_every_form_ray_sends(command: str) -> None:
    assert is_ray_stop(command)


@pytest.mark.parametrize("command", ["ray status", "echo ray stop", "python ~/ray_stopwatch.py", "uptime"])
def test_other_commands_are_not_ray_stop(command: str) -> None:
    assert not is_ray_stop(command)


def test_runner_stops_only_its_node_and_runs_commands_in_the_node_home(tmp_path: Path) -> None:
    stopped: list[str] = []
    runner = LocalCommandRunner(
        "n7", tmp_path / "home", lambda: {"RAY_ADDRESS": "127.0.0.1:1"}, stopped.append, RunningCommands()
    )
    assert runner.run("export RAY_HEAD_IP=x; ray stop") == "" and stopped == ["n7"]
    runner.run_rsync_up(str(EXAMPLES / "scale_up.py"), "~/jobs/scale_up.py")
    out = runner.run("cat ~/jobs/scale_up.py | head -1; echo $RAY_ADDRESS; echo $FOO", with_output=True,
                     environment_variables={"FOO": {"a": 1}})  # fmt: skip
    assert out.splitlines()[1:] == ["127.0.0.1:1", '{"a": 1}']
    assert (tmp_path / "home" / "jobs" / "scale_up.py").is_file()
    with pytest.raises(Exception, match="outside"):
        runner.run_rsync_up(str(EXAMPLES / "scale_up.py"), "/etc/scale_up.py")
    with pytest.raises(Exception, match="leaves"):
        runner.run_rsync_up(str(EXAMPLES / "scale_up.py"), "~/../escape.py")


def test_yellowdog_example_bootstraps(monkeypatch: pytest.MonkeyPatch) -> None:
    path = EXAMPLES / "raydog.yaml"
    monkeypatch.setattr("sys.argv", ["ray", "up", str(path)])
    config = RayDogNodeProvider.bootstrap_config(yaml.safe_load(path.read_text()))
    provider = parse_provider_config(config["provider"])
    assert provider.backend == "yellowdog" and provider.auth["ssh_user"] == "yd-agent"
    worker = provider.node_types["ray_worker_small"]
    assert worker.yellowdog.compute_requirement_template_id.startswith("yd-demo/")
    assert "redis-server" in worker.yellowdog.userdata  # file:node-setup.sh, inlined


def test_running_commands_stop_with_their_cluster(tmp_path: Path) -> None:
    """A setup command still running when `ray up` is interrupted is stopped with the cluster."""
    commands = RunningCommands()
    runner = LocalCommandRunner("n1", tmp_path / "home", dict, lambda node_id: None, commands)
    pid_file = tmp_path / "home" / "pid"

    def run() -> None:
        with contextlib.suppress(ProcessRunnerError):
            runner.run(f"echo $$ > {pid_file}; sleep 60; true")

    thread = threading.Thread(target=run)
    thread.start()
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 10)
    pid = int(pid_file.read_text())
    assert wait_until(lambda: bool(psutil.Process(pid).children()), 10)
    sleeper = psutil.Process(pid).children()[0]
    commands.stop_all(close=True)
    thread.join(timeout=10)
    assert not thread.is_alive(), "the command was not stopped"
    # bash may outlive SIGTERM and finish its script: the next command must not start at all.
    with pytest.raises(ProcessRunnerError, match="shut down"):
        runner.run("sleep 60")
    assert wait_until(lambda: _gone(sleeper), 10), "the command's child was left running"


def _gone(process: psutil.Process) -> bool:
    """Stopped; a zombie counts as stopped (whoever inherited it reaps it in its own time)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_command_is_recorded_and_stopped_by_whoever_ends_the_cluster(tmp_path: Path, raydog_home) -> None:
    """`ray exec` in one process; `raydog down` (here: the shared shut-down path) in another finds the
    command through its record, stops it, and the leak count sees nothing left."""
    runner = LocalCommandRunner(
        "n1", tmp_path / "home", dict, lambda node_id: None, RunningCommands(), lambda: ("c-cmd-1", 600.0)
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.run("sleep 60")
        except ProcessRunnerError as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    assert wait_until(lambda: len(commands.live("c-cmd-1")) == 1, 10), "the command was not recorded"
    assert count_leaks(raydog_home, wait_s=0).commands, "the leak count does not see the command"
    with pytest.raises(StateError, match="no local cluster"):  # no nodes here: the commands go first
        shut_down_cluster(LocalBackend(raydog_home / "local"), "c-cmd-1")
    thread.join(timeout=10)
    assert not thread.is_alive() and errors, "the command was not stopped with its cluster"
    assert commands.live("c-cmd-1") == [] and count_leaks(raydog_home, wait_s=0).total == 0


def test_a_command_ends_with_the_clusters_lifetime(tmp_path: Path, raydog_home) -> None:
    runner = LocalCommandRunner(
        "n1", tmp_path / "home", dict, lambda node_id: None, RunningCommands(), lambda: ("c-cmd-2", 1.0)
    )
    with pytest.raises(ProcessRunnerError, match="code 124"):  # coreutils' timeout
        runner.run("sleep 60")
    assert commands.live("c-cmd-2") == []


class _Clusters:
    """A backend's read side that lists fixed clusters (enough for the provider's lookup)."""

    kind = "local"
    capabilities = BackendCapabilities(nodes_reachable=True, nodes_on_client_host=True)

    def __init__(self, records: list[ClusterRecord]) -> None:
        self.records = records

    def list_clusters(self) -> list[ClusterRecord]:
        return list(self.records)


def test_the_provider_finds_its_cluster_by_namespace_and_name() -> None:
    """Someone else's cluster of the same name in another namespace is never taken for ours."""

    def record(cluster_id: str, namespace: str, minute: int) -> ClusterRecord:
        labels = {"raydog-autoscaler": "true"}
        created = datetime(2026, 1, 1, 0, minute, tzinfo=UTC)
        return ClusterRecord(cluster_id, "raydog-local", "local", labels, created, 1, "running", namespace)

    config = RayDogNodeProvider.bootstrap_config(_config(cluster_namespace="team-a"))
    theirs_newer, ours = record("theirs", "team-b", 30), record("ours", "team-a", 10)
    provider = RayDogNodeProvider(config["provider"], "raydog-local", backend=_Clusters([theirs_newer, ours]))
    assert provider._find_cluster().cluster_id == "ours"
    alone = RayDogNodeProvider(config["provider"], "raydog-local", backend=_Clusters([theirs_newer]))
    assert alone._find_cluster() is None
