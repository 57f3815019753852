"""Live updates: notice every commit to the database and push the views that changed.

The aggregator, the CLI and the dashboard itself write the same SQLite file. A connection of
the dashboard's own asks SQLite for `PRAGMA data_version` twice a second, a number that
changes whenever another connection has committed; each change counts as a new generation.
Every page holds one server-sent-events stream that, at each new generation (and every few
seconds for what changes with the clock alone), works out its views again and sends those
whose contents changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from kiosk_host.storage.protocol import Store

POLL_S = 0.5  # how often the database is asked whether anything was committed
REFRESH_S = 10.0  # views are looked at again this often even without a commit (the clock)


class Changes:
    """Generations of the database: a number that grows whenever anyone commits."""

    def __init__(self, storage: Store) -> None:
        self._storage = storage  # its own connection, only ever read
        self._lock = threading.Lock()
        self._seen = storage.outside_changes()
        self.generation = 0
        self.closing = threading.Event()  # set from any thread: the streams end
        self.announced = 0  # the generation the streams were last woken for
        self._changed: asyncio.Event | None = None

    def current(self) -> int:
        """The generation now, asking the database (from any thread)."""
        with self._lock:
            seen = self._storage.outside_changes()
            if seen != self._seen:
                self._seen = seen
                self.generation += 1
            return self.generation

    async def watch(self) -> None:
        """Poll until closed, waking the streams at each new generation (run as a task)."""
        self._changed = asyncio.Event()
        while True:
            generation = await anyio.to_thread.run_sync(self.current)
            if generation != self.announced or self.closing.is_set():
                self.announced = generation
                self._changed.set()
                self._changed = asyncio.Event()
            if self.closing.is_set():
                return
            await asyncio.sleep(POLL_S)

    async def wait(self, seen: int, timeout: float) -> int:
        """The announced generation once it differs from `seen`, or after `timeout` s."""
        changed = self._changed
        if self.announced != seen or self.closing.is_set():
            return self.announced
        if changed is None:  # nobody watches (an app run without its lifespan): poll
            await asyncio.sleep(min(timeout, POLL_S))
            self.announced = await anyio.to_thread.run_sync(self.current)
            return self.announced
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)
        return self.announced

    def close(self) -> None:
        self.closing.set()
        with self._lock:
            self._storage.close()


def _content(view: Any) -> str:
    """A view as compared between pushes: without the time it was made at."""
    if isinstance(view, dict):
        view = {k: v for k, v in view.items() if k != "ts"}
    return json.dumps(view, sort_keys=True)


async def stream(
    changes: Changes,
    views: Callable[[], dict[str, Any]],
    now: Callable[[], float] = time.time,
    refresh_s: float = REFRESH_S,
) -> AsyncIterator[str]:
    """Server-sent events: at first every view, then each view again when it changed; each
    named after its view, its data the view's JSON as the API serves it. A `clock` event
    after each round gives the server's time, for countdowns on a browser's wrong clock."""
    yield "retry: 2000\n\n"
    sent: dict[str, str] = {}
    seen = changes.announced
    while not changes.closing.is_set():
        out = []
        for name, view in (await anyio.to_thread.run_sync(views)).items():
            content = _content(view)
            if sent.get(name) != content:
                sent[name] = content
                out.append(f"event: {name}\ndata: {json.dumps(view, separators=(',', ':'))}\n\n")
        out.append(f"event: clock\ndata: {now():.3f}\n\n")
        yield "".join(out)
        seen = await changes.wait(seen, refresh_s)
