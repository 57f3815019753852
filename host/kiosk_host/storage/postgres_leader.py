"""PostgreSQL's side of leading a group of aggregators: the leader's advisory lock, the
notifications of what each member stored, and the per-store locks of a storing transaction.

See `kiosk_host.aggregator.leader` for what leading means; this module holds the SQL of it,
as `postgres.py` holds the rest.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

LEADER_KEY = 0x6B696F736B6C64  # pg_try_advisory_lock key of the group's leader
SENDER_KEY = 0x6B696F736B7364  # and of the group's one sender of e-mails and webhooks
CHANNEL = "kiosk_host_stored"  # the notification channel: what the others stored
RETRY_S = 1.0  # a follower tries for the lock this often
CONNECT_TIMEOUT_S = 10
NOTIFY_BYTES = 7000  # PostgreSQL refuses a notification's payload of 8000 bytes or more
RATED = "!"  # before a store's name in a notification: ratings stored (stream alerts to check)
SETTLE_TICKS = 3  # outside changes count once unexplained over this many ticks (see `outside`)
log = logging.getLogger(__name__)


class Advisory:
    """A member of a group on PostgreSQL: leads while it holds the advisory lock LEADER_KEY."""

    def __init__(
        self, url: str, key: int = LEADER_KEY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.url = url
        self.key = key
        self.clock = clock
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False
        self._new = False
        self._next_try = 0.0
        self._stores: set[str] = set()
        self._rated: set[str] = set()
        self._told = 0  # transactions the others said they made, since this one led
        self._carries: deque[int] = deque(maxlen=SETTLE_TICKS)
        self._floor: int | None = None
        self._connect()

    def _connect(self) -> psycopg.Connection[Any] | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as why:
            log.warning("kiosk-host: the group's connection failed (%s); trying again", why)
            return None
        self._conn = conn
        return conn

    def _notified(self, n: psycopg.Notify) -> None:
        conn = self._conn
        if conn is None or n.pid == conn.info.backend_pid or not self._held:
            return  # its own, or heard while following: a new leader starts from everything
        count, _, names = n.payload.partition(" ")
        self._told += int(count) if count.isdigit() else 0
        for name in names.split():
            if name.startswith(RATED):
                self._rated.add(name[1:])
                name = name[1:]
            self._stores.add(name)

    def leading(self) -> bool:
        if self._held:
            try:  # the lock lives as long as this session: check that it does
                assert self._conn is not None
                self._conn.execute("SELECT 1")
                return True
            except psycopg.Error as why:
                log.error("kiosk-host: the leader's connection is lost (%s): following", why)
                self._held = False
                self._drop()
        self._take_in()  # a follower's backlog, dropped: a new leader starts from everything
        now = self.clock()
        if now < self._next_try:
            return False
        self._next_try = now + RETRY_S
        conn = self._connect()
        if conn is None:
            return False
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error:
            self._drop()
            return False
        if row is None or not row[0]:
            return False
        self._held = self._new = True
        self._stores.clear()
        self._rated.clear()
        self._told = 0
        self._carries.clear()
        self._floor = None
        log.warning("kiosk-host: this aggregator now leads its group")
        return True

    def took_over(self) -> bool:
        new, self._new = self._new, False
        return new

    def stored(self, stores: Iterable[str], rated: Iterable[str], transactions: int) -> None:
        if self._held:
            return  # the leader keeps its own changes itself
        conn = self._connect()
        if conn is None:
            return  # the store's next change, or the next leader's first tick, sends its views
        rated = set(rated)
        names = sorted({*(s for s in stores if s not in rated), *(RATED + s for s in rated)})
        # Each notification says how many transactions; the first carries the count, the
        # others 0, so a long list split in several still counts each transaction once.
        count = transactions
        chunk: list[str] = []
        size = 0
        try:
            for name in names:
                if chunk and size + len(name) + 1 > NOTIFY_BYTES - 16:
                    conn.execute(
                        "SELECT pg_notify(%s, %s)", (CHANNEL, f"{count} " + " ".join(chunk))
                    )
                    count, chunk, size = 0, [], 0
                chunk.append(name)
                size += len(name) + 1
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{count} " + " ".join(chunk)))
        except psycopg.Error as why:
            log.warning("kiosk-host: could not tell the group what was stored (%s)", why)
            self._drop()

    def heard(self) -> tuple[set[str], set[str]]:
        self._take_in()
        stores, rated = self._stores, self._rated
        self._stores, self._rated = set(), set()
        return stores, rated

    def outside(self, changes: int) -> bool:
        """The sequence behind `changes` also counts the others' transactions, each of which
        they tell once committed: what is left is a person's change, or a transaction begun
        but not yet told. So a change counts once it stays unexplained for SETTLE_TICKS ticks
        (a transaction lasts far less than a tick). The first reading is the baseline."""
        self._take_in()
        carry = changes - self._told
        if self._floor is None:
            self._floor = carry
            return False
        self._carries.append(carry)
        if len(self._carries) < SETTLE_TICKS:
            return False
        lowest = min(self._carries)
        moved = lowest > self._floor
        # lower: the baseline held a transaction begun and told later
        self._floor = lowest
        return moved

    def _take_in(self) -> None:
        """The notifications arrived so far (psycopg keeps those that came during other
        commands); a follower's are dropped."""
        conn = self._conn
        if conn is None or conn.closed:
            return
        try:
            for n in conn.notifies(timeout=0):
                self._notified(n)
        except psycopg.Error:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        self._held = False
        self._drop()
