"""The host's storage: SQLite in WAL mode, versioned migrations, and every SQL statement.

One module holds all SQL so that a PostgreSQL implementation can sit beside it with the
same methods. A batch of ingested messages is stored in one transaction; an event is
identified by (store, device, seq), so a redelivery or an outbox replay is stored once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from kiosk_host.errors import UserError
from kiosk_host.rules.recovery import Alert, Case

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
    """
    CREATE TABLE cases (
        store TEXT NOT NULL,
        device TEXT NOT NULL,
        rating_seq INTEGER NOT NULL,
        code TEXT NOT NULL,
        station TEXT NOT NULL,
        opened_at INTEGER NOT NULL,
        deadline INTEGER NOT NULL,
        state TEXT NOT NULL,
        escalations INTEGER NOT NULL,
        fixed_by TEXT,
        fixed_at INTEGER,
        note TEXT,
        verdict TEXT,
        verdict_at INTEGER,
        late_verdict INTEGER NOT NULL,
        near_sent INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (store, device, rating_seq)
    ) WITHOUT ROWID;
    CREATE INDEX cases_by_code ON cases (store, code, opened_at);
    CREATE INDEX cases_waiting ON cases (state, deadline);
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        store TEXT NOT NULL,
        at INTEGER NOT NULL,
        payload TEXT NOT NULL,
        published INTEGER NOT NULL DEFAULT 0,
        acked_by TEXT,
        comment TEXT
    );
    """,
    """
    ALTER TABLE events ADD COLUMN score INTEGER;              -- a rating's score, else null
    ALTER TABLE events ADD COLUMN outside INTEGER NOT NULL DEFAULT 0;  -- outside opening hours
    CREATE INDEX events_ratings ON events (store, outside, at, score) WHERE kind = 'rating';
    CREATE INDEX cases_by_state ON cases (store, state, deadline);
    """,
    """
    ALTER TABLE devices ADD COLUMN since INTEGER;  -- when the kiosk's current state began
    UPDATE devices SET since = status_at;
    """,
)
DEAD_LETTER_BYTES = 2048
_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (store, device, seq, kind, at, device_ts, arrived,"
    " time_flagged, payload, score, outside) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _event_values(e: EventRow) -> tuple[Any, ...]:
    raw = e.raw or json.dumps(e.payload, separators=(",", ":"))
    score = e.payload.get("score") if e.kind == "rating" else None
    return (e.store, e.device, e.seq, e.kind, e.at, e.device_ts, e.arrived, int(e.time_flagged),
            raw, score, int(e.outside))  # fmt: skip


_CASE_FIELDS = (
    "store", "device", "rating_seq", "code", "station", "opened_at", "deadline", "state",
    "escalations", "fixed_by", "fixed_at", "note", "verdict", "verdict_at", "late_verdict",
)  # fmt: skip


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
    outside: bool = False  # pressed outside the store's opening hours: kept, not counted


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
class RatingLine:
    """One stored rating as an export lists it."""

    at: int
    device: str
    seq: int
    station: str
    staff: str | None
    score: int
    scale: int
    outside: bool  # outside opening hours: kept, left out of the figures
    time_flagged: bool  # `at` is the arrival time, not the kiosk's


@dataclass(frozen=True)
class Stored:
    events: int  # new events stored
    duplicates: int  # events already there (redelivered or replayed)
    dead_letters: int


class StorageError(UserError, ValueError):
    """A database that cannot be opened as asked; the message says which and why."""


class Storage:
    """SQLite storage; open with `Storage.open(path or sqlite:/// URL)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut
            self.db.execute("PRAGMA busy_timeout=5000")
            self.migrate()
        except sqlite3.Error as why:  # a folder, a file that is no database, no permission
            raise StorageError(f"--db {path}: cannot be used as the database: {why}") from None

    @classmethod
    def open(cls, where: str) -> Storage:
        if where.startswith(("postgresql:", "postgres:")):
            raise StorageError(f"{where}: PostgreSQL storage is not available yet; use a file path")
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

    def write_batch(
        self,
        events: Iterable[EventRow],
        dead: Iterable[DeadLetter] = (),
        devices: Iterable[DeviceStatus] = (),
        apply: Callable[[Storage, EventRow], list[DeadLetter]] | None = None,
    ) -> Stored:
        """Store one batch in one transaction; returns what was new. `apply` is called, in the
        same transaction, for every new event other than a rating (the recovery cases), and
        may return dead letters (a verdict for an unknown case)."""
        letters = 0
        db = self.db
        events = list(events)
        dead = list(dead)
        db.execute("BEGIN IMMEDIATE")
        try:
            if apply is not None:
                for e in [e for e in events if e.kind != "rating"]:
                    if self._insert_event(e):
                        dead += apply(self, e)
                events = [e for e in events if e.kind == "rating"]
            cur = db.executemany(_INSERT_EVENT, [_event_values(e) for e in events])
            rows = events
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

    def _insert_event(self, e: EventRow) -> bool:
        return self.db.execute(_INSERT_EVENT, _event_values(e)).rowcount > 0

    def transaction(self) -> _Transaction:
        """`with storage.transaction():` one transaction, committed when the block ends."""
        return _Transaction(self.db)

    # -- recovery cases and alerts ----------------------------------------------------------

    def event(self, store: str, device: str, seq: int) -> EventRow | None:
        row = self.db.execute(
            "SELECT kind, at, device_ts, arrived, time_flagged, payload FROM events"
            " WHERE store = ? AND device = ? AND seq = ?",
            (store, device, seq),
        ).fetchone()
        if row is None:
            return None
        kind, at, device_ts, arrived, flagged, payload = row
        return EventRow(store, device, seq, kind, at, device_ts, arrived, bool(flagged),
                        json.loads(payload), payload)  # fmt: skip

    def save_case(self, c: Case, near_sent: bool | None = None) -> None:
        values = [getattr(c, f) for f in _CASE_FIELDS]
        self.db.execute(
            f"INSERT INTO cases ({', '.join(_CASE_FIELDS)}) VALUES"
            f" ({', '.join('?' * len(_CASE_FIELDS))}) ON CONFLICT (store, device, rating_seq)"
            f" DO UPDATE SET {', '.join(f'{f} = excluded.{f}' for f in _CASE_FIELDS[3:])}",
            values,
        )
        if near_sent is not None:
            self.db.execute(
                "UPDATE cases SET near_sent = ? WHERE store = ? AND device = ? AND rating_seq = ?",
                (int(near_sent), c.store, c.device, c.rating_seq),
            )

    def _cases(self, where: str, args: Sequence[Any]) -> list[tuple[Case, bool]]:
        rows = self.db.execute(
            f"SELECT {', '.join(_CASE_FIELDS)}, near_sent FROM cases WHERE {where}", args
        )
        out = []
        for r in rows:
            fields = dict(zip(_CASE_FIELDS, r[:-1], strict=True))
            fields["late_verdict"] = bool(fields["late_verdict"])
            out.append((Case(**fields), bool(r[-1])))
        return out

    def case_by_code(self, store: str, code: str) -> Case | None:
        """The latest case with this code in the store (codes repeat after many events)."""
        found = self._cases("store = ? AND code = ? ORDER BY opened_at DESC LIMIT 1", (store, code))
        return found[0][0] if found else None

    def cases(self, store: str, states: Sequence[str] = (), limit: int = -1) -> list[Case]:
        """The store's cases in the given states (all when none), soonest deadline first."""
        marks = ", ".join("?" * len(states))
        where = f"store = ? AND state IN ({marks})" if states else "store = ?"
        found = self._cases(f"{where} ORDER BY deadline LIMIT ?", (store, *states, limit))
        return [c for c, _ in found]

    def waiting_cases(self, until: int) -> list[tuple[Case, bool]]:
        """Cases still open or fixed whose deadline is before `until`, with near_sent."""
        return self._cases(
            "state IN ('open', 'fixed') AND deadline < ? ORDER BY deadline", (until,)
        )

    def add_alert(self, a: Alert) -> bool:
        """Keep an alert to publish; False when the same alert was kept before."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO alerts (id, store, at, payload) VALUES (?, ?, ?, ?)",
            (a.id, a.store, a.at, json.dumps(a.to_payload())),
        )
        return cur.rowcount > 0

    def unpublished_alerts(self) -> list[tuple[str, str, bytes]]:
        rows = self.db.execute(
            "SELECT id, store, payload FROM alerts WHERE published = 0 ORDER BY at"
        )
        return [(i, s, p.encode()) for i, s, p in rows]

    def mark_published(self, ids: Sequence[str]) -> None:
        self.db.executemany("UPDATE alerts SET published = 1 WHERE id = ?", [(i,) for i in ids])

    def score_counts_between(
        self, store: str, since: int, until: int
    ) -> tuple[dict[int, int], int]:
        """Ratings per score in [since, until) inside opening hours, and how many were outside."""
        counts: dict[int, int] = {}
        outside = 0
        rows = self.db.execute(
            "SELECT outside, score, count(*) FROM events WHERE kind = 'rating' AND store = ?"
            " AND outside IN (0, 1) AND at >= ? AND at < ? GROUP BY outside, score",
            (store, since, until),
        )
        for out, score, n in rows:
            if out:
                outside += n
            else:
                counts[int(score)] = int(n)
        return counts, outside

    def case_figures(self, store: str, since: int, until: int, now: int) -> dict[str, int]:
        """Cases waiting now, overdue (breached in the period), recovered in time in it."""
        row = self.db.execute(
            "SELECT"
            " (SELECT count(*) FROM cases WHERE store = ? AND state IN ('open', 'fixed')),"
            " (SELECT count(*) FROM cases WHERE store = ? AND state IN ('breached', 'unconfirmed')"
            "   AND deadline >= ? AND deadline < ?),"
            " (SELECT count(*) FROM cases WHERE store = ? AND state IN ('wow', 'recovered')"
            "   AND verdict_at >= ? AND verdict_at < ?)",
            (store, store, since, min(until, now + 1), store, since, until),
        ).fetchone()
        return {"open": row[0], "overdue": row[1], "recovered_in_time": row[2]}

    def ratings(self, store: str, since: int, until: int) -> list[EventRow]:
        """Ratings and sign-ins/outs of the store in [since, until), oldest first."""
        rows = self.db.execute(
            "SELECT device, seq, kind, at, device_ts, arrived, time_flagged, payload, outside"
            " FROM events WHERE store = ? AND kind IN ('rating', 'staff_signin', 'staff_signout')"
            " AND at >= ? AND at < ? ORDER BY at",
            (store, since, until),
        )
        return [
            EventRow(store, d, q, k, a, ts, arr, bool(f), json.loads(p), p, bool(out))
            for d, q, k, a, ts, arr, f, p, out in rows
        ]

    def rating_credits(
        self, store: str, since: int, until: int
    ) -> list[tuple[int, int, str | None, str, int]]:
        """(at, score, staff signed in, station, scale) of the store's ratings in [since,
        until): what recognition needs, read without parsing whole payloads."""
        rows = self.db.execute(
            "SELECT at, score, json_extract(payload, '$.staff'), json_extract(payload,"
            " '$.station'), json_extract(payload, '$.scale') FROM events"
            " WHERE store = ? AND kind = 'rating' AND at >= ? AND at < ?",
            (store, since, until),
        )
        return rows.fetchall()

    def recovered_between(self, store: str, since: int, until: int) -> list[Case]:
        """The store's recovered cases (wow or recovered) whose verdict fell in [since, until)."""
        found = self._cases(
            "store = ? AND state IN ('wow', 'recovered') AND verdict_at >= ? AND verdict_at < ?",
            (store, since, until),
        )
        return [c for c, _ in found]

    def outside_changes(self) -> int:
        """A number that changes whenever another process (the CLI) commits a change."""
        version: int = self.db.execute("PRAGMA data_version").fetchone()[0]
        return version

    def case_stores(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT store FROM cases")]

    def last_alert_at(self, store: str, type_: str) -> int | None:
        row = self.db.execute(
            "SELECT max(at) FROM alerts WHERE store = ? AND json_extract(payload, '$.type') = ?",
            (store, type_),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def last_scores(self, store: str, n: int) -> list[tuple[int, int]]:
        """The store's last `n` ratings inside opening hours as (time, score), oldest first."""
        rows = self.db.execute(
            "SELECT at, score FROM events WHERE kind = 'rating' AND store = ? AND outside = 0"
            " ORDER BY at DESC LIMIT ?",
            (store, n),
        ).fetchall()
        return [(int(a), int(sc)) for a, sc in reversed(rows)]

    def alerts(self, store: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT payload, acked_by, comment FROM alerts WHERE store = ?"
            " ORDER BY at DESC LIMIT ?",
            (store, limit),
        )
        return [{**json.loads(p), "acked_by": a, "comment": c} for p, a, c in rows]

    def note_alert(self, alert_id: str, acked_by: str | None, comment: str | None) -> bool:
        """Acknowledge an alert, comment on it, or both; False for an unknown id."""
        with self.transaction():
            cur = self.db.execute(
                "UPDATE alerts SET acked_by = coalesce(?, acked_by), comment = coalesce(?, comment)"
                " WHERE id = ?",
                (acked_by, comment, alert_id),
            )
        return cur.rowcount > 0

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
        elif s.payload["state"] == "online":
            p = s.payload
            self.db.execute(
                "UPDATE devices SET since = CASE WHEN state IS 'online' THEN since ELSE ? END,"
                " state = 'online', fw = ?, board = ?, config_error = ?, status_at = ?"
                " WHERE store = ? AND device = ?",
                (s.arrived, p.get("fw"), p.get("board"), p.get("config_error"), s.arrived,
                 s.store, s.device),
            )  # fmt: skip
        else:  # the last will: what the kiosk last said of itself stays
            self.db.execute(
                "UPDATE devices SET since = CASE WHEN state IS ? THEN since ELSE ? END,"
                " state = ?, status_at = ? WHERE store = ? AND device = ?",
                (s.payload["state"], s.arrived, s.payload["state"], s.arrived, s.store, s.device),
            )

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
        """The kiosks as their last status and telemetry left them: `state` (online, offline)
        and `since` when, `status_at` and `telemetry_at` (arrival times), and the last
        `telemetry` whole."""
        where, args = (" WHERE store = ?", (store,)) if store else ("", ())
        rows = self.db.execute(
            "SELECT store, device, state, since, fw, board, config_error, status_at,"
            f" telemetry_at, telemetry FROM devices{where} ORDER BY store, device",
            args,
        )
        keys = ("store", "device", "state", "since", "fw", "board", "config_error", "status_at",
                "telemetry_at")  # fmt: skip
        return [
            {**dict(zip(keys, r[:9], strict=True)), "telemetry": json.loads(r[9]) if r[9] else None}
            for r in rows
        ]

    def close(self) -> None:
        self.db.close()

    # -- the dashboard's reads ---------------------------------------------------------------

    def store_ids(self) -> list[str]:
        """Every store the database knows of: with events, cases or kiosks."""
        found: set[str] = set()
        for table in ("events", "cases"):  # one index step per store, not a scan of the table
            rows = self.db.execute(
                f"WITH RECURSIVE s(store) AS (SELECT min(store) FROM {table} UNION ALL"
                f" SELECT (SELECT min(store) FROM {table} WHERE store > s.store) FROM s"
                " WHERE s.store IS NOT NULL) SELECT store FROM s WHERE store IS NOT NULL"
            )
            found.update(r[0] for r in rows)
        found.update(r[0] for r in self.db.execute("SELECT DISTINCT store FROM devices"))
        return sorted(found)

    def rating_quarters(
        self, store: str, since: int, until: int
    ) -> list[tuple[int, bool, int, int]]:
        """The store's ratings in [since, until) as (quarter, outside, score, count): counted
        per quarter of an hour from `since`, per score, apart when outside opening hours.
        Every time zone's hours begin on a quarter hour, so quarters add up to local hours."""
        rows = self.db.execute(
            "SELECT (at - ?) / 900, outside, score, count(*) FROM events INDEXED BY events_ratings"
            " WHERE kind = 'rating' AND store = ? AND outside IN (0, 1) AND at >= ? AND at < ?"
            " GROUP BY 1, 2, 3",
            (since, store, since, until),
        )
        return [(int(q), bool(out), int(score), int(n)) for q, out, score, n in rows]

    def ratings_page(
        self, store: str, since: int, until: int, after: tuple[int, str, int] | None, limit: int
    ) -> list[RatingLine]:
        """Up to `limit` of the store's ratings in [since, until) that come after `after`
        (time, device, seq), in that order: an export reads the period page by page."""
        at, device, seq = after if after is not None else (since - 1, "", 0)
        rows = self.db.execute(
            "SELECT at, device, seq, json_extract(payload, '$.station'),"
            " json_extract(payload, '$.staff'), score, json_extract(payload, '$.scale'), outside,"
            " time_flagged FROM events WHERE store = ? AND kind = 'rating' AND at >= ? AND at < ?"
            " AND (at, device, seq) > (?, ?, ?) ORDER BY at, device, seq LIMIT ?",
            (store, since, until, at, device, seq, limit),
        )
        return [
            RatingLine(int(a), d, int(q), st, sf, int(sc), int(scale), bool(out), bool(flag))
            for a, d, q, st, sf, sc, scale, out, flag in rows
        ]

    def cases_opened_between(self, store: str, since: int, until: int) -> list[Case]:
        """The store's cases whose breakdown was rated in [since, until), oldest first."""
        found = self._cases(
            "store = ? AND opened_at >= ? AND opened_at < ? ORDER BY opened_at, code",
            (store, since, until),
        )
        return [c for c, _ in found]

    def alert_store(self, alert_id: str) -> str | None:
        """The store an alert belongs to, or None for an unknown id."""
        row = self.db.execute("SELECT store FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else str(row[0])

    def waiting_case_counts(self) -> dict[str, int]:
        """Cases open or fixed (waiting for staff or the customer), per store."""
        rows = self.db.execute(
            "SELECT store, count(*) FROM cases WHERE state IN ('open', 'fixed') GROUP BY store"
        )
        return {store: int(n) for store, n in rows}

    def dead_letter_count(self) -> int:
        count: int = self.db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        return count


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
