"""The HTTP layer: stdlib ThreadingHTTPServer on loopback, speaking the platform's wire format.

Every request is checked for the application key (`Authorization: yd-key <id>:<secret>`), may get
injected latency or a transient error, has a gzip body inflated, and is routed to the platform; typed
errors come back as the platform's JSON error body. The secret is compared, never logged.
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
import queue
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from raydog_core.testing.emulator import routes, wire
from raydog_core.testing.emulator.events import EventHub
from raydog_core.testing.emulator.faults import Faults
from raydog_core.testing.emulator.platform import Platform

log = logging.getLogger("raydog.emulator")

HOST = "127.0.0.1"  # loopback only: the emulator is for tests and benchmarks on this machine
HEARTBEAT_S = 15.0  # well inside the SDK's 90 s read timeout


class PlatformServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, platform: Platform, faults: Faults, key_id: str, key_secret: str, port: int = 0
    ) -> None:
        super().__init__((HOST, port), _Handler)
        self.platform = platform
        self.faults = faults
        self.hub = EventHub()
        self.heartbeat_s = HEARTBEAT_S
        self.calls: Counter[str] = Counter()
        self._expected_auth = f"yd-key {key_id}:{key_secret}".encode()
        self._calls_lock = threading.Lock()

    def authorised(self, header: str | None) -> bool:
        return hmac.compare_digest((header or "").encode(), self._expected_auth)

    def count(self, name: str) -> None:
        with self._calls_lock:
            self.calls[name] += 1


class _Handler(BaseHTTPRequestHandler):
    server: PlatformServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("emulator: " + format, *args)  # request lines only; headers (the key) are never logged

    def _handle(self, method: str) -> None:
        server = self.server
        url = urlsplit(self.path)
        try:
            body = self._read_body()
            if not server.authorised(self.headers.get("Authorization")):
                raise wire.ApiError(401, "NotAuthorisedException", "Invalid application key")
            found = routes.match(method, url.path)
            if found is None:
                raise wire.ApiError(404, "InvalidRequestException", f"No such endpoint: {method} {url.path}")
            route, params = found
            server.count(route.name)
            if server.faults.latency_s:
                time.sleep(server.faults.latency_s)
            status = server.faults.transient_error()
            if status is not None:
                self._send_json(status, {"errorType": "InternalServerException", "message": "injected fault"})
                return
            result = route.handler(server.platform, routes.Request(params, parse_qs(url.query), body))
        except wire.ApiError as error:
            self._send_json(error.status, error.body())
            return
        except Exception as error:  # a bug in the emulator answers 500, like a real server
            log.exception("emulator: %s %s failed", method, url.path)
            self._send_json(500, {"errorType": "InternalServerException", "message": str(error)})
            return
        if isinstance(result, routes.Stream):
            self._stream(result)
        elif isinstance(result, routes.Text):
            self._send(200, result.text.encode(), "text/plain")
        else:
            server.platform.on_change()
            self._send_json(200, result)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise wire.invalid("the request body is not valid JSON") from None

    def _send_json(self, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self._send(status, data, "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, stream: routes.Stream) -> None:
        hub = self.server.hub
        subscription = hub.subscribe(stream.render)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        hub.publish_changes()
        try:
            while True:
                try:
                    text = subscription.events.get(timeout=self.server.heartbeat_s)
                except queue.Empty:
                    self.wfile.write(b"event: heartbeat\n\n")
                else:
                    if text is None:
                        return  # the emulator is stopping
                    self.wfile.write(b"event: entity_updated\ndata: " + text.encode() + b"\n\n")
                self.wfile.flush()
        except OSError:
            pass  # the client went away
        finally:
            hub.unsubscribe(subscription)
