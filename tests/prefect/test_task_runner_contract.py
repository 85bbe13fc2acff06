"""What Prefect expects of a task runner: duplicate(), ==, pickling; and the labels' shape. No cluster."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest
from prefect import flow
from pydantic import SecretStr

from raydog_core import naming
from raydog_core.spec import ClusterSpec
from raydog_core.testing.secrets_scan import assert_no_secrets, canary, scan_bytes
from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner, YellowDogCredentials, flow_run_labels
from raydog_prefect.logs import shared_forwarder_name

RUNNERS = [
    RayDogTaskRunner(),
    RayDogTaskRunner(cluster="prod", init_kwargs={"runtime_env": {"env_vars": {"A": "1"}}}),
    RayDogTaskRunner(cluster=RayDogClusterConfig(cluster_name="blk"), reuse_cluster_across_retries=False),
    RayDogTaskRunner(cluster=ClusterSpec(cluster_name="spec")),
]


@pytest.mark.parametrize("runner", RUNNERS)
def test_duplicate_equals_the_original_and_is_a_new_object(runner: RayDogTaskRunner) -> None:
    copy = runner.duplicate()
    assert copy == runner and copy is not runner
    assert copy.cluster is runner.cluster  # a Block or a name travels unchanged; loaded when entered


def test_different_settings_are_not_equal() -> None:
    assert RayDogTaskRunner("a") != RayDogTaskRunner("b")
    assert RayDogTaskRunner(init_kwargs={"num_cpus": 1}) != RayDogTaskRunner()
    assert RayDogTaskRunner(reuse_cluster_across_retries=False) != RayDogTaskRunner()
    assert RayDogTaskRunner() != object()


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
@pytest.mark.parametrize("runner", RUNNERS)
def test_pickles_to_an_equal_unstarted_runner(runner: RayDogTaskRunner, dumps) -> None:
    with runner.duplicate() as entered:  # as while a flow runs: the copy must come back unstarted
        entered._started = True
        copy = pickle.loads(dumps(entered))
        entered._started = False
    assert copy == runner and copy.settings == runner.settings
    assert not copy._started and copy.raydog_cluster is None
    with copy:  # and it can be entered: nothing of the original's run came along
        pass


def test_a_flow_with_the_runner_pickles() -> None:
    @flow(task_runner=RayDogTaskRunner(cluster="prod"))
    def pickled_flow() -> None: ...

    assert cloudpickle.loads(cloudpickle.dumps(pickled_flow)).task_runner == RayDogTaskRunner(cluster="prod")


def test_lazy_is_accepted_but_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="always built when the flow run first needs it"):
        runner = RayDogTaskRunner(lazy=True)
    assert runner == RayDogTaskRunner()


def test_connect_outside_an_entered_runner_says_so() -> None:
    with pytest.raises(RuntimeError, match="must be started"):
        RayDogTaskRunner().connect()


def test_bad_cluster_argument_is_refused_with_the_fix() -> None:
    with pytest.raises(
        TypeError, match="cluster: expected a RayDogClusterConfig Block, the name of a saved one"
    ):
        RayDogTaskRunner(cluster=42)


def test_flow_run_labels_are_valid_names_on_every_backend() -> None:
    labels = flow_run_labels("0b5c2b8e-8f3e-4c2a-9d55-8f6c1a9b3e21")
    for key in labels:
        assert naming.NAME_PATTERN.match(key), key
    assert labels == {
        "orchestrator": "prefect",
        "prefect-flow-run-id": "0b5c2b8e-8f3e-4c2a-9d55-8f6c1a9b3e21",
    }


SECRET = canary("pickled-ydsecret")


def _with_credentials() -> RayDogClusterConfig:
    credentials = YellowDogCredentials(
        application_key_id="key-id",
        application_key_secret=SecretStr(SECRET),
        platform_api_url="http://127.0.0.1:9",
    )
    return RayDogClusterConfig(
        cluster_name="secretive",
        backend="yellowdog",
        head_node_compute_requirement_template_id="tmpl",
        worker_pools=[{"worker_pool_node_count": 1, "worker_node_compute_requirement_template_id": "tmpl"}],
        yellowdog_credentials=credentials,
    )


def test_no_secret_travels_in_the_pickled_flow() -> None:
    """Prefect ships the flow, task runner included, to Ray with every task: the YellowDog key secret of
    a Block given as `cluster=` must not be in those bytes (the canary scanner looks at them)."""
    runner = RayDogTaskRunner(cluster=_with_credentials())

    @flow(task_runner=runner)
    def secretive() -> None:
        pass

    pickles = {"cloudpickle(flow)": cloudpickle.dumps(secretive), "pickle(runner)": pickle.dumps(runner)}
    for what, data in pickles.items():
        assert_no_secrets(scan_bytes(what, data, {"YellowDog key secret": SECRET}))
        loaded = pickle.loads(data)
        shipped = loaded if isinstance(loaded, RayDogTaskRunner) else loaded.task_runner
        assert shipped.cluster.yellowdog_credentials is None
        assert shipped.cluster.to_spec() == runner.cluster.to_spec()  # the cluster itself is the same
    # In this process the runner keeps what it needs to build.
    assert (
        runner.duplicate().cluster.yellowdog_credentials.application_key_secret.get_secret_value() == SECRET
    )


def test_a_shared_log_forwarder_is_named_by_the_prefect_api_it_sends_to() -> None:
    """Runs sharing a warm cluster share a log forwarder only when they send to the same Prefect API with
    the same key; other settings do not split them. The name carries a digest, never a setting's value."""
    key = canary("prefect-key")
    cloud = {"settings": {"api": {"url": "https://api.example/ws", "key": key}}}
    other_key = {"settings": {"api": {"url": "https://api.example/ws", "key": canary("other-key")}}}
    other_url = {"settings": {"api": {"url": "https://api.example/other", "key": key}}}
    louder = {
        "settings": {"api": {"url": "https://api.example/ws", "key": key}, "logging": {"level": "DEBUG"}}
    }
    name = shared_forwarder_name(cloud)
    assert name == shared_forwarder_name(pickle.loads(pickle.dumps(cloud)))  # as a task receives them
    assert name == shared_forwarder_name(louder)
    assert len({name, shared_forwarder_name(other_key), shared_forwarder_name(other_url)}) == 3
    assert "example" not in name and key.rsplit("-", 1)[1][:8] not in name
