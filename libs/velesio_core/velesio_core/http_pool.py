"""Keep-alive HTTP connections to a backend server, shared by a worker's job threads.

Built on the standard library's ``http.client``: per request it costs a fraction of the CPU of
the async clients we measured (see docs/decisions.md), and the worker runs each job on a thread
of its own anyway. A request can be cut off from another thread through its Cancellation: the
socket is shut down, the blocked read returns at once, and the server sees the client leave.

Servers close idle connections (llama-server after 5 s, or after 100 requests). A connection
idle for longer than ``max_idle_s`` is replaced before use, and a request whose reused
connection turns out dead before any response byte arrived is sent once more on a new one.
"""

from __future__ import annotations

import http.client
import os
import queue
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from urllib.parse import urlsplit

from .cancellation import Cancellation

_DEAD_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class HttpPool:
    """``url`` is ``http://host:port``, ``https://host:port`` or ``unix:///path/to/socket``."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, max_idle_s: float = 4.0) -> None:
        parts = urlsplit(url)
        self._scheme = parts.scheme
        self._host = parts.hostname or "localhost"
        self._port = parts.port
        self._unix_path = parts.path if parts.scheme == "unix" else None
        self._headers = {"Host": parts.netloc or "localhost", **(headers or {})}
        self._max_idle_s = max_idle_s
        self._idle: queue.LifoQueue[tuple[http.client.HTTPConnection, float]] = queue.LifoQueue()

    def _connect(self) -> http.client.HTTPConnection:
        # No socket timeout: how long a job may take is the job's timeout, enforced by cancelling.
        if self._unix_path is not None:
            return _UnixHTTPConnection(self._unix_path, None)
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=None)
        return http.client.HTTPConnection(self._host, self._port, timeout=None)

    def _checkout(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was used before (and so may have been closed by the server)."""
        while True:
            try:
                connection, idle_since = self._idle.get_nowait()
            except queue.Empty:
                return self._connect(), False
            if time.monotonic() - idle_since < self._max_idle_s:
                return connection, True
            connection.close()

    def _checkin(self, connection: http.client.HTTPConnection) -> None:
        self._idle.put((connection, time.monotonic()))

    @contextmanager
    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        headers: dict[str, str] | None = None,
        cancellation: Cancellation | None = None,
    ) -> Iterator[http.client.HTTPResponse]:
        """Send a request and yield its response. A response read to its end keeps its connection."""
        all_headers = {**self._headers, **(headers or {})}
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            connection, reused = self._checkout()
            unregister = (
                cancellation.on_cancel(partial(_abort, connection)) if cancellation is not None else lambda: None
            )
            try:
                connection.request(method, path, body=body, headers=all_headers)
                response = connection.getresponse()
            except _DEAD_CONNECTION:
                unregister()
                connection.close()
                if cancellation is not None:
                    cancellation.check()
                if reused and attempt == 1:
                    continue
                raise
            except BaseException:
                unregister()
                connection.close()
                raise
            try:
                yield response
            finally:
                unregister()
                if response.isclosed() and not response.will_close and not (cancellation and cancellation.cancelled):
                    self._checkin(connection)
                else:
                    connection.close()
            return

    def received(self, response: http.client.HTTPResponse) -> bytes:
        """What of ``response`` has reached this process and is not read yet, without waiting for
        more: the reader's buffer, or what one non-blocking read of the socket finds (its raw bytes,
        chunked framing included). Always empty over TLS, whose records the reader cannot peek
        into without blocking."""
        reader = response.fp
        if reader is None or self._scheme == "https":
            return b""
        descriptor = reader.fileno()
        # The socket has no timeout (it blocks): only its descriptor turns non-blocking, for this
        # one read, which then returns what is here, or nothing, instead of waiting.
        os.set_blocking(descriptor, False)
        try:
            return reader.peek()
        except OSError:
            return b""
        finally:
            os.set_blocking(descriptor, True)

    def close(self) -> None:
        while True:
            try:
                connection, _ = self._idle.get_nowait()
            except queue.Empty:
                return
            connection.close()


def _abort(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
