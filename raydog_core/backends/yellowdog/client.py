"""The yellowdog-sdk PlatformClient for a set of credentials, and what the platform's URL tells us.

The application key is only ever given to the SDK, which sends it in the Authorization header of each
request; it is never put in node environments, state, logs or exception messages.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from urllib.parse import urlsplit

from yellowdog_client.model import ApiKey, RetryProperties, ServicesSchema
from yellowdog_client.platform_client import PlatformClient

from raydog_core.credentials import YellowDogCredentials

# A real platform: back off in seconds (429 means "slow down"); the emulator: in milliseconds.
REMOTE_RETRY = RetryProperties(
    maxAttempts=5, initialInterval=timedelta(seconds=1), maxInterval=timedelta(seconds=30)
)
LOCAL_RETRY = RetryProperties(
    maxAttempts=6, initialInterval=timedelta(milliseconds=20), maxInterval=timedelta(milliseconds=500)
)
CONNECT_TIMEOUT = timedelta(seconds=30)
READ_TIMEOUT = timedelta(seconds=90)


def is_loopback_url(url: str) -> bool:
    """True for a platform on this machine (the emulator): its instances' IPs are reachable from here."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_client(credentials: YellowDogCredentials, retry: RetryProperties | None = None) -> PlatformClient:
    if retry is None:
        retry = LOCAL_RETRY if is_loopback_url(credentials.api_url) else REMOTE_RETRY
    schema = ServicesSchema(
        defaultUrl=credentials.api_url.rstrip("/"),
        retry=retry,
        connectionTimeout=CONNECT_TIMEOUT,
        readTimeout=READ_TIMEOUT,
    )
    return PlatformClient.create(
        schema, ApiKey(credentials.key_id, credentials.key_secret.get_secret_value())
    )
