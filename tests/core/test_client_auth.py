"""The process's Ray auth settings are RayDog's only while a cluster is in use, then exactly as before."""

from __future__ import annotations

import os

import pytest

from raydog_core.client_auth import AUTH_VARIABLES, ClientAuthScope, any_open


@pytest.fixture
def clean_auth(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    for key in AUTH_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # what the user had before RayDog
    return {key: os.environ.get(key) for key in AUTH_VARIABLES}


def _current() -> dict[str, str | None]:
    return {key: os.environ.get(key) for key in AUTH_VARIABLES}


def token_env(name: str) -> dict[str, str]:
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": f"/nonexistent/{name}"}


def test_a_scope_sets_and_restores(clean_auth: dict[str, str | None]) -> None:
    with ClientAuthScope(token_env("a")):
        assert os.environ["RAY_AUTH_TOKEN_PATH"] == "/nonexistent/a"
        assert any_open()
    assert _current() == clean_auth and not any_open()


def test_closing_an_older_scope_first_still_restores_the_original(clean_auth: dict[str, str | None]) -> None:
    first = ClientAuthScope(token_env("a")).open()
    second = ClientAuthScope(token_env("b")).open()
    first.close()
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == "/nonexistent/b"  # the newer one is still in use
    second.close()
    second.close()  # idempotent
    assert _current() == clean_auth


def test_closing_in_order_restores_step_by_step(clean_auth: dict[str, str | None]) -> None:
    with ClientAuthScope(token_env("a")):
        with ClientAuthScope({"RAY_AUTH_MODE": "disabled"}):
            assert "RAY_AUTH_TOKEN_PATH" not in os.environ
        assert os.environ["RAY_AUTH_TOKEN_PATH"] == "/nonexistent/a"
    assert _current() == clean_auth


def test_only_auth_variables_and_no_token_in_repr(clean_auth: dict[str, str | None]) -> None:
    with pytest.raises(ValueError, match="PATH"):
        ClientAuthScope({"PATH": "/"})
    scope = ClientAuthScope({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "s3cr3t-canary"})
    assert "s3cr3t-canary" not in repr(scope)
