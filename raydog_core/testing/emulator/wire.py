"""Wire conventions of the YellowDog platform: ids, timestamps, durations, type names, errors.

Facts observed from yellowdog-sdk 15.9.1: timestamps are ISO-8601 with milliseconds and `Z`, durations
are ISO-8601 (`PT3M`), polymorphic entities carry a Java class name in `type`, and errors are a JSON
body `{"errorType", "message", "detail"}` that the SDK turns into typed exceptions.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import isodate

MODEL = "co.yellowdog.platform.model."
PROVISIONED_WORKER_POOL = MODEL + "ProvisionedWorkerPool"
SIMULATOR_INSTANCE = MODEL + "SimulatorInstance"
AWS_INSTANCE = MODEL + "AwsInstance"
AWS_INSTANCES_SOURCE = MODEL + "AwsInstancesComputeSource"
SINGLE_SOURCE_STRATEGY = MODEL + "SingleSourceProvisionStrategy"
STATIC_TEMPLATE = MODEL + "ComputeRequirementStaticTemplate"
WATERFALL_STRATEGY = MODEL + "WaterfallProvisionStrategy"

_counter = itertools.count(1)


def new_id(kind: str, index: int | None = None) -> str:
    """A YDID: `ydid:<kind>:000000:<uuid>[:<n>]` (the RayDog autoscaler checks the `ydid:task:` prefix)."""
    base = f"ydid:{kind}:000000:{uuid.uuid4()}"
    return f"{base}:{index}" if index is not None else base


def next_number() -> int:
    return next(_counter)


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime | None) -> str | None:
    """Milliseconds and `Z`: the only form every supported Python parses (3.10 rejects nanoseconds)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def duration(value: timedelta | None) -> str | None:
    return None if value is None else isodate.duration_isoformat(value)


def parse_duration(value: Any) -> timedelta | None:
    if value in (None, ""):
        return None
    parsed = isodate.parse_duration(str(value))
    return parsed if isinstance(parsed, timedelta) else parsed.totimedelta(start=now())


def compact(data: dict[str, Any]) -> dict[str, Any]:
    """Drop None values, as the real service and the SDK's serialiser do."""
    return {key: value for key, value in data.items() if value is not None}


class ApiError(Exception):
    """An answer other than 2xx, rendered as the platform's error body."""

    def __init__(self, status: int, error_type: str, message: str, detail: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.detail = detail or []

    def body(self) -> dict[str, Any]:
        return {"errorType": self.error_type, "message": self.message, "detail": self.detail}


def invalid(message: str, status: int = 400) -> ApiError:
    return ApiError(status, "InvalidRequestException", message)


def not_found(kind: str, key: str) -> ApiError:
    return ApiError(404, "InvalidRequestException", f"{kind} '{key}' not found")


def bad_status(message: str) -> ApiError:
    # Not one of the SDK's typed errors: it surfaces as requests.HTTPError carrying this body.
    return ApiError(400, "InvalidWorkRequirementStatusException", message)


def parse_time(value: Any) -> datetime:
    """A client's timestamp (the SDK sends ISO-8601 with `Z`); naive values are UTC, as the SDK reads them."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{value!r} is not an ISO-8601 timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
