"""Which Ray nodes are alive, asked of the head's dashboard over HTTP.

HTTP with an explicit bearer token keeps no process-wide state, so one process can watch several
clusters with different tokens (Ray's in-process clients cache the first token they load).
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

TIMEOUT_S = 5.0


def alive_ray_nodes(base_url: str, token: str | None) -> list[dict[str, Any]]:
    """The alive nodes Ray knows (empty while the dashboard is not answering yet).

    `base_url` must be an address the backend vouches for (never one saved state alone names): the
    token goes there.
    """
    payload = dashboard_get(base_url, "/nodes?view=summary", token) or {}
    summary = payload.get("data", {}).get("summary", [])
    return [node for node in summary if node.get("raylet", {}).get("state") == "ALIVE"]


def dashboard_get(base_url: str, path: str, token: str | None) -> dict[str, Any] | None:
    """One JSON answer of the head's dashboard, None while it is not answering. The token goes to
    `base_url`: an address the backend vouches for, or this client's tunnel to it."""
    request = urllib.request.Request(f"{base_url.rstrip('/')}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            payload = json.loads(response.read())
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None
