"""The backend's one way to call the YellowDog platform, and to read what it answers.

Every call retries transient errors (`retry`) and turns a rejected key or an unreachable platform into an
error that says what to check. The SDK types most fields of the platform's replies as optional (its
models also build requests); the helpers here read the ones the platform always fills in, so a reply
without one is reported as the platform's error, not met later as a None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import requests
from yellowdog_client.compute import ComputeClient
from yellowdog_client.model import (
    Instance,
    InstanceSearch,
    NodeSearch,
    ProvisionedWorkerPool,
    TaskGroup,
    WorkerPool,
    WorkRequirement,
)
from yellowdog_client.model.exceptions import InvalidRequestException, NotAuthorisedException
from yellowdog_client.platform_client import PlatformClient

from raydog_core.backends.yellowdog.client import create_client
from raydog_core.backends.yellowdog.retry import with_retry
from raydog_core.credentials import YellowDogCredentials
from raydog_core.errors import RayDogError, SpecError

T = TypeVar("T")


class Api:
    """The SDK client for a set of credentials, and how every call through it is made."""

    def __init__(self, credentials: YellowDogCredentials) -> None:
        self.client: PlatformClient = create_client(credentials)
        self.api_url = credentials.api_url
        self._key_id = credentials.key_id

    def call(self, call: Callable[[], T], what: str) -> T:
        try:
            return with_retry(call, what)
        except NotAuthorisedException:
            raise SpecError(
                "yd_application_key_id",
                f"the YellowDog platform at {self.api_url} rejected the application key {self._key_id!r}",
                "check yd_application_key_id / yd_application_key_secret (or YD_API_KEY_ID / YD_API_KEY_SECRET)",
            ) from None
        except requests.ConnectionError:
            raise RayDogError(
                f"cannot reach the YellowDog platform at {self.api_url} ({what}): check yd_platform_api_url / YD_API_URL"
            ) from None

    def find(self, call: Callable[[], T], what: str) -> T | None:
        """A lookup by name; None when the platform has nothing of that name (it refuses the request)."""
        try:
            return self.call(call, what)
        except InvalidRequestException:
            return None

    def close(self) -> None:
        self.client.close()


def present(value: T | None, what: str) -> T:
    """A field the SDK types as optional (its models also build requests) but the platform always fills
    in on what it returns: a reply without it is the platform's error, and is reported as one."""
    if value is None:
        raise RayDogError(f"the YellowDog platform returned no {what}")
    return value


def finished(requirement: WorkRequirement) -> bool:
    return present(requirement.status, "work requirement status").finished


def provisioned(pool: WorkerPool) -> ProvisionedWorkerPool:
    """The SDK types pool lookups as the abstract WorkerPool; every pool RayDog makes is provisioned."""
    if not isinstance(pool, ProvisionedWorkerPool):
        raise RayDogError(f"worker pool {pool.name} is a {type(pool).__name__}, not one RayDog provisioned")
    return pool


def worker_tag(group: TaskGroup) -> str | None:
    """The pool a task group's tasks run on: its worker tag, which is the pool's name."""
    tags = group.runSpecification.workerTags if group.runSpecification else None
    return tags[0] if tags else None


def all_instances(compute: ComputeClient, search: InstanceSearch) -> list[Instance]:
    return compute.get_instances(search).list_all()


def node_search(pool_id: str) -> NodeSearch:
    return NodeSearch(workerPoolId=pool_id)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
