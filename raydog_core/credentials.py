"""YellowDog credentials, kept out of reprs, logs, state and exception messages."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, SecretStr

from raydog_core.errors import SpecError

DEFAULT_API_URL = "https://api.yellowdog.ai"


class YellowDogCredentials(BaseModel):
    """An application key for the YellowDog platform. The secret is a SecretStr: it prints as '**********'."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str
    key_secret: SecretStr
    api_url: str = DEFAULT_API_URL

    @classmethod
    def resolve(
        cls, key_id: str | None = None, key_secret: str | SecretStr | None = None, api_url: str | None = None
    ) -> YellowDogCredentials:
        """Arguments first, then YD_API_KEY_ID / YD_API_KEY_SECRET / YD_API_URL from the environment."""
        key_id = key_id or os.environ.get("YD_API_KEY_ID")
        secret = key_secret or os.environ.get("YD_API_KEY_SECRET")
        url = api_url or os.environ.get("YD_API_URL") or DEFAULT_API_URL
        if not key_id:
            raise SpecError("yd_application_key_id", "missing", "pass it or set YD_API_KEY_ID")
        if not secret:
            raise SpecError("yd_application_key_secret", "missing", "pass it or set YD_API_KEY_SECRET")
        if not url.startswith(("http://", "https://")):
            raise SpecError(
                "yd_platform_api_url", f"{url!r} is not an http(s) URL", "e.g. " + DEFAULT_API_URL
            )
        if not isinstance(secret, SecretStr):
            secret = SecretStr(secret)
        return cls(key_id=key_id, key_secret=secret, api_url=url.rstrip("/"))

    @classmethod
    def present_in_environment(cls) -> bool:
        return bool(os.environ.get("YD_API_KEY_ID") and os.environ.get("YD_API_KEY_SECRET"))
