"""Server-sent events: every change of a watched entity is pushed as its full JSON.

The SDK deserialises `data:` as the entity, ignores the event name, and fails (or spins) when a stream
closes, so streams stay open until the client goes away or the emulator stops, with a data-less
`event: heartbeat` well inside the SDK's 90 s read timeout.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Render = Callable[[], dict[str, Any]]


@dataclass
class Subscription:
    render: Render
    events: queue.Queue[str | None] = field(default_factory=queue.Queue)
    last: str | None = None


class EventHub:
    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, render: Render) -> Subscription:
        subscription = Subscription(render)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def publish_changes(self) -> None:
        """Render every watched entity and push those that changed since their last event."""
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            text = json.dumps(subscription.render())
            if text != subscription.last:
                subscription.last = text
                subscription.events.put(text)

    def close_all(self) -> None:
        with self._lock:
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.events.put(None)
