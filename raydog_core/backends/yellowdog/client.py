"""The yellowdog-sdk PlatformClient for a set of credentials.

The application key is only ever given to the SDK, which sends it in the Authorization header of each
request; it is never put in node environments, state, logs or exception messages.
"""

from __future__ import annotations

from datetime import timedelta

from yellowdog_client.model import ApiKey, RetryProperties, ServicesSchema
from yellowdog_client.platform_client import PlatformClient

from raydog_core.credentials import YellowDogCredentials

# One policy for every platform, whatever its URL: full-jitter back-off from 100 ms, capped at 20 s (the
# AWS SDKs' "standard" retry mode), so a throttled (429) platform is given seconds to recover while a
# single transient error costs tens of milliseconds.
RETRY = RetryProperties(
    maxAttempts=6, initialInterval=timedelta(milliseconds=100), maxInterval=timedelta(seconds=20)
)
CONNECT_TIMEOUT = timedelta(seconds=30)
READ_TIMEOUT = timedelta(seconds=90)


def create_client(credentials: YellowDogCredentials) -> PlatformClient:
    schema = ServicesSchema(
        defaultUrl=credentials.api_url.rstrip("/"),
        retry=RETRY,
        connectionTimeout=CONNECT_TIMEOUT,
        readTimeout=READ_TIMEOUT,
    )
    return PlatformClient.create(
        schema, ApiKey(credentials.key_id, credentials.key_secret.get_secret_value())
    )
