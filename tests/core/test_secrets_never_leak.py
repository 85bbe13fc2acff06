"""Canary secrets (a YellowDog key secret, a Ray token) planted into real builds never show up in what the
builds leave behind: RAYDOG_HOME (state, manifests, node logs, kept Ray session logs), log records,
reprs, exception messages, or the emulator's node sandboxes."""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from raydog_core import RayDogCluster, RayDogClusterProxy, auth
from raydog_core.credentials import YellowDogCredentials
from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator
from raydog_core.testing.secrets_scan import (
    SecretHit,
    assert_no_secrets,
    canary,
    emulator_with_key_secret,
    scan_text,
    scan_tree,
)

RAY_TOKEN = canary("raytoken")
YD_SECRET = canary("ydsecret")
CANARIES = {"Ray token": RAY_TOKEN, "YellowDog key secret": YD_SECRET}
FAILING_HEAD = "#!/usr/bin/env bash\necho 'head: cannot start' >&2\nexit 3\n"


@ray.remote(num_cpus=1)
def ping() -> str:
    return "pong"


@pytest.fixture(autouse=True)
def planted_ray_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.TOKEN_ENV_VAR, RAY_TOKEN)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture(scope="module")
def canary_emulator() -> Iterator[Emulator]:
    """An emulator that only accepts the canary key secret (leak-checked like `yellowdog_emulator`)."""
    with emulator_with_key_secret(YD_SECRET) as emulator:
        yield emulator


def scan_everything(
    home: Path, logs: pytest.LogCaptureFixture, texts: dict[str, str], extra_roots: tuple[Path, ...] = ()
) -> list[SecretHit]:
    """Hits in files (the 0600 token files are where the token belongs), log records and given texts."""
    hits = scan_tree([home, *extra_roots], CANARIES, allowed=[home / "tokens"])
    for record in logs.records:
        hits += scan_text(f"log record {record.name}", record.getMessage(), CANARIES)
        if record.exc_text:
            hits += scan_text(f"log traceback {record.name}", record.exc_text, CANARIES)
    for where, text in texts.items():
        hits += scan_text(where, text, CANARIES)
    return hits


def test_scanner_finds_plain_and_escaped_secrets_and_skips_allowed_and_binary(tmp_path: Path) -> None:
    (tmp_path / "plain.log").write_text(f"token={RAY_TOKEN}\n")
    (tmp_path / "escaped.json").write_text('{"s": "' + "ab\\n" + '"}')
    (tmp_path / "binary.bin").write_bytes(b"\0" + RAY_TOKEN.encode())
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "c1").write_text(RAY_TOKEN)
    (tmp_path / "clean.txt").write_text("nothing here")
    with tarfile.open(tmp_path / "bundle.tar.gz", "w:gz") as archive:  # a post-mortem bundle
        archive.add(tmp_path / "plain.log", arcname="logs/head.log")
    hits = scan_tree(
        [tmp_path], {"Ray token": RAY_TOKEN, "multi-line": "ab\n"}, allowed=[tmp_path / "tokens"]
    )
    assert sorted((h.where.removeprefix(f"{tmp_path}/"), h.secret) for h in hits) == [
        ("bundle.tar.gz!logs/head.log", "Ray token"),
        ("escaped.json", "multi-line"),
        ("plain.log", "Ray token"),
    ]
    with pytest.raises(AssertionError) as failure:
        assert_no_secrets(hits)
    assert "Ray token found in" in str(failure.value) and RAY_TOKEN not in str(failure.value)


@pytest.mark.slow
def test_local_build_uses_the_planted_token_and_leaks_nothing(
    raydog_home: Path, all_logs: pytest.LogCaptureFixture
) -> None:
    cluster = RayDogCluster(cluster_name="canary-local")
    cluster.add_worker_pool(worker_pool_node_count=1, worker_pool_internal_name="cpu")
    texts: dict[str, str] = {}
    try:
        cluster.build()
        assert auth.load_token(cluster.state.cluster_id) == RAY_TOKEN  # the planted token is the cluster's
        # Positive control: the scanner does see the token in the one place it belongs.
        assert scan_tree([raydog_home / "tokens"], CANARIES) == [
            SecretHit(str(auth.token_path(cluster.state.cluster_id)), "Ray token")
        ]
        ray.init(address=cluster.ray_address)
        assert ray.get(ping.remote(), timeout=60) == "pong"
        ray.shutdown()
        state_json = cluster.save_state_to_json()
        proxy = RayDogClusterProxy()
        proxy.load_saved_state_from_json(state_json)
        texts = {
            "state JSON": state_json,
            "cluster repr": repr(cluster),
            "state repr": repr(cluster.state),
            "proxy repr": repr(proxy),
            "client environment": str(cluster.client_environment()),
        }
        live_hits = scan_tree([raydog_home], CANARIES, allowed=[raydog_home / "tokens"])
    finally:
        ray.shutdown()
        cluster.shut_down()
    assert not auth.token_path(cluster.state.cluster_id).exists()
    kept_ray_logs = list((raydog_home / "local" / cluster.state.cluster_id / "logs").glob("*.ray/*.log"))
    assert kept_ray_logs, "the nodes' Ray session logs should be kept (and scanned)"
    bundle = cluster.post_mortem
    assert bundle is not None and bundle.path.is_relative_to(raydog_home), "the post-mortem is scanned too"
    with tarfile.open(bundle.path) as archive:
        assert any(name.endswith("raylet.out") for name in archive.getnames()), archive.getnames()
    assert_no_secrets(live_hits + scan_everything(raydog_home, all_logs, texts))


@pytest.mark.slow
def test_yellowdog_build_with_ray_leaks_neither_secret(
    raydog_home: Path, canary_emulator: Emulator, all_logs: pytest.LogCaptureFixture
) -> None:
    cluster = RayDogCluster(
        cluster_name="canary-yd",
        backend="yellowdog",
        **canary_emulator.cluster_kwargs(),
        cluster_namespace="raydog-test",
        head_node_compute_requirement_template_id=DEFAULT_TEMPLATES[0],
    )
    try:
        cluster.build()
        ray.init(address=cluster.ray_address)
        assert ray.get(ping.remote(), timeout=60) == "pong"
        ray.shutdown()
        texts = {"state JSON": cluster.save_state_to_json(), "cluster repr": repr(cluster)}
        live_hits = scan_tree([raydog_home, canary_emulator.root], {"YellowDog key secret": YD_SECRET})
    finally:
        ray.shutdown()
        cluster.shut_down()
    hits = scan_everything(raydog_home, all_logs, texts)
    # The Ray token travels to nodes in the task environment (YellowDog stores it with the task); the
    # key secret never leaves the client.
    hits += scan_tree([canary_emulator.root], {"YellowDog key secret": YD_SECRET})
    assert_no_secrets(live_hits + hits)


@pytest.mark.slow
def test_failures_name_no_secret(
    raydog_home: Path, canary_emulator: Emulator, all_logs: pytest.LogCaptureFixture
) -> None:
    """A head that dies, and a wrong key: the errors say what failed, not the secrets."""
    cluster = RayDogCluster(
        cluster_name="canary-fail",
        backend="yellowdog",
        **canary_emulator.cluster_kwargs(),
        cluster_namespace="raydog-test",
        head_node_compute_requirement_template_id=DEFAULT_TEMPLATES[0],
        head_node_ray_start_script=FAILING_HEAD,
    )
    with pytest.raises(Exception) as failed:
        cluster.build()
    wrong_secret = canary("wrongsecret")
    wrong = RayDogCluster(
        cluster_name="canary-wrong-key",
        backend="yellowdog",
        **{**canary_emulator.cluster_kwargs(), "yd_application_key_secret": wrong_secret},
        cluster_namespace="raydog-test",
        head_node_compute_requirement_template_id=DEFAULT_TEMPLATES[0],
    )
    with pytest.raises(Exception) as refused:
        wrong.build()
    credentials = canary_emulator.credentials()
    assert isinstance(credentials, YellowDogCredentials)
    texts = {
        "head failure message": str(failed.value),
        "head failure repr": repr(failed.value),
        "wrong key message": str(refused.value),
        "wrong key repr": repr(refused.value),
        "credentials repr": repr(credentials),
        "credentials str": str(credentials),
        "credentials dump": str(credentials.model_dump()),
    }
    assert "exit code 3" in str(failed.value)
    hits = scan_everything(raydog_home, all_logs, texts)
    hits += [SecretHit(where, "wrong key secret") for where, text in texts.items() if wrong_secret in text]
    assert_no_secrets(hits)


def test_planted_token_is_used_and_blank_means_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth.cluster_token() == RAY_TOKEN
    monkeypatch.setenv(auth.TOKEN_ENV_VAR, "  ")
    generated = auth.cluster_token()
    assert generated != RAY_TOKEN and len(generated) == 64
