"""The host's storage: SQLite in WAL mode, versioned migrations, and every SQL statement.

One module holds all SQL so that a PostgreSQL implementation can sit beside it with the
same methods. A batch of ingested messages is stored in one transaction; an event is
identified by (store, device, seq), so a redelivery or an outbox replay is stored once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Each migration runs once, in order, in its own transaction; the version is kept in the
# database so that a newer host upgrades an older file at start.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE events (
        store TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        at INTEGER NOT NULL,            -- the event's time: the device's, or its arrival
        device_ts INTEGER,              -- what the device said (null when not synced)
        arrived INTEGER NOT NULL,
        time_flagged INTEGER NOT NULL,  -- 1 when `at` is the arrival, not the device's time
        payload TEXT NOT NULL,
        PRIMARY KEY (store, device, seq)
    ) WITHOUT ROWID;
    CREATE INDEX events_by_time ON events (store, at);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,          -- the first DEAD_LETTER_BYTES bytes
        size INTEGER NOT NULL,
        rule TEXT NOT NULL,
        field TEXT NOT NULL,
        reason TEXT NOT NULL,
        arrived INTEGER NOT NULL
    );
    CREATE TABLE devices (
        store TEXT NOT NULL,
        device TEXT NOT NULL,
        state TEXT,                     -- online / offline, from the retained status
        fw TEXT,
        board TEXT,
        config_error TEXT,
        status_at INTEGER,
        telemetry TEXT,                 -- the last telemetry payload
        telemetry_at INTEGER,
        PRIMARY KEY (store, device)
    ) WITHOUT ROWID;
    """,
)
DEAD_LETTER_BYTES = 2048


@dataclass(frozen=True)
class EventRow:
    store: str
    device: str
    seq: int
    kind: str
    at: int
    device_ts: int | None
    arrived: int
    time_flagged: bool
    payload: dict[str, Any]
    raw: str = ""  # the payload as received, stored as it is when given


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    payload: bytes
    rule: str
    field: str
    reason: str
    arrived: int


@dataclass(frozen=True)
class DeviceStatus:
    store: str
    device: str
    payload: dict[str, Any]
    arrived: int
    telemetry: bool  # telemetry rather than status


@dataclass(frozen=True)
class Stored:
    events: int  # new events stored
    duplicates: int  # events already there (redelivered or replayed)
    dead_letters: int


class Storage:
    """SQLite storage; open with `Storage.open(path or sqlite:/// URL)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut
        self.db.execute("PRAGMA busy_timeout=5000")
        self.migrate()

    @classmethod
    def open(cls, where: str) -> Storage:
        if where.startswith(("postgresql:", "postgres:")):
            raise ValueError(f"{where}: PostgreSQL storage is not available yet; use a file path")
        return cls(Path(where.removeprefix("sqlite:///")))

    def version(self) -> int:
        version: int = self.db.execute("PRAGMA user_version").fetchone()[0]
        return version

    def migrate(self) -> None:
        for number, script in enumerate(MIGRATIONS, start=1):
            if self.version() >= number:
                continue
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def store_batch(
        self,
        events: Iterable[EventRow],
        dead: Iterable[DeadLetter] = (),
        devices: Iterable[DeviceStatus] = (),
    ) -> Stored:
        """Store one batch in one transaction; returns what was new."""
        letters = 0
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = [
                (e.store, e.device, e.seq, e.kind, e.at, e.device_ts, e.arrived,
                 int(e.time_flagged), e.raw or json.dumps(e.payload, separators=(",", ":")))
                for e in events
            ]  # fmt: skip
            cur = db.executemany(
                "INSERT OR IGNORE INTO events (store, device, seq, kind, at, device_ts,"
                " arrived, time_flagged, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            new = max(cur.rowcount, 0)
            dup = len(rows) - new
            for d in dead:
                db.execute(
                    "INSERT INTO dead_letters (topic, payload, size, rule, field, reason,"
                    " arrived) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (d.topic, d.payload[:DEAD_LETTER_BYTES], len(d.payload), d.rule, d.field,
                     d.reason, d.arrived),
                )  # fmt: skip
                letters += 1
            for s in devices:
                self._device(s)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return Stored(new, dup, letters)

    def _device(self, s: DeviceStatus) -> None:
        self.db.execute(
            "INSERT INTO devices (store, device) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (s.store, s.device),
        )
        if s.telemetry:
            self.db.execute(
                "UPDATE devices SET telemetry = ?, telemetry_at = ? WHERE store = ? AND device = ?",
                (json.dumps(s.payload), s.arrived, s.store, s.device),
            )
        else:
            p = s.payload
            self.db.execute(
                "UPDATE devices SET state = ?, fw = ?, board = ?, config_error = ?, status_at = ?"
                " WHERE store = ? AND device = ?",
                (p["state"], p.get("fw"), p.get("board"), p.get("config_error"), s.arrived,
                 s.store, s.device),
            )  # fmt: skip

    def event_count(self, store: str | None = None) -> int:
        if store is None:
            row = self.db.execute("SELECT count(*) FROM events").fetchone()
        else:
            row = self.db.execute(
                "SELECT count(*) FROM events WHERE store = ?", (store,)
            ).fetchone()
        count: int = row[0]
        return count

    def score_counts(self, store: str) -> dict[int, int]:
        rows = self.db.execute(
            "SELECT json_extract(payload, '$.score'), count(*) FROM events"
            " WHERE store = ? AND kind = 'rating' GROUP BY 1",
            (store,),
        )
        return {int(score): int(n) for score, n in rows}

    def seqs(self, store: str, device: str) -> list[int]:
        rows = self.db.execute(
            "SELECT seq FROM events WHERE store = ? AND device = ? ORDER BY seq", (store, device)
        )
        return [int(r[0]) for r in rows]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self.db.execute(
            "SELECT topic, payload, rule, field, reason, arrived FROM dead_letters"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [DeadLetter(t, bytes(p), r, f, why, a) for t, p, r, f, why, a in rows]

    def devices(self, store: str | None = None) -> list[dict[str, Any]]:
        where, args = (" WHERE store = ?", (store,)) if store else ("", ())
        rows = self.db.execute(
            "SELECT store, device, state, fw, board, config_error, status_at, telemetry"
            f" FROM devices{where} ORDER BY store, device",
            args,
        )
        keys = ("store", "device", "state", "fw", "board", "config_error", "status_at")
        return [
            {**dict(zip(keys, r[:7], strict=True)), "telemetry": json.loads(r[7]) if r[7] else None}
            for r in rows
        ]

    def close(self) -> None:
        self.db.close()
