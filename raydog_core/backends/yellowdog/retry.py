"""Transient platform errors: retried with bounded, jittered back-off; everything else raised at once.

The SDK already retries 429 and 5xx answers inside each request (RetryProperties, `client.py`); this
outer loop also covers connection resets and the last 5xx an exhausted SDK retry hands back, for the
calls RayDog makes while building and tearing down, where giving up early would strand resources.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import requests
from yellowdog_client.model.exceptions import InternalServerException

log = logging.getLogger("raydog")

T = TypeVar("T")

ATTEMPTS = 4
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 8.0
TRANSIENT_STATUSES = frozenset({429, *range(500, 512)})


def is_transient(error: BaseException) -> bool:
    if isinstance(error, InternalServerException):
        return True
    if isinstance(error, requests.HTTPError):
        return error.response is not None and error.response.status_code in TRANSIENT_STATUSES
    return isinstance(error, requests.ConnectionError | requests.Timeout)


def with_retry(
    call: Callable[[], T], what: str, attempts: int = ATTEMPTS, first_delay_s: float = FIRST_DELAY_S
) -> T:
    """`call()`, retried on transient errors up to `attempts` times in all."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as error:
            if attempt == attempts or not is_transient(error):
                raise
            delay = random.uniform(0, min(MAX_DELAY_S, first_delay_s * 2 ** (attempt - 1)))
            log.info(
                "YellowDog: %s hit a transient error (%s); retry %d in %.1f s",
                what,
                type(error).__name__,
                attempt,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")
