"""What both stand-ins share: an HTTP server with a thread per connection, tracked so stop() can close idle
keep-alive connections at once instead of waiting for clients to hang up."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TrackingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # the default of 5 drops connections under benchmark fan-out

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client hung up (e.g. after its own timeout): routine here
        super().handle_error(request, client_address)


def wait_for_call(
    calls: Sequence[Any],
    changed: threading.Condition,
    predicate: Callable[[Any], bool] | str,
    timeout: float,
    what: str,
) -> Any:
    """Block on `changed` until a recorded call satisfies `predicate` (or is that method) and return
    it; AssertionError listing the calls seen if none does within `timeout` seconds. Tests wait with
    this instead of sleeping."""
    matches = (lambda call: call.method == predicate) if isinstance(predicate, str) else predicate
    deadline = time.monotonic() + timeout
    checked = 0
    with changed:
        while True:
            for call in calls[checked:]:
                if matches(call):
                    return call
            checked = len(calls)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = ", ".join(f"{c.method}->{c.status}" for c in calls) or "none"
                raise AssertionError(f"no matching {what} call within {timeout}s; calls seen: {seen}")
            changed.wait(remaining)
