"""Know the moment a client disconnects, even while its request waits for a worker.

An ASGI server reports a disconnect through ``receive()``, but only to whoever is awaiting it,
and Falcon awaits it only between the events it sends. This wrapper takes ``receive`` over once
the request body has arrived: one task per request waits on it and marks the request's
:class:`ClientConnection` (``scope["velesio.connection"]``) gone, calling what handlers
registered. Falcon's own later calls to ``receive`` are answered from that state, so two readers
never compete for the server's ``receive``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

from .forwarded import Message, Receive, Scope, Send

#: The app inside: Falcon's, which types an ASGI scope as the dict every server passes.
FalconApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

CONNECTION = "velesio.connection"


class ClientConnection:
    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self._callbacks: list[Callable[[], None]] = []

    def when_gone(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the client disconnects (at once if it has); returns a function that
        unregisters it. A client may leave before a handler registers, e.g. while its body is read."""
        if self.gone.is_set():
            callback()
            return lambda: None
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def mark_gone(self) -> None:
        if self.gone.is_set():
            return
        self.gone.set()
        for callback in list(self._callbacks):
            callback()


class DisconnectAware:
    def __init__(self, app: FalconApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(cast(dict[str, Any], scope), receive, send)
            return

        connection = ClientConnection()
        scope[CONNECTION] = connection
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            connection.mark_gone()

        async def receive_body() -> Message:
            nonlocal watcher
            if watcher is not None:
                await connection.gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                connection.mark_gone()
            elif not message.get("more_body", False):
                watcher = asyncio.get_running_loop().create_task(watch())
            return message

        task = asyncio.current_task()
        try:
            await self.app(cast(dict[str, Any], scope), receive_body, send)
        except asyncio.CancelledError:
            # Handlers cancel their own request when its client leaves: nothing is left to say.
            if not connection.gone.is_set() or task is None:
                raise
            task.uncancel()
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
