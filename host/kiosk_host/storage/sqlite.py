"""The host's storage in SQLite: WAL mode, versioned migrations, and every SQL statement.

postgres.py holds the same methods in PostgreSQL's dialect (protocol.Store is what both
provide; `kiosk_host.storage.open` picks one by --db). A batch of ingested messages is stored
in one transaction; an event is identified by (store, device, seq), so a redelivery or an
outbox replay is stored once.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kiosk_host.errors import UserError
from kiosk_host.rules.recovery import Alert, Case
from kiosk_host.wire import topics
from kiosk_host.wire.identifiers import identifier_pattern

QUARTER_S = 900  # a roll-up's quarter of an hour: every time zone's offset is a multiple of it
# The roll-up rows as counted from the events: what migration 9 filled the table with, what
# `kiosk-host verify` compares it to and rebuilds it from. The rules are rollup_key's; never
# change this text (migration 9 runs it): new rules are a new migration.
ROLLUP_RECOUNT = """SELECT store, at / 900,
    CASE json_type(payload, '$.station') WHEN 'text'
        THEN json_extract(payload, '$.station') ELSE '?' END,
    CASE json_type(payload, '$.staff') WHEN 'text'
        THEN json_extract(payload, '$.staff') ELSE '' END,
    outside, score,
    CASE WHEN json_type(payload, '$.scale') = 'integer'
        AND json_extract(payload, '$.scale') BETWEEN 1 AND 999
        THEN json_extract(payload, '$.scale') ELSE 0 END,
    count(*)
    FROM events WHERE kind = 'rating' AND score IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7"""
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
    """
    CREATE TABLE marks (
        store TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,  -- every event of the kiosk with a seq up to this one is stored
        PRIMARY KEY (store, device)
    ) WITHOUT ROWID;
    """,
    """
    ALTER TABLE cases ADD COLUMN late_fix INTEGER NOT NULL DEFAULT 0;  -- fixed after the deadline
    ALTER TABLE cases ADD COLUMN closed_by TEXT;  -- who took it off the case list
    ALTER TABLE cases ADD COLUMN closed_at INTEGER;
    ALTER TABLE cases ADD COLUMN close_note TEXT;
    CREATE TABLE store_settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),  -- one row: the settings serve last loaded
        text TEXT NOT NULL,                     -- the stores.toml text, as read
        source TEXT NOT NULL,                   -- the file it was read from
        saved_at INTEGER NOT NULL
    );
    """,
    """
    ALTER TABLE devices ADD COLUMN refused_at INTEGER;  -- the broker last refused its connection
    ALTER TABLE devices ADD COLUMN interval_s INTEGER;  -- telemetry_interval_s of its config
    """,
    """
    -- the verdicts of a store by code and time: a case opened or rebuilt reads its own
    CREATE INDEX events_verdicts ON events (store, json_extract(payload, '$.case'), at)
        WHERE kind = 'recovery_confirm';
    """,
    """
    -- the ratings counted per quarter of an hour (at / 900), station, staff signed in ('' for
    -- nobody), outside hours, score and scale (0 when not a whole number 1 to 999): a pure
    -- function of the events, kept in the storing transaction, read by the views
    CREATE TABLE rating_rollup (
        store TEXT NOT NULL,
        quarter INTEGER NOT NULL,
        station TEXT NOT NULL,
        staff TEXT NOT NULL,
        outside INTEGER NOT NULL,
        score INTEGER NOT NULL,
        scale INTEGER NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (store, quarter, station, staff, outside, score, scale)
    ) WITHOUT ROWID;
    INSERT INTO rating_rollup (store, quarter, station, staff, outside, score, scale, n)
    """
    + "\n"
    + ROLLUP_RECOUNT
    + "\n",
    """
    -- what is sent to people (rules/routing.py): one row per alert or digest and recipient,
    -- written in the transaction that keeps the alert, `id` its idempotency key
    CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        store TEXT NOT NULL,
        subject TEXT NOT NULL,          -- the alert's id, or the digest's name
        recipient TEXT NOT NULL,        -- mailto:ADDRESS or the webhook's URL
        payload TEXT NOT NULL,          -- the alert's payload, or the digest's period (JSON)
        created_at INTEGER NOT NULL,
        not_before INTEGER NOT NULL,    -- held until then: the recipient's quiet hours
        next_at INTEGER NOT NULL,       -- when it is tried (again)
        attempts INTEGER NOT NULL,
        state TEXT NOT NULL,            -- pending, delivered, failed (refused for good)
        last_error TEXT,
        delivered_at INTEGER
    );
    CREATE INDEX deliveries_due ON deliveries (state, next_at);
    CREATE INDEX deliveries_by_store ON deliveries (store, created_at);
    """,
    """
    -- what the kiosk's last online status said of firmware updates: the kind of release it
    -- takes (mpy, py) and its `ota` member as JSON text (null when the status had none)
    ALTER TABLE devices ADD COLUMN takes TEXT;
    ALTER TABLE devices ADD COLUMN ota TEXT;
    """,
)
# The kiosk-host release that introduced each schema version: a file of a newer schema is
# refused (old code would write it wrongly), naming the release it needs.
SCHEMA_RELEASES: dict[int, str] = {
    1: "0.1.0", 2: "0.1.0", 3: "0.1.0", 4: "0.1.0", 5: "0.1.0", 6: "0.1.0", 7: "0.1.0",
    8: "0.1.0", 9: "0.1.0", 10: "0.1.0", 11: "0.1.0",
}  # fmt: skip
DEAD_LETTER_BYTES = 2048
_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (store, device, seq, kind, at, device_ts, arrived,"
    " time_flagged, payload, score, outside) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_ADD_ROLLUP = (
    "INSERT INTO rating_rollup (store, quarter, station, staff, outside, score, scale, n)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, quarter, station, staff, outside,"
    " score, scale) DO UPDATE SET n = n + excluded.n"
)


RULE_REGRESSION = "regression"


def _regression(e: EventRow) -> DeadLetter:
    """A dead letter that keeps an event whose seq the host already holds with other content."""
    topic = topics.topic("event", store=e.store, device=e.device)
    reason = (
        f"seq {e.seq} of {e.store}/{e.device} is stored with other content:"
        " the kiosk's count went back; kept here"
    )
    raw = e.raw or json.dumps(e.payload, separators=(",", ":"))
    return DeadLetter(topic, raw.encode(), RULE_REGRESSION, "/seq", reason, e.arrived)


def _event_values(e: EventRow) -> tuple[Any, ...]:
    raw = e.raw or json.dumps(e.payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    score = e.payload.get("score") if e.kind == "rating" else None
    return (e.store, e.device, e.seq, e.kind, e.at, e.device_ts, e.arrived, int(e.time_flagged),
            raw, score, int(e.outside))  # fmt: skip


RollupKey = tuple[str, int, str, str, int, int, int]  # store, quarter, station, staff, outside,
# score, scale: a rating_rollup row's key


def rollup_key(e: EventRow) -> RollupKey | None:
    """The roll-up row a stored event counts in, by ROLLUP_RECOUNT's rules; None for none (not
    a rating, or no score)."""
    found = rollup_deltas([e])
    return found[0][:-1] if found else None


def rollup_deltas(new: Iterable[EventRow]) -> list[tuple[Any, ...]]:
    """The roll-up rows to add for events newly stored, by ROLLUP_RECOUNT's rules, with how
    many each: grouped, in key order (two writers add to rows in the same order, so neither
    waits on the other). Run for every batch stored: written for speed."""
    counts: dict[tuple[Any, ...], int] = {}
    get = counts.get
    for e in new:
        if e.kind != "rating":
            continue
        p = e.payload
        score = p.get("score")
        if score is None:
            continue
        station, staff, scale = p.get("station"), p.get("staff"), p.get("scale")
        key = (e.store, e.at // QUARTER_S,
               station if station.__class__ is str else "?",
               staff if staff.__class__ is str else "", 1 if e.outside else 0, score,
               scale if scale.__class__ is int and 0 < scale < 1000 else 0)  # fmt: skip
        counts[key] = get(key, 0) + 1
    if len(counts) > 1:
        return [(*k, n) for k, n in sorted(counts.items(), key=_order)]
    return [(*k, n) for k, n in counts.items()]


def _order(item: tuple[tuple[Any, ...], int]) -> tuple[Any, ...]:
    """A roll-up key's place in the order rows are added: any score (a legacy row's may be
    text) sorts."""
    k = item[0]
    return (k[0], k[1], k[2], k[3], k[4], str(k[5]), k[6])


def whole_quarters(since: int, until: int) -> tuple[int, int, list[tuple[int, int]]]:
    """[since, until) as the whole quarters inside it, [first, end) by number, and the spans
    at its edges that are parts of quarters (read from the events): all of it when it holds
    no whole quarter."""
    first, end = -(-since // QUARTER_S), until // QUARTER_S
    if first >= end:
        return first, first, [(since, until)] if since < until else []
    edges = [(since, first * QUARTER_S), (end * QUARTER_S, until)]
    return first, end, [(a, b) for a, b in edges if a < b]


def credited_staff(staff: object) -> str | None:
    """Who a stored rating credits: a staff id, else nobody. Rows stored before payloads were
    canonical may hold what the contract never let through (a staff that is a number): such
    a staff reads as no one rather than break the board or reach its view."""
    return staff if isinstance(staff, str) and identifier_pattern().fullmatch(staff) else None


def ota_text(status: dict[str, Any]) -> str | None:
    """An online status's `ota` member as the devices table keeps it: JSON text, or None when
    the status has none (the latest status is what counts, so an absent member clears it)."""
    ota = status.get("ota")
    return None if ota is None else json.dumps(ota, separators=(",", ":"), sort_keys=True)


DEVICE_KEYS = ("store", "device", "state", "since", "fw", "board", "config_error", "status_at",
               "telemetry_at", "interval_s", "refused_at", "takes")  # fmt: skip


def device_dict(r: Sequence[Any]) -> dict[str, Any]:
    """A devices row read as DEVICE_KEYS then telemetry and ota (JSON text) as a kiosk's dict."""
    n = len(DEVICE_KEYS)
    return {**dict(zip(DEVICE_KEYS, r[:n], strict=True)),
            "telemetry": json.loads(r[n]) if r[n] else None,
            "ota": json.loads(r[n + 1]) if r[n + 1] else None}  # fmt: skip


def credited_station(station: object) -> str:
    """A stored rating's station, or "?" for one the contract never let through (a formula)."""
    ok = isinstance(station, str) and identifier_pattern().fullmatch(station)
    return station if ok and isinstance(station, str) else "?"


def credited_rows(
    rows: Iterable[tuple[int, str, str, int, int, int]],
) -> list[tuple[int, str, str | None, int, int, int]]:
    """Roll-up rows with their station and staff read as `rating_credits` reads them (each
    value checked once: a week holds thousands of rows and a few dozen names)."""
    stations: dict[str, str] = {}
    staffs: dict[str, str | None] = {}
    out = []
    for q, station, staff, scale, score, n in rows:
        if station not in stations:
            stations[station] = credited_station(station)
        if staff not in staffs:
            staffs[staff] = credited_staff(staff)
        if isinstance(score, int):
            out.append((int(q), stations[station], staffs[staff], scale, score, int(n)))
    return out


# Both ways, as one statement over `counted` (ROLLUP_COLUMNS: ROLLUP_RECOUNT) and the table:
# every row whose count differs, in key order, with how many differ in all. One GROUP BY over
# both (a join of two unindexed sets would compare every row with every other).
ROLLUP_COLUMNS = "counted (store, quarter, station, staff, outside, score, scale, n)"
DIFFERENCES = """store, quarter, station, staff, outside, score, scale, sum(stored), sum(counted),
    count(*) OVER ()
    FROM (SELECT store, quarter, station, staff, outside, score, scale, n AS stored,
            0 AS counted FROM rating_rollup
        UNION ALL SELECT store, quarter, station, staff, outside, score, scale, 0, n
            FROM counted) AS both_sides
    GROUP BY store, quarter, station, staff, outside, score, scale
    HAVING sum(stored) <> sum(counted)
    ORDER BY store, quarter, station, staff, outside, score, scale"""


def differences(rows: list[tuple[Any, ...]]) -> tuple[int, list[RollupDifference]]:
    total = int(rows[0][-1]) if rows else 0
    return total, [
        RollupDifference(st, int(q), sta, sf, bool(o), int(sc), int(scale), int(a), int(b))
        for st, q, sta, sf, o, sc, scale, a, b, _ in rows
    ]


_CASE_FIELDS = (
    "store", "device", "rating_seq", "code", "station", "opened_at", "deadline", "state",
    "escalations", "fixed_by", "fixed_at", "note", "verdict", "verdict_at", "late_verdict",
    "late_fix", "closed_by", "closed_at", "close_note",
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
    raw: str = ""  # the payload's canonical text (contract.canonical), stored as it is
    outside: bool = False  # pressed outside the store's opening hours: kept, not counted


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    payload: bytes
    rule: str
    field: str
    reason: str
    arrived: int


REFUSED = "refused"  # a DeviceStatus state of the host's own: the broker refused the kiosk


@dataclass(frozen=True)
class Delivery:
    """One alert or digest to send to one recipient (rules/routing.py), and how it went."""

    id: str
    store: str
    subject: str  # the alert's id, or the digest's name
    recipient: str  # mailto:ADDRESS or a webhook URL
    payload: str  # JSON: the alert's payload, or the digest's period
    created_at: int
    not_before: int
    attempts: int = 0
    state: str = "pending"  # pending, delivered, failed
    last_error: str | None = None
    delivered_at: int | None = None
    next_at: int | None = None  # None: at not_before


_DELIVERY_FIELDS = (
    "id", "store", "subject", "recipient", "payload", "created_at", "not_before", "attempts",
    "state", "last_error", "delivered_at", "next_at",
)  # fmt: skip


@dataclass(frozen=True)
class DeviceStatus:
    """What a kiosk's status or telemetry said, its config's telemetry interval (a payload
    with `telemetry_interval_s`), or a refusal the broker logged (state `refused`)."""

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
class RollupDifference:
    """A roll-up row that differs from the recount: how many it holds and how many there are."""

    store: str
    quarter: int
    station: str
    staff: str  # '' for nobody signed in
    outside: bool
    score: int
    scale: int
    stored: int
    counted: int


@dataclass(frozen=True)
class RollupCheck:
    """The roll-ups against a recount from the events: the ratings and rows they hold, how
    many rows differ, and the first of those."""

    ratings: int
    rows: int
    differing: int = 0
    first: list[RollupDifference] = field(default_factory=list)


@dataclass(frozen=True)
class Stored:
    events: int  # new events stored
    duplicates: int  # events already there (redelivered or replayed)
    dead_letters: int
    # (store, device) -> its high-water mark, for every kiosk with an event in the batch
    marks: dict[tuple[str, str], int] = field(default_factory=dict)
    regressions: int = 0  # events whose (store, device, seq) is stored with other content


class StorageError(UserError, ValueError):
    """A database that cannot be opened as asked; the message says which and why."""


class DamagedDatabase(StorageError):
    """A database file that fails SQLite's own check: restore a backup rather than serve it."""


def write_failure(path: Path, why: BaseException) -> str | None:
    """What an operator must fix when a write to the database failed for a reason of the
    machine's (a full disk, a read-only file or file system), else None."""
    text = str(why).lower()
    if "disk is full" in text or getattr(why, "errno", None) == errno.ENOSPC:
        return f"--db {path}: the disk is full: free space, then start again"
    read_only = "readonly" in text or "read-only" in text
    if read_only or getattr(why, "errno", None) == errno.EROFS or _read_only_fs(path):
        return f"--db {path}: the database is read-only (the file or its file system): " + (
            "kiosk-host writes to it and beside it (its WAL); make it writable, or give a "
            "writable --db"
        )
    return None


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class Storage:
    """SQLite storage; open with `Storage.open(path or sqlite:/// URL)`.

    `create=False` refuses a database that does not exist instead of making an empty one (a
    mistyped path would otherwise read as "no data"); `check=True` runs SQLite's quick_check
    and refuses a damaged file."""

    def __init__(self, path: Path, create: bool = True, check: bool = False) -> None:
        self.path = path
        # Each kiosk's high-water mark as committed; this process is the only one writing
        # events, so the table is read once per kiosk.
        self._marks: dict[tuple[str, str], int] = {}
        self._tops: dict[tuple[str, str], int] = {}  # the highest seq stored, as committed
        memory = str(path) in (":memory:", "")
        if not memory and not path.parent.is_dir():
            raise StorageError(f"--db {path}: the folder {path.parent} does not exist")
        if not memory and path.is_dir():
            raise StorageError(f"--db {path}: is a folder, not a database file")
        if not memory and not create and not path.exists():
            raise StorageError(
                f"--db {path}: no such database (`kiosk-host serve` creates one, "
                "`kiosk-host restore` puts a backup back)"
            )
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA busy_timeout=5000")
            self._refuse_newer()
            if check:
                self.check()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut
            self.migrate()
        except sqlite3.Error as why:  # a file that is no database, no permission, a full disk
            if getattr(self, "db", None) is not None:
                self.db.close()
            said = write_failure(path, why)
            raise StorageError(
                said or f"--db {path}: cannot be used as the database: {why}"
            ) from None
        except StorageError:
            self.db.close()
            raise

    @classmethod
    def open(cls, where: str, create: bool = True, check: bool = False) -> Storage:
        if where.startswith(("postgresql:", "postgres:")):
            raise StorageError(f"--db {where}: a PostgreSQL URL where a SQLite file is needed")
        return cls(Path(where.removeprefix("sqlite:///")), create, check)

    def failure(self, why: BaseException) -> str | None:
        """What an operator must fix when a write failed for a reason of the machine's."""
        return write_failure(self.path, why)

    def read_only(self, mmap_bytes: int = 0) -> None:
        """Refuse writes on this connection from now on; with `mmap_bytes`, read pages
        straight from the file's memory map, shared by every connection, rather than copy
        them into each connection's own small cache."""
        self.db.execute("PRAGMA query_only = ON")
        if mmap_bytes:
            self.db.execute(f"PRAGMA mmap_size = {int(mmap_bytes)}")

    def version(self) -> int:
        version: int = self.db.execute("PRAGMA user_version").fetchone()[0]
        return version

    def _refuse_newer(self) -> None:
        found, known = self.version(), len(MIGRATIONS)
        if found <= known:
            return
        needs = SCHEMA_RELEASES.get(found)
        release = f"kiosk-host {needs} or later" if needs else "a kiosk-host newer than this one"
        raise StorageError(
            f"--db {self.path}: schema version {found} is newer than this kiosk-host "
            f"({known}): it needs {release}; this one would write it wrongly"
        )

    def check(self) -> None:
        """SQLite's quick_check of every page and index; DamagedDatabase, saying how to
        restore, when it fails."""
        try:
            rows = [r[0] for r in self.db.execute("PRAGMA quick_check(3)")]
        except sqlite3.DatabaseError as why:
            rows = [str(why)]
        if rows != ["ok"]:
            first = " ".join(rows[0].split())[:160]  # SQLite's report spans lines: one here
            raise DamagedDatabase(
                f"--db {self.path}: the database is damaged ({first}); restore a backup:"
                f" kiosk-host restore --from BACKUP --db {self.path}"
            )

    def backup(self, to: Path) -> None:
        """A consistent copy of the database as of one moment, taken while others write
        (SQLite's online backup, a few pages at a time)."""
        target = sqlite3.connect(to)
        try:
            self.db.backup(target, pages=1024)
            target.execute("PRAGMA journal_mode=DELETE")  # one file, to copy or keep anywhere
        finally:
            target.close()

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
                _rollback(self.db)
                raise

    def write_batch(
        self,
        events: Iterable[EventRow],
        dead: Iterable[DeadLetter] = (),
        devices: Iterable[DeviceStatus] = (),
        apply: Callable[[Storage, EventRow], list[DeadLetter]] | None = None,
        regressed: Callable[[Storage, list[EventRow]], None] | None = None,
        rated: Callable[[Storage, list[EventRow]], list[DeadLetter]] | None = None,
    ) -> Stored:
        """Store one batch in one transaction; returns what was new. `apply` is called, in the
        same transaction, for every new event other than a rating (the recovery cases), and
        may return dead letters (a verdict refused by the rules of the cases). `rated` is
        called, in the same transaction, with the batch's ratings once they are stored and
        before `apply` (a follow-up stored before its rating waits for it). An event whose key
        is stored with other content is no duplicate but a kiosk whose seq went back: it is
        kept as a dead letter (rule `regression`, payload whole) and `regressed` is called
        with them, in the same transaction, to raise the alert. Dead letters are written as
        they come, so that `rated` and `apply` find those of the batch's earlier events
        (`revise_dead_letter`)."""
        db = self.db
        events = list(events)
        batch = events
        devices = list(devices)
        db.execute("BEGIN IMMEDIATE")
        try:
            letters = self._keep(dead)
            # The ratings first: a follow-up in the same batch (a kiosk's backlog) opens its
            # case from its rating's time and station, as when they come one by one.
            rest = [e for e in events if e.kind != "rating"] if apply is not None else []
            ratings = [e for e in events if e.kind == "rating"] if apply is not None else events
            new = self._insert_ratings(ratings)
            if rated is not None and ratings:
                letters += self._keep(rated(self, ratings))
            for e in rest:
                if self._insert_event(e):
                    new += 1
                    letters += self._keep(apply(self, e) if apply is not None else [])
            late = self._regressions(batch) if new < len(batch) else []
            dup = len(batch) - new - len(late)
            letters += self._keep(_regression(e) for e in late)
            if late and regressed is not None:
                regressed(self, late)
            marks, tops = self._advance_marks(batch, devices)
            for s in devices:
                self._device(s)
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        self._marks.update(marks)  # only once committed: a rolled-back batch moved nothing
        self._tops.update(tops)
        return Stored(new, dup, letters, marks, len(late))

    def _insert_ratings(self, ratings: list[EventRow]) -> int:
        """Insert the batch's ratings (and other events when no `apply` takes them one by one)
        and add the new ones to the roll-ups; how many were new. One statement inserts them
        all, and its count says how many were new but not which: when every one was (the
        common case) they all count; else they are inserted again one by one, after rolling
        back to before the first, to learn which."""
        db = self.db
        db.execute("SAVEPOINT ratings")
        new = max(db.executemany(_INSERT_EVENT, [_event_values(e) for e in ratings]).rowcount, 0)
        fresh = ratings
        if new < len(ratings):
            db.execute("ROLLBACK TO ratings")
            fresh = [e for e in ratings if self._insert_event(e)]
            new = len(fresh)
        db.execute("RELEASE ratings")
        db.executemany(_ADD_ROLLUP, rollup_deltas(fresh))
        return new

    def _keep(self, dead: Iterable[DeadLetter]) -> int:
        """Write dead letters (inside the batch's transaction); how many."""
        letters = 0
        for d in dead:
            self.db.execute(
                "INSERT INTO dead_letters (topic, payload, size, rule, field, reason, arrived)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (d.topic, d.payload[:DEAD_LETTER_BYTES], len(d.payload), d.rule, d.field,
                 d.reason, d.arrived),
            )  # fmt: skip
            letters += 1
        return letters

    def revise_dead_letter(self, rule: str, topic: str, payload: bytes, reason: str | None) -> None:
        """Give the dead letters of `rule` kept for this message a new reason, or take them
        back (`reason` None): a verdict the cases now refuse for another reason, or no longer
        refuse, once an event stored later has shown what came before it."""
        key = (rule, topic, payload[:DEAD_LETTER_BYTES])
        if reason is None:
            self.db.execute(
                "DELETE FROM dead_letters WHERE rule = ? AND topic = ? AND payload = ?", key
            )
        else:
            self.db.execute(
                "UPDATE dead_letters SET reason = ? WHERE rule = ? AND topic = ? AND payload = ?",
                (reason, *key),
            )

    def _insert_event(self, e: EventRow) -> bool:
        return self.db.execute(_INSERT_EVENT, _event_values(e)).rowcount > 0

    def _regressions(self, events: list[EventRow]) -> list[EventRow]:
        """The events whose key is stored with other content (compared as JSON, so a stored
        payload in another text form of the same content is a duplicate)."""
        out = []
        for e in events:
            row = self.db.execute(
                "SELECT payload FROM events WHERE store = ? AND device = ? AND seq = ?",
                (e.store, e.device, e.seq),
            ).fetchone()
            if row is not None and json.loads(row[0]) != e.payload:
                out.append(e)
        return out

    MARK_STEP = 512  # stored seqs read at a time while a mark moves past events stored early

    def _advance_marks(
        self, events: list[EventRow], devices: Iterable[DeviceStatus] = ()
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """Each kiosk's high-water mark moved past what is now stored (the highest seq below
        which every one of its events is stored), and its highest seq stored. Events that
        came early (above a gap) are found by the index once the gap fills, so the mark is
        right whatever the order of arrival; the index is read only when such events exist,
        so a batch in order costs no query, and one statement writes the marks that moved.
        A kiosk's status may say the oldest seq it keeps (`kept_from`): what it let go before
        that will not come from it again, so the mark passes it rather than stop at a gap."""
        seqs: dict[tuple[str, str], list[int]] = {}
        floors: dict[tuple[str, str], int] = {}
        for e in events:
            seqs.setdefault((e.store, e.device), []).append(e.seq)
        for d in devices:
            kept = None if d.telemetry else d.payload.get("kept_from")
            if isinstance(kept, int) and kept > 1:
                key = (d.store, d.device)
                floors[key] = max(floors.get(key, 0), kept - 1)
                seqs.setdefault(key, [])
        marks: dict[tuple[str, str], int] = {}
        tops: dict[tuple[str, str], int] = {}
        moved = []
        for key, mine in seqs.items():
            start = mark = self.mark(*key)
            mark = max(mark, floors.get(key, 0))
            top = self._top(key)
            for s in sorted(mine):  # all stored now: new, duplicates and regressions alike
                if s == mark + 1:
                    mark = s
            while top > mark:  # stored earlier above a gap: does the gap close now?
                rows = self.db.execute(
                    "SELECT seq FROM events WHERE store = ? AND device = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (*key, mark, self.MARK_STEP),
                ).fetchall()
                before = mark
                for (s,) in rows:
                    if s != mark + 1:
                        break
                    mark = s
                if len(rows) < self.MARK_STEP or mark - before < len(rows):
                    break
            if mark != start:
                moved.append((*key, mark))
            marks[key] = mark
            tops[key] = max([top, *mine])
        self.db.executemany(
            "INSERT INTO marks (store, device, seq) VALUES (?, ?, ?)"
            " ON CONFLICT (store, device) DO UPDATE SET seq = excluded.seq",
            moved,
        )
        return marks, tops

    def _top(self, key: tuple[str, str]) -> int:
        if key not in self._tops:
            row = self.db.execute(
                "SELECT max(seq) FROM events WHERE store = ? AND device = ?", key
            ).fetchone()
            self._tops[key] = int(row[0]) if row and row[0] is not None else 0
        return self._tops[key]

    def mark(self, store: str, device: str) -> int:
        """The kiosk's high-water mark: every event of it with a seq up to this is stored."""
        key = (store, device)
        if key not in self._marks:
            row = self.db.execute(
                "SELECT seq FROM marks WHERE store = ? AND device = ?", key
            ).fetchone()
            self._marks[key] = int(row[0]) if row else 0
        return self._marks[key]

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
            fields["late_fix"] = bool(fields["late_fix"])
            out.append((Case(**fields), bool(r[-1])))
        return out

    def case_by_code(self, store: str, code: str) -> Case | None:
        """The latest case with this code in the store (codes repeat after many events)."""
        found = self._cases("store = ? AND code = ? ORDER BY opened_at DESC LIMIT 1", (store, code))
        return found[0][0] if found else None

    def case_of_rating(self, store: str, device: str, rating_seq: int) -> Case | None:
        """The case opened for a kiosk's rating, or None."""
        found = self._cases(
            "store = ? AND device = ? AND rating_seq = ?", (store, device, rating_seq)
        )
        return found[0][0] if found else None

    def cases_by_code(self, store: str, code: str) -> list[Case]:
        """Every case of the store with this code (codes repeat after many events), the
        earliest rating first."""
        found = self._cases(
            "store = ? AND code = ? ORDER BY opened_at, device, rating_seq", (store, code)
        )
        return [c for c, _ in found]

    def verdicts(self, store: str, code: str, since: int, until: int | None) -> list[EventRow]:
        """The store's stored verdicts (recovery_confirm events) for the case `code` with an
        event time in [since, until) (no end when None), in order of event time, then kiosk
        and seq."""
        rows = self.db.execute(
            "SELECT device, seq, at, device_ts, arrived, time_flagged, payload FROM events"
            " INDEXED BY events_verdicts WHERE store = ? AND json_extract(payload, '$.case') = ?"
            " AND at >= ? AND at < ? AND kind = 'recovery_confirm' ORDER BY at, device, seq",
            (store, code, since, 2**62 if until is None else until),
        )
        return [
            EventRow(store, d, q, "recovery_confirm", a, ts, arr, bool(f), json.loads(p), p)
            for d, q, a, ts, arr, f, p in rows
        ]

    def cases(self, store: str, states: Sequence[str] = (), limit: int = -1) -> list[Case]:
        """The store's cases in the given states (all when none), soonest deadline first."""
        marks = ", ".join("?" * len(states))
        where = f"store = ? AND state IN ({marks})" if states else "store = ?"
        found = self._cases(f"{where} ORDER BY deadline LIMIT ?", (store, *states, limit))
        return [c for c, _ in found]

    def listed_cases(self, store: str, limit: int = -1) -> list[Case]:
        """The store's cases still needing a person: waiting (open, fixed) and overdue
        (breached, unconfirmed) until someone closes them; the earliest deadline first, so
        the overdue ones, oldest first, come before those still running."""
        found = self._cases(
            "store = ? AND state IN ('open', 'fixed', 'breached', 'unconfirmed')"
            " AND closed_at IS NULL ORDER BY deadline, code LIMIT ?",
            (store, limit),
        )
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

    def add_deliveries(self, rows: Iterable[Delivery]) -> int:
        """Keep deliveries to make (inside the alert's transaction); a delivery kept before
        (the same id) is left as it is. How many are new."""
        cur = self.db.executemany(
            "INSERT OR IGNORE INTO deliveries (id, store, subject, recipient, payload,"
            " created_at, not_before, next_at, attempts, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 'pending')",
            [(d.id, d.store, d.subject, d.recipient, d.payload, d.created_at, d.not_before,
              d.not_before if d.next_at is None else d.next_at) for d in rows],
        )  # fmt: skip
        return max(cur.rowcount, 0)

    def due_deliveries(self, now: int, limit: int, again: bool = False) -> list[Delivery]:
        """Pending deliveries whose time has come, the longest waiting first; `again`: also
        those tried before and waiting to be tried again (a sender just started)."""
        rows = self.db.execute(
            f"SELECT {', '.join(_DELIVERY_FIELDS)} FROM deliveries WHERE state = 'pending'"
            " AND (next_at <= ? OR (? AND attempts > 0 AND not_before <= ?))"
            " ORDER BY next_at, id LIMIT ?",
            (now, again, now, limit),
        )
        return [Delivery(*r) for r in rows]

    def delivery_tried(
        self, id_: str, state: str, at: int, error: str | None, next_at: int | None
    ) -> bool:
        """Record a try of a pending delivery: `delivered`, `failed` for good, or `pending`
        again at `next_at`; False when it was no longer pending (another sender had it)."""
        cur = self.db.execute(
            "UPDATE deliveries SET attempts = attempts + 1, state = ?, last_error = ?,"
            " delivered_at = CASE WHEN ? = 'delivered' THEN ? END, next_at = coalesce(?, next_at)"
            " WHERE id = ? AND state = 'pending'",
            (state, error, state, at, next_at, id_),
        )
        return cur.rowcount > 0

    def deliveries(self, store: str, limit: int = 100) -> list[Delivery]:
        """The store's deliveries, newest first."""
        rows = self.db.execute(
            f"SELECT {', '.join(_DELIVERY_FIELDS)} FROM deliveries WHERE store = ?"
            " ORDER BY created_at DESC, id LIMIT ?",
            (store, limit),
        )
        return [Delivery(*r) for r in rows]

    def unpublished_alerts(self) -> list[tuple[str, str, bytes]]:
        rows = self.db.execute(
            "SELECT id, store, payload FROM alerts WHERE published = 0 ORDER BY at, rowid"
        )
        return [(i, s, p.encode()) for i, s, p in rows]

    def mark_published(self, ids: Sequence[str]) -> None:
        self.db.executemany("UPDATE alerts SET published = 1 WHERE id = ?", [(i,) for i in ids])

    def score_counts_between(
        self, store: str, since: int, until: int
    ) -> tuple[dict[int, int], int]:
        """Ratings per score in [since, until) inside opening hours, and how many were outside:
        the whole quarters read from the roll-ups, the parts of quarters at the edges from the
        events."""
        counts: dict[int, int] = {}
        outside = 0
        for _, out, score, n in self.rating_quarters(store, since, until):
            if out:
                outside += n
            else:
                counts[score] = counts.get(score, 0) + n
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
            " AND at >= ? AND at < ? ORDER BY at, arrived, device, seq",
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
        until): what recognition needs, read without parsing whole payloads. Station, staff and
        scale are read by the roll-ups' rules (ROLLUP_RECOUNT), so that a period reads the same
        from either; a rating without a whole-number scale is left out."""
        rows = self.db.execute(
            "SELECT at, score, CASE json_type(payload, '$.staff') WHEN 'text'"
            " THEN json_extract(payload, '$.staff') ELSE '' END,"
            " CASE json_type(payload, '$.station') WHEN 'text'"
            " THEN json_extract(payload, '$.station') ELSE '?' END,"
            " CASE WHEN json_type(payload, '$.scale') = 'integer'"
            " AND json_extract(payload, '$.scale') BETWEEN 1 AND 999"
            " THEN json_extract(payload, '$.scale') ELSE 0 END FROM events"
            " WHERE store = ? AND kind = 'rating' AND at >= ? AND at < ?",
            (store, since, until),
        )
        return [
            (at, score, credited_staff(staff), credited_station(station), scale)
            for at, score, staff, station, scale in rows
            if isinstance(score, int) and scale
        ]

    def rollup_credits(
        self, store: str, first: int, end: int
    ) -> list[tuple[int, str, str | None, int, int, int]]:
        """(quarter, station, staff signed in, scale, score, ratings) of the store's ratings in
        the whole quarters [first, end), read from the roll-ups by `rating_credits`' rules, in
        quarter order (a key may come twice: inside and outside opening hours)."""
        rows = self.db.execute(
            "SELECT quarter, station, staff, scale, score, n FROM rating_rollup"
            " WHERE store = ? AND quarter >= ? AND quarter < ? AND scale > 0",
            (store, first, end),
        )
        return credited_rows(rows)

    def recovered_between(self, store: str, since: int, until: int) -> list[Case]:
        """The store's recovered cases (wow or recovered) whose verdict fell in [since, until)."""
        found = self._cases(
            "store = ? AND state IN ('wow', 'recovered') AND verdict_at >= ? AND verdict_at < ?",
            (store, since, until),
        )
        return [c for c, _ in found]

    def hold_stores(self, stores: Iterable[str]) -> None:
        """Nothing to do: SQLite has one writing transaction at a time already (see
        `PostgresStorage.hold_stores`)."""

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

    def last_kiosk_alert_at(self, store: str, device: str, type_: str) -> int | None:
        """When the kiosk's last alert of this type was raised, or None."""
        row = self.db.execute(
            "SELECT max(at) FROM alerts WHERE store = ? AND json_extract(payload, '$.type') = ?"
            " AND json_extract(payload, '$.device') = ?",
            (store, type_, device),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def last_scores(self, store: str, n: int) -> list[tuple[int, int]]:
        """The store's last `n` ratings inside opening hours as (time, score), oldest first.
        Ratings of one second come in the order they were given: by arrival, then by each
        kiosk's own count (an outbox replay arrives in one second), never by score."""
        rows = self.db.execute(
            "SELECT at, score FROM events WHERE kind = 'rating' AND store = ? AND outside = 0"
            " ORDER BY at DESC, arrived DESC, seq DESC, device DESC LIMIT ?",
            (store, n),
        ).fetchall()
        return [(int(a), int(sc)) for a, sc in reversed(rows)]

    def alerts(self, store: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT payload, acked_by, comment FROM alerts WHERE store = ?"
            " ORDER BY at DESC, rowid DESC LIMIT ?",
            (store, limit),
        )
        return [{**json.loads(p), "acked_by": a, "comment": c} for p, a, c in rows]

    def alerts_by_prefix(self, prefix: str, store: str | None = None) -> list[tuple[str, str]]:
        """(id, store) of the alerts whose id starts with `prefix` (any case), of one store or
        of every store; at most 10, enough to name an ambiguous prefix's candidates."""
        low = prefix.lower()
        where = "id >= ? AND id < ?" + (" AND store = ?" if store else "")
        args = (low, low + "\uffff", *((store,) if store else ()))
        rows = self.db.execute(
            f"SELECT id, store FROM alerts WHERE {where} ORDER BY id LIMIT 10", args
        )
        return [(str(i), str(s)) for i, s in rows]

    def save_store_settings(self, text: str, source: str, at: int) -> None:
        """Keep the store settings `serve` loaded (stores.toml's text) for every command."""
        with self.transaction():
            self.db.execute(
                "INSERT INTO store_settings (id, text, source, saved_at) VALUES (1, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET text = excluded.text,"
                " source = excluded.source, saved_at = excluded.saved_at",
                (text, source, at),
            )

    def store_settings(self) -> tuple[str, str] | None:
        """The store settings `serve` last loaded, as (text, source file), or None."""
        row = self.db.execute("SELECT text, source FROM store_settings WHERE id = 1").fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

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
        elif "telemetry_interval_s" in s.payload:  # its config, as the fleet tools keep it
            self.db.execute(
                "UPDATE devices SET interval_s = ? WHERE store = ? AND device = ?",
                (s.payload["telemetry_interval_s"], s.store, s.device),
            )
        elif s.payload["state"] == REFUSED:  # the broker refused its connection (its log)
            self.db.execute(
                "UPDATE devices SET refused_at = ? WHERE store = ? AND device = ?",
                (s.arrived, s.store, s.device),
            )
        elif s.payload["state"] == "online":
            p = s.payload
            self.db.execute(
                "UPDATE devices SET since = CASE WHEN state IS 'online' THEN since ELSE ? END,"
                " state = 'online', fw = ?, board = ?, config_error = ?, status_at = ?,"
                " takes = ?, ota = ? WHERE store = ? AND device = ?",
                (s.arrived, p.get("fw"), p.get("board"), p.get("config_error"), s.arrived,
                 p.get("takes"), ota_text(p), s.store, s.device),
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
        and `since` when, `status_at` and `telemetry_at` (arrival times), the last
        `telemetry` whole, `interval_s` (its config's telemetry interval, None until seen),
        `refused_at` (when the broker last refused its connection, or None), and what its last
        online status said of updates: `takes` (the release kind: mpy, py or romfs) and `ota` (the
        status's member as an object: id, version, state, want, reason, progress; or None)."""
        where, args = (" WHERE store = ?", (store,)) if store else ("", ())
        rows = self.db.execute(
            "SELECT store, device, state, since, fw, board, config_error, status_at,"
            " telemetry_at, interval_s, refused_at, takes, telemetry, ota"
            f" FROM devices{where} ORDER BY store, device",
            args,
        )
        return [device_dict(r) for r in rows]

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
        per quarter of an hour (at // 900), per score, apart when outside opening hours.
        Every time zone's offset is a multiple of a quarter hour, so quarters add up to local
        hours. Whole quarters are read from the roll-ups, the parts at the edges from the
        events."""
        first, end, edges = whole_quarters(since, until)
        rows = self.db.execute(
            "SELECT quarter, outside, score, sum(n) FROM rating_rollup"
            " WHERE store = ? AND quarter >= ? AND quarter < ? GROUP BY quarter, outside, score",
            (store, first, end),
        ).fetchall()
        for a, b in edges:
            rows += self.db.execute(
                "SELECT at / 900, outside, score, count(*) FROM events INDEXED BY events_ratings"
                " WHERE kind = 'rating' AND store = ? AND outside IN (0, 1) AND at >= ?"
                " AND at < ? AND score IS NOT NULL GROUP BY 1, 2, 3",
                (store, a, b),
            ).fetchall()
        return [(int(q), bool(out), int(score), int(n)) for q, out, score, n in rows]

    # -- the roll-ups, checked against the events -------------------------------------------

    def rollup_check(self, limit: int = 20) -> RollupCheck:
        """The roll-ups compared with a recount from the events, both ways, as of one moment
        (one read transaction, while others write): what they hold, and up to `limit` rows
        that differ with how many do."""
        self.db.execute("BEGIN")
        try:
            ratings, rows = self.db.execute(
                "SELECT coalesce(sum(n), 0), count(*) FROM rating_rollup"
            ).fetchone()
            found = self.db.execute(
                f"WITH {ROLLUP_COLUMNS} AS ({ROLLUP_RECOUNT}) SELECT {DIFFERENCES} LIMIT ?",
                (limit,),
            ).fetchall()
        finally:
            self.db.execute("COMMIT")
        return RollupCheck(int(ratings), int(rows), *differences(found))

    def rebuild_rollups(self) -> RollupCheck:
        """The roll-ups made again from the events, in one transaction; what they now hold."""
        with self.transaction():
            self.db.execute("DELETE FROM rating_rollup")
            self.db.execute(
                "INSERT INTO rating_rollup (store, quarter, station, staff, outside, score,"
                f" scale, n) {ROLLUP_RECOUNT}"
            )
            ratings, rows = self.db.execute(
                "SELECT coalesce(sum(n), 0), count(*) FROM rating_rollup"
            ).fetchone()
        return RollupCheck(int(ratings), int(rows), 0, [])

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
        if kind is None:
            self.db.execute("COMMIT")
        else:
            _rollback(self.db)


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back what is open. A failed COMMIT (a full disk) has rolled back already: a second
    ROLLBACK would raise and hide the cause."""
    if db.in_transaction:
        db.execute("ROLLBACK")
