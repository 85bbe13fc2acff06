"""Which failures a task's retries are for: only RayDog's infrastructure errors (a boot that timed out, a
machine that was lost). A bad spec, a node script that exits, a used-up spend cap or stale state would
fail again on every retry, so they fail the task for good (`AirflowFailException`), and the DAG's
teardown runs at once instead of after the retries' delays."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from airflow.exceptions import AirflowFailException

from raydog_core.errors import InfrastructureError, RayDogError

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def retried_only_if_infrastructure() -> Iterator[None]:
    try:
        yield
    except InfrastructureError:
        raise
    except RayDogError as error:
        raise AirflowFailException(
            f"{type(error).__name__}: {error} (not retried: it would fail again)"
        ) from error


def retry_only_infrastructure(method: Callable[P, R]) -> Callable[P, R]:
    """An operator method whose RayDog errors are final unless they are infrastructure errors."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with retried_only_if_infrastructure():
            return method(*args, **kwargs)

    return wrapper
