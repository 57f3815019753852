"""The host's storage in PostgreSQL: the same tables, methods and answers as sqlite.py.

psycopg 3; each storage object holds one connection of its own while it is open (a
transaction spans several of its calls), in autocommit mode with explicit transactions. Text
that is compared or ordered (stores, kiosks, ids, codes) is in the "C" collation, so that it
sorts byte by byte as in SQLite.
"""

from __future__ import annotations

import json
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from kiosk_host.rules.recovery import Alert, Case
from kiosk_host.storage import shown
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import (
    _CASE_FIELDS,
    _DELIVERY_FIELDS,
    DEAD_LETTER_BYTES,
    DIFFERENCES,
    REFUSED,
    ROLLUP_COLUMNS,
    SCHEMA_RELEASES,
    DeadLetter,
    Delivery,
    DeviceStatus,
    EventRow,
    RatingLine,
    RollupCheck,
    StorageError,
    Stored,
    _event_values,
    _regression,
    credited_rows,
    credited_staff,
    credited_station,
    device_dict,
    differences,
    ota_text,
    rollup_deltas,
    whole_quarters,
)

# sqlite.ROLLUP_RECOUNT in PostgreSQL's dialect (the payload read once, as jsonb): migration 9
# runs this text, never change it.
PG_ROLLUP_RECOUNT = """SELECT store, at / 900,
    CASE WHEN jsonb_typeof(j.p -> 'station') = 'string' THEN j.p ->> 'station' ELSE '?' END,
    CASE WHEN jsonb_typeof(j.p -> 'staff') = 'string' THEN j.p ->> 'staff' ELSE '' END,
    outside, score,
    CASE WHEN jsonb_typeof(j.p -> 'scale') = 'number' AND j.p ->> 'scale' ~ '^[1-9][0-9]{0,2}$'
        THEN (j.p ->> 'scale')::integer ELSE 0 END,
    count(*)
    FROM events CROSS JOIN LATERAL (SELECT payload::jsonb AS p) AS j
    WHERE kind = 'rating' AND score IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7"""
# Rows written in key order lie together on disk: a view reads a store's week of them from
# a few hundred pages rather than thousands (as SQLite's WITHOUT ROWID table keeps them).
_IN_KEY_ORDER = " ORDER BY 1, 2, 3, 4, 5, 6, 7"
# The recount's text in the table's collation, to be grouped with the table's rows.
_KEY = "(store, quarter, station, staff, outside, score, scale, n)"
_RECOUNT_C = (
    'SELECT store, quarter, station COLLATE "C", staff COLLATE "C", outside, score, scale, n'
    " FROM recount"
)
# The same schema versions as sqlite.MIGRATIONS, in PostgreSQL's dialect: a change to the
# schema appends one migration to each tuple (tests/test_storage_backends.py holds them to
# the same length).
PG_MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE events (
        store TEXT COLLATE "C" NOT NULL,
        device TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        at BIGINT NOT NULL,
        device_ts BIGINT,
        arrived BIGINT NOT NULL,
        time_flagged INTEGER NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (store, device, seq)
    );
    CREATE INDEX events_by_time ON events (store, at);
    CREATE TABLE dead_letters (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic TEXT NOT NULL,
        payload BYTEA NOT NULL,
        size INTEGER NOT NULL,
        rule TEXT NOT NULL,
        field TEXT NOT NULL,
        reason TEXT NOT NULL,
        arrived BIGINT NOT NULL
    );
    CREATE TABLE devices (
        store TEXT COLLATE "C" NOT NULL,
        device TEXT COLLATE "C" NOT NULL,
        state TEXT,
        fw TEXT,
        board TEXT,
        config_error TEXT,
        status_at BIGINT,
        telemetry TEXT,
        telemetry_at BIGINT,
        PRIMARY KEY (store, device)
    );
    -- bumped by every write transaction: what outside_changes() reads
    CREATE SEQUENCE changes;
    """,
    """
    CREATE TABLE cases (
        store TEXT COLLATE "C" NOT NULL,
        device TEXT COLLATE "C" NOT NULL,
        rating_seq BIGINT NOT NULL,
        code TEXT COLLATE "C" NOT NULL,
        station TEXT NOT NULL,
        opened_at BIGINT NOT NULL,
        deadline BIGINT NOT NULL,
        state TEXT NOT NULL,
        escalations INTEGER NOT NULL,
        fixed_by TEXT,
        fixed_at BIGINT,
        note TEXT,
        verdict TEXT,
        verdict_at BIGINT,
        late_verdict INTEGER NOT NULL,
        near_sent INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (store, device, rating_seq)
    );
    CREATE INDEX cases_by_code ON cases (store, code, opened_at);
    CREATE INDEX cases_waiting ON cases (state, deadline);
    CREATE TABLE alerts (
        id TEXT COLLATE "C" PRIMARY KEY,
        store TEXT COLLATE "C" NOT NULL,
        at BIGINT NOT NULL,
        payload TEXT NOT NULL,
        published INTEGER NOT NULL DEFAULT 0,
        acked_by TEXT,
        comment TEXT,
        n BIGINT GENERATED ALWAYS AS IDENTITY  -- the order they were kept in (SQLite's rowid)
    );
    """,
    """
    ALTER TABLE events ADD COLUMN score INTEGER;
    ALTER TABLE events ADD COLUMN outside INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_ratings ON events (store, outside, at, score) WHERE kind = 'rating';
    CREATE INDEX cases_by_state ON cases (store, state, deadline);
    """,
    """
    ALTER TABLE devices ADD COLUMN since BIGINT;
    UPDATE devices SET since = status_at;
    """,
    """
    CREATE TABLE marks (
        store TEXT COLLATE "C" NOT NULL,
        device TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (store, device)
    );
    """,
    """
    ALTER TABLE cases ADD COLUMN late_fix INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cases ADD COLUMN closed_by TEXT;
    ALTER TABLE cases ADD COLUMN closed_at BIGINT;
    ALTER TABLE cases ADD COLUMN close_note TEXT;
    CREATE TABLE store_settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        text TEXT NOT NULL,
        source TEXT NOT NULL,
        saved_at BIGINT NOT NULL
    );
    """,
    """
    ALTER TABLE devices ADD COLUMN refused_at BIGINT;
    ALTER TABLE devices ADD COLUMN interval_s INTEGER;
    """,
    """
    CREATE INDEX events_verdicts ON events (store, (payload::json ->> 'case'), at)
        WHERE kind = 'recovery_confirm';
    """,
    """
    CREATE TABLE rating_rollup (
        store TEXT COLLATE "C" NOT NULL,
        quarter BIGINT NOT NULL,
        station TEXT COLLATE "C" NOT NULL,
        staff TEXT COLLATE "C" NOT NULL,
        outside INTEGER NOT NULL,
        score INTEGER NOT NULL,
        scale INTEGER NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (store, quarter, station, staff, outside, score, scale)
    );
    INSERT INTO rating_rollup (store, quarter, station, staff, outside, score, scale, n)
    """
    + PG_ROLLUP_RECOUNT
    + _IN_KEY_ORDER
    + ";\n",
    """
    CREATE TABLE deliveries (
        id TEXT COLLATE "C" PRIMARY KEY,
        store TEXT COLLATE "C" NOT NULL,
        subject TEXT NOT NULL,
        recipient TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        not_before BIGINT NOT NULL,
        next_at BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        state TEXT NOT NULL,
        last_error TEXT,
        delivered_at BIGINT
    );
    CREATE INDEX deliveries_due ON deliveries (state, next_at);
    CREATE INDEX deliveries_by_store ON deliveries (store, created_at);
    """,
    """
    ALTER TABLE devices ADD COLUMN takes TEXT;
    ALTER TABLE devices ADD COLUMN ota TEXT;
    """,
)
MIGRATION_LOCK = 0x6B696F736B  # pg_advisory_xact_lock key: one migrating process at a time
CONNECT_TIMEOUT_S = 10
STORE_LOCKS = 0x6B68  # pg_advisory_xact_lock's first key: one lock per store (its crc32)
_INSERT_EVENT = (
    "INSERT INTO events (store, device, seq, kind, at, device_ts, arrived, time_flagged,"
    " payload, score, outside) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING"
)

# The batch's roll-up deltas as one array per column, in key order: rows are locked in that
# order, so two aggregators adding to the same rows never wait on each other in a circle.
_ADD_ROLLUPS = (
    "INSERT INTO rating_rollup (store, quarter, station, staff, outside, score, scale, n)"
    " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::integer[],"
    " %s::integer[], %s::integer[], %s::bigint[]) ON CONFLICT (store, quarter, station, staff,"
    " outside, score, scale) DO UPDATE SET n = rating_rollup.n + excluded.n"
)


class PostgresStorage:
    """PostgreSQL storage; `kiosk_host.storage.open("postgresql://...")` makes one."""

    MARK_STEP = 512  # stored seqs read at a time while a mark moves past events stored early

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        self.where = shown(url)
        # the stores of the batch being stored, all locked at the first hold_stores of its
        # transaction (then none is locked twice, and all in one order)
        self._batch_stores: set[str] = set()
        self._held: bool = False
        self._own = 0  # the changes this storage made itself
        # The connection is made here, in the caller's thread, and kept: a wrong URL or a
        # server that does not answer says why now. (A pool growing in the background once
        # lost an attempt to a spurious "connection timeout expired" and left the caller
        # waiting out its own timeout.)
        db = None
        try:
            db = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            self._migrate(db, create)
        except BaseException as why:
            if db is not None:
                db.close()
            if not isinstance(why, psycopg.Error):
                raise
            said = " ".join(str(why).split())[:300]
            raise StorageError(
                f"--db {self.where}: cannot be used as the database: {said}"
            ) from None
        self.db: psycopg.Connection[Any] = db
        self._closed = weakref.finalize(self, db.close)

    # -- the schema ----------------------------------------------------------------------------

    def _migrate(self, c: psycopg.Connection[Any], create: bool) -> None:
        known = len(PG_MIGRATIONS)
        for number in range(1, known + 1):
            with c.transaction():
                c.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                found = _version(c)
                if found is None and not create:
                    raise StorageError(
                        f"--db {self.where}: holds no kiosk-host data (`kiosk-host serve`"
                        " makes its tables)"
                    )
                if found is None:
                    c.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                    c.execute("INSERT INTO schema_version VALUES (0)")
                    found = 0
                if found > known:
                    needs = SCHEMA_RELEASES.get(found)
                    release = (
                        f"kiosk-host {needs} or later"
                        if needs
                        else "a kiosk-host newer than this one"
                    )
                    raise StorageError(
                        f"--db {self.where}: schema version {found} is newer than this kiosk-host"
                        f" ({known}): it needs {release}; this one would write it wrongly"
                    )
                if found >= number:
                    continue
                c.execute(PG_MIGRATIONS[number - 1].encode())
                c.execute("UPDATE schema_version SET version = %s", (number,))

    def version(self) -> int:
        return _version(self.db) or 0

    def failure(self, why: BaseException) -> str | None:
        """What an operator must fix when a write failed for a reason of the server's."""
        if isinstance(why, psycopg.errors.DiskFull):
            return f"--db {self.where}: the server's disk is full: free space, then start again"
        if isinstance(why, psycopg.errors.ReadOnlySqlTransaction):
            return f"--db {self.where}: the server is read-only (a standby?): give a primary"
        if isinstance(why, psycopg.OperationalError) and self.db.closed:
            return f"--db {self.where}: the connection to the database server is lost"
        return None

    def read_only(self, mmap_bytes: int = 0) -> None:
        self.db.execute("SET default_transaction_read_only = on")

    def close(self) -> None:
        self._closed()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """`with storage.transaction():` one transaction, committed when the block ends."""
        self._begin()
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        self.db.execute("COMMIT")

    def _begin(self) -> None:
        self.db.execute("BEGIN")
        self.db.execute("SELECT nextval('changes')")
        self._own += 1

    def _rollback(self) -> None:
        if self.db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.db.execute("ROLLBACK")

    def hold_stores(self, stores: Iterable[str]) -> None:
        """Inside a storing transaction, after its events are written and before the cases
        look for their other halves (a follow-up's rating, a verdict's case): wait for any
        other aggregator's transaction on the same stores to commit, so that one of the two
        always sees the other's events (READ COMMITTED), and the cases come out as from one
        aggregator. Locks are taken in one order (by key), so two transactions never wait on
        each other; they are let go at the commit."""
        if self._held:
            return  # the batch's stores, all of them, are held already
        wanted = set(stores) | self._batch_stores
        for key in sorted({zlib.crc32(s.encode()) & 0x7FFFFFFF for s in wanted}):
            self.db.execute("SELECT pg_advisory_xact_lock(%s, %s)", (STORE_LOCKS, key))
        self._held = bool(self._batch_stores)

    def outside_changes(self) -> int:
        """A number that changes whenever another process (the CLI) commits a change."""
        row = self.db.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM changes"
        ).fetchone()
        assert row is not None
        return int(row[0]) - self._own

    # -- ingest --------------------------------------------------------------------------------

    def write_batch(
        self,
        events: Iterable[EventRow],
        dead: Iterable[DeadLetter] = (),
        devices: Iterable[DeviceStatus] = (),
        apply: Callable[[Store, EventRow], list[DeadLetter]] | None = None,
        regressed: Callable[[Store, list[EventRow]], None] | None = None,
        rated: Callable[[Store, list[EventRow]], list[DeadLetter]] | None = None,
    ) -> Stored:
        """Store one batch in one transaction, as sqlite.Storage.write_batch does (dead
        letters written as they come)."""
        db = self.db
        batch = events = list(events)
        devices = list(devices)
        self._begin()
        # the stores whose kiosks' marks this batch may move: of its events, and of statuses
        # saying what a kiosk let go (telemetry alone takes no lock)
        self._batch_stores = {e.store for e in events} | {
            d.store for d in devices if not d.telemetry and "kept_from" in d.payload
        }
        self._held = False
        try:
            letters = self._keep(dead)
            rest = [e for e in events if e.kind != "rating"] if apply is not None else []
            ratings = [e for e in events if e.kind == "rating"] if apply is not None else events
            fresh = []
            with db.cursor() as cur:
                for e in ratings:
                    cur.execute(_INSERT_EVENT, _event_values(e))
                    if cur.rowcount > 0:
                        fresh.append(e)
            new = len(fresh)
            if rated is not None and ratings:
                letters += self._keep(rated(self, ratings))
            for e in rest:
                if self._insert_event(e):
                    new += 1
                    letters += self._keep(apply(self, e) if apply is not None else [])
            # Every writer locks the batch's stores (here, unless the cases took them already:
            # hold_stores), then the roll-up rows in key order: none waits on another in a
            # circle. Holding the stores, it sees what the group's other members stored for
            # them: the kiosks' marks below move past their events too.
            self.hold_stores(())
            self._add_rollups(fresh)
            late = self._regressions(batch) if new < len(batch) else []
            dup = len(batch) - new - len(late)
            letters += self._keep(_regression(e) for e in late)
            if late and regressed is not None:
                regressed(self, late)
            marks = self._advance_marks(batch, devices)
            for s in devices:
                self._device(s)
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        finally:
            self._batch_stores, self._held = set(), False
        return Stored(new, dup, letters, marks, len(late))

    def _add_rollups(self, fresh: list[EventRow]) -> None:
        """Add the ratings newly stored to the roll-ups: one statement for the batch."""
        deltas = rollup_deltas(fresh)
        if deltas:
            self.db.execute(_ADD_ROLLUPS, [[_text(d[i]) for d in deltas] for i in range(8)])

    def _keep(self, dead: Iterable[DeadLetter]) -> int:
        """Write dead letters (inside the batch's transaction); how many."""
        letters = 0
        for d in dead:
            self.db.execute(
                "INSERT INTO dead_letters (topic, payload, size, rule, field, reason, arrived)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (_text(d.topic), d.payload[:DEAD_LETTER_BYTES], len(d.payload), d.rule,
                 _text(d.field), _text(d.reason), d.arrived),
            )  # fmt: skip
            letters += 1
        return letters

    def revise_dead_letter(self, rule: str, topic: str, payload: bytes, reason: str | None) -> None:
        """As sqlite.Storage.revise_dead_letter."""
        key = (rule, _text(topic), payload[:DEAD_LETTER_BYTES])
        if reason is None:
            self.db.execute(
                "DELETE FROM dead_letters WHERE rule = %s AND topic = %s AND payload = %s", key
            )
        else:
            self.db.execute(
                "UPDATE dead_letters SET reason = %s WHERE rule = %s AND topic = %s"
                " AND payload = %s",
                (_text(reason), *key),
            )

    def _insert_event(self, e: EventRow) -> bool:
        return self.db.execute(_INSERT_EVENT, _event_values(e)).rowcount > 0

    def _regressions(self, events: list[EventRow]) -> list[EventRow]:
        out = []
        for e in events:
            row = self.db.execute(
                "SELECT payload FROM events WHERE store = %s AND device = %s AND seq = %s",
                (e.store, e.device, e.seq),
            ).fetchone()
            if row is not None and json.loads(row[0]) != e.payload:
                out.append(e)
        return out

    def _advance_marks(
        self, events: list[EventRow], devices: Iterable[DeviceStatus] = ()
    ) -> dict[tuple[str, str], int]:
        """Each kiosk's high-water mark, as sqlite.Storage moves it, but
        read from the database in the transaction (with the stores held), never from what
        this process saw before: another member of the group may have stored since."""
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
        moved = []
        stored_marks, stored_tops = self._marks_and_tops(list(seqs))
        for key, mine in seqs.items():
            start = mark = stored_marks.get(key, 0)
            mark = max(mark, floors.get(key, 0))
            top = stored_tops.get(key, 0)
            for s in sorted(mine):
                if s == mark + 1:
                    mark = s
            while top > mark:
                rows = self.db.execute(
                    "SELECT seq FROM events WHERE store = %s AND device = %s AND seq > %s"
                    " ORDER BY seq LIMIT %s",
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
        if moved:
            with self.db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO marks (store, device, seq) VALUES (%s, %s, %s)"
                    " ON CONFLICT (store, device) DO UPDATE"
                    " SET seq = greatest(marks.seq, excluded.seq)",
                    moved,
                )
        return marks

    def _marks_and_tops(
        self, keys: list[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """The stored marks and highest seqs of these kiosks, in two statements."""
        if not keys:
            return {}, {}
        stores, devices = [k[0] for k in keys], [k[1] for k in keys]
        wanted = "unnest(%s::text[], %s::text[]) AS k (store, device)"
        marks = self.db.execute(
            f"SELECT m.store, m.device, m.seq FROM marks AS m JOIN {wanted}"
            " ON m.store = k.store AND m.device = k.device",
            (stores, devices),
        ).fetchall()
        tops = self.db.execute(
            f"SELECT k.store, k.device, (SELECT max(seq) FROM events AS e"
            f" WHERE e.store = k.store AND e.device = k.device) FROM {wanted}",
            (stores, devices),
        ).fetchall()
        return (
            {(st, d): int(q) for st, d, q in marks},
            {(st, d): int(q) for st, d, q in tops if q is not None},
        )

    def mark(self, store: str, device: str) -> int:
        """The kiosk's high-water mark: every event of it with a seq up to this is stored."""
        row = self.db.execute(
            "SELECT seq FROM marks WHERE store = %s AND device = %s", (store, device)
        ).fetchone()
        return int(row[0]) if row else 0

    def event(self, store: str, device: str, seq: int) -> EventRow | None:
        row = self.db.execute(
            "SELECT kind, at, device_ts, arrived, time_flagged, payload FROM events"
            " WHERE store = %s AND device = %s AND seq = %s",
            (store, device, seq),
        ).fetchone()
        if row is None:
            return None
        kind, at, device_ts, arrived, flagged, payload = row
        return EventRow(store, device, seq, kind, at, device_ts, arrived, bool(flagged),
                        json.loads(payload), payload)  # fmt: skip

    def event_count(self, store: str | None = None) -> int:
        if store is None:
            row = self.db.execute("SELECT count(*) FROM events").fetchone()
        else:
            row = self.db.execute(
                "SELECT count(*) FROM events WHERE store = %s", (store,)
            ).fetchone()
        assert row is not None
        return int(row[0])

    def score_counts(self, store: str) -> dict[int, int]:
        rows = self.db.execute(
            "SELECT payload::json ->> 'score', count(*) FROM events"
            " WHERE store = %s AND kind = 'rating' GROUP BY 1",
            (store,),
        )
        return {int(score): int(n) for score, n in rows}

    def seqs(self, store: str, device: str) -> list[int]:
        rows = self.db.execute(
            "SELECT seq FROM events WHERE store = %s AND device = %s ORDER BY seq",
            (store, device),
        )
        return [int(r[0]) for r in rows]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self.db.execute(
            "SELECT topic, payload, rule, field, reason, arrived FROM dead_letters"
            " ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [DeadLetter(t, bytes(p), r, f, why, a) for t, p, r, f, why, a in rows]

    def dead_letter_count(self) -> int:
        row = self.db.execute("SELECT count(*) FROM dead_letters").fetchone()
        assert row is not None
        return int(row[0])

    def _device(self, s: DeviceStatus) -> None:
        self.db.execute(
            "INSERT INTO devices (store, device) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (s.store, s.device),
        )
        if s.telemetry:
            self.db.execute(
                "UPDATE devices SET telemetry = %s, telemetry_at = %s"
                " WHERE store = %s AND device = %s",
                (json.dumps(s.payload), s.arrived, s.store, s.device),
            )
        elif "telemetry_interval_s" in s.payload:
            self.db.execute(
                "UPDATE devices SET interval_s = %s WHERE store = %s AND device = %s",
                (s.payload["telemetry_interval_s"], s.store, s.device),
            )
        elif s.payload["state"] == REFUSED:
            self.db.execute(
                "UPDATE devices SET refused_at = %s WHERE store = %s AND device = %s",
                (s.arrived, s.store, s.device),
            )
        elif s.payload["state"] == "online":
            p = s.payload
            self.db.execute(
                "UPDATE devices SET since = CASE WHEN state IS NOT DISTINCT FROM 'online'"
                " THEN since ELSE %s END, state = 'online', fw = %s, board = %s,"
                " config_error = %s, status_at = %s, takes = %s, ota = %s"
                " WHERE store = %s AND device = %s",
                (s.arrived, p.get("fw"), p.get("board"), p.get("config_error"), s.arrived,
                 p.get("takes"), ota_text(p), s.store, s.device),
            )  # fmt: skip
        else:
            self.db.execute(
                "UPDATE devices SET since = CASE WHEN state IS NOT DISTINCT FROM %s THEN since"
                " ELSE %s END, state = %s, status_at = %s WHERE store = %s AND device = %s",
                (s.payload["state"], s.arrived, s.payload["state"], s.arrived, s.store, s.device),
            )

    def devices(self, store: str | None = None) -> list[dict[str, Any]]:
        """The kiosks as their last status and telemetry left them (sqlite.Storage.devices)."""
        where, args = (" WHERE store = %s", (store,)) if store else ("", ())
        rows = self.db.execute(
            "SELECT store, device, state, since, fw, board, config_error, status_at,"
            " telemetry_at, interval_s, refused_at, takes, telemetry, ota"
            f" FROM devices{where} ORDER BY store, device",
            args,
        )
        return [device_dict(r) for r in rows]

    # -- recovery cases and alerts -------------------------------------------------------------

    def save_case(self, c: Case, near_sent: bool | None = None) -> None:
        values = [getattr(c, f) for f in _CASE_FIELDS]
        self.db.execute(
            f"INSERT INTO cases ({', '.join(_CASE_FIELDS)}) VALUES"
            f" ({', '.join(['%s'] * len(_CASE_FIELDS))}) ON CONFLICT (store, device, rating_seq)"
            f" DO UPDATE SET {', '.join(f'{f} = excluded.{f}' for f in _CASE_FIELDS[3:])}",
            [int(v) if isinstance(v, bool) else _text(v) for v in values],
        )
        if near_sent is not None:
            self.db.execute(
                "UPDATE cases SET near_sent = %s"
                " WHERE store = %s AND device = %s AND rating_seq = %s",
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
        found = self._cases(
            "store = %s AND code = %s ORDER BY opened_at DESC LIMIT 1", (store, code)
        )
        return found[0][0] if found else None

    def case_of_rating(self, store: str, device: str, rating_seq: int) -> Case | None:
        found = self._cases(
            "store = %s AND device = %s AND rating_seq = %s", (store, device, rating_seq)
        )
        return found[0][0] if found else None

    def cases_by_code(self, store: str, code: str) -> list[Case]:
        found = self._cases(
            "store = %s AND code = %s ORDER BY opened_at, device, rating_seq", (store, code)
        )
        return [c for c, _ in found]

    def verdicts(self, store: str, code: str, since: int, until: int | None) -> list[EventRow]:
        rows = self.db.execute(
            "SELECT device, seq, at, device_ts, arrived, time_flagged, payload FROM events"
            " WHERE store = %s AND payload::json ->> 'case' = %s AND at >= %s AND at < %s"
            " AND kind = 'recovery_confirm' ORDER BY at, device, seq",
            (store, code, since, 2**62 if until is None else until),
        )
        return [
            EventRow(store, d, q, "recovery_confirm", a, ts, arr, bool(f), json.loads(p), p)
            for d, q, a, ts, arr, f, p in rows
        ]

    def cases(self, store: str, states: Sequence[str] = (), limit: int = -1) -> list[Case]:
        where = "store = %s AND state = ANY(%s)" if states else "store = %s"
        args = (store, list(states)) if states else (store,)
        found = self._cases(f"{where} ORDER BY deadline LIMIT %s", (*args, _limit(limit)))
        return [c for c, _ in found]

    def listed_cases(self, store: str, limit: int = -1) -> list[Case]:
        found = self._cases(
            "store = %s AND state IN ('open', 'fixed', 'breached', 'unconfirmed')"
            " AND closed_at IS NULL ORDER BY deadline, code LIMIT %s",
            (store, _limit(limit)),
        )
        return [c for c, _ in found]

    def waiting_cases(self, until: int) -> list[tuple[Case, bool]]:
        return self._cases(
            "state IN ('open', 'fixed') AND deadline < %s ORDER BY deadline", (until,)
        )

    def case_stores(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT store FROM cases")]

    def add_alert(self, a: Alert) -> bool:
        cur = self.db.execute(
            "INSERT INTO alerts (id, store, at, payload) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (a.id, a.store, a.at, json.dumps(a.to_payload())),
        )
        return cur.rowcount > 0

    def add_deliveries(self, rows: Iterable[Delivery]) -> int:
        new = 0
        with self.db.cursor() as cur:
            for d in rows:
                cur.execute(
                    "INSERT INTO deliveries (id, store, subject, recipient, payload, created_at,"
                    " not_before, next_at, attempts, state)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, 'pending') ON CONFLICT DO NOTHING",
                    (d.id, d.store, _text(d.subject), _text(d.recipient), _text(d.payload),
                     d.created_at, d.not_before, d.not_before if d.next_at is None else d.next_at),
                )  # fmt: skip
                new += max(cur.rowcount, 0)
        return new

    def due_deliveries(self, now: int, limit: int, again: bool = False) -> list[Delivery]:
        rows = self.db.execute(
            f"SELECT {', '.join(_DELIVERY_FIELDS)} FROM deliveries WHERE state = 'pending'"
            " AND (next_at <= %s OR (%s AND attempts > 0 AND not_before <= %s))"
            " ORDER BY next_at, id LIMIT %s",
            (now, again, now, limit),
        )
        return [Delivery(*r) for r in rows]

    def delivery_tried(
        self, id_: str, state: str, at: int, error: str | None, next_at: int | None
    ) -> bool:
        cur = self.db.execute(
            "UPDATE deliveries SET attempts = attempts + 1, state = %s, last_error = %s,"
            " delivered_at = CASE WHEN %s = 'delivered' THEN %s::bigint END,"
            " next_at = coalesce(%s::bigint, next_at) WHERE id = %s AND state = 'pending'",
            (state, None if error is None else _text(error), state, at, next_at, id_),
        )
        return cur.rowcount > 0

    def deliveries(self, store: str, limit: int = 100) -> list[Delivery]:
        rows = self.db.execute(
            f"SELECT {', '.join(_DELIVERY_FIELDS)} FROM deliveries WHERE store = %s"
            " ORDER BY created_at DESC, id LIMIT %s",
            (store, _limit(limit)),
        )
        return [Delivery(*r) for r in rows]

    def unpublished_alerts(self) -> list[tuple[str, str, bytes]]:
        rows = self.db.execute(
            "SELECT id, store, payload FROM alerts WHERE published = 0 ORDER BY at, n"
        )
        return [(i, s, p.encode()) for i, s, p in rows]

    def mark_published(self, ids: Sequence[str]) -> None:
        self.db.execute("UPDATE alerts SET published = 1 WHERE id = ANY(%s)", (list(ids),))

    def last_alert_at(self, store: str, type_: str) -> int | None:
        row = self.db.execute(
            "SELECT max(at) FROM alerts WHERE store = %s AND payload::json ->> 'type' = %s",
            (store, type_),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def last_kiosk_alert_at(self, store: str, device: str, type_: str) -> int | None:
        row = self.db.execute(
            "SELECT max(at) FROM alerts WHERE store = %s AND payload::json ->> 'type' = %s"
            " AND payload::json ->> 'device' = %s",
            (store, type_, device),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def alerts(self, store: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT payload, acked_by, comment FROM alerts WHERE store = %s"
            " ORDER BY at DESC, n DESC LIMIT %s",
            (store, _limit(limit)),
        )
        return [{**json.loads(p), "acked_by": a, "comment": c} for p, a, c in rows]

    def alerts_by_prefix(self, prefix: str, store: str | None = None) -> list[tuple[str, str]]:
        low = prefix.lower()
        where = "id >= %s AND id < %s" + (" AND store = %s" if store else "")
        args = (low, low + "\uffff", *((store,) if store else ()))
        rows = self.db.execute(
            f"SELECT id, store FROM alerts WHERE {where} ORDER BY id LIMIT 10", args
        )
        return [(str(i), str(s)) for i, s in rows]

    def alert_store(self, alert_id: str) -> str | None:
        row = self.db.execute("SELECT store FROM alerts WHERE id = %s", (alert_id,)).fetchone()
        return None if row is None else str(row[0])

    def note_alert(self, alert_id: str, acked_by: str | None, comment: str | None) -> bool:
        with self.transaction():
            cur = self.db.execute(
                "UPDATE alerts SET acked_by = coalesce(%s, acked_by),"
                " comment = coalesce(%s, comment) WHERE id = %s",
                (_text(acked_by), _text(comment), alert_id),
            )
        return cur.rowcount > 0

    def save_store_settings(self, text: str, source: str, at: int) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO store_settings (id, text, source, saved_at) VALUES (1, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET text = excluded.text,"
                " source = excluded.source, saved_at = excluded.saved_at",
                (text, source, at),
            )

    def store_settings(self) -> tuple[str, str] | None:
        row = self.db.execute("SELECT text, source FROM store_settings WHERE id = 1").fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    # -- the views' reads ----------------------------------------------------------------------

    def score_counts_between(
        self, store: str, since: int, until: int
    ) -> tuple[dict[int, int], int]:
        counts: dict[int, int] = {}
        outside = 0
        for _, out, score, n in self.rating_quarters(store, since, until):
            if out:
                outside += n
            else:
                counts[score] = counts.get(score, 0) + n
        return counts, outside

    def case_figures(self, store: str, since: int, until: int, now: int) -> dict[str, int]:
        row = self.db.execute(
            "SELECT"
            " (SELECT count(*) FROM cases WHERE store = %s AND state IN ('open', 'fixed')),"
            " (SELECT count(*) FROM cases WHERE store = %s"
            "   AND state IN ('breached', 'unconfirmed') AND deadline >= %s AND deadline < %s),"
            " (SELECT count(*) FROM cases WHERE store = %s AND state IN ('wow', 'recovered')"
            "   AND verdict_at >= %s AND verdict_at < %s)",
            (store, store, since, min(until, now + 1), store, since, until),
        ).fetchone()
        assert row is not None
        return {"open": row[0], "overdue": row[1], "recovered_in_time": row[2]}

    def ratings(self, store: str, since: int, until: int) -> list[EventRow]:
        rows = self.db.execute(
            "SELECT device, seq, kind, at, device_ts, arrived, time_flagged, payload, outside"
            " FROM events WHERE store = %s"
            " AND kind IN ('rating', 'staff_signin', 'staff_signout')"
            " AND at >= %s AND at < %s ORDER BY at, arrived, device, seq",
            (store, since, until),
        )
        return [
            EventRow(store, d, q, k, a, ts, arr, bool(f), json.loads(p), p, bool(out))
            for d, q, k, a, ts, arr, f, p, out in rows
        ]

    def rating_credits(
        self, store: str, since: int, until: int
    ) -> list[tuple[int, int, str | None, str, int]]:
        rows = self.db.execute(
            "SELECT at, score, CASE WHEN jsonb_typeof(j.p -> 'staff') = 'string'"
            " THEN j.p ->> 'staff' ELSE '' END,"
            " CASE WHEN jsonb_typeof(j.p -> 'station') = 'string'"
            " THEN j.p ->> 'station' ELSE '?' END,"
            " CASE WHEN jsonb_typeof(j.p -> 'scale') = 'number'"
            " AND j.p ->> 'scale' ~ '^[1-9][0-9]{0,2}$' THEN (j.p ->> 'scale')::integer ELSE 0 END"
            " FROM events CROSS JOIN LATERAL (SELECT payload::jsonb AS p) AS j"
            " WHERE store = %s AND kind = 'rating' AND at >= %s AND at < %s",
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
        rows = self.db.execute(
            "SELECT quarter, station, staff, scale, score, n FROM rating_rollup"
            " WHERE store = %s AND quarter >= %s AND quarter < %s AND scale > 0",
            (store, first, end),
        )
        return credited_rows(rows)

    def recovered_between(self, store: str, since: int, until: int) -> list[Case]:
        found = self._cases(
            "store = %s AND state IN ('wow', 'recovered') AND verdict_at >= %s AND verdict_at < %s",
            (store, since, until),
        )
        return [c for c, _ in found]

    def last_scores(self, store: str, n: int) -> list[tuple[int, int]]:
        rows = self.db.execute(
            "SELECT at, score FROM events WHERE kind = 'rating' AND store = %s AND outside = 0"
            " ORDER BY at DESC, arrived DESC, seq DESC, device DESC LIMIT %s",
            (store, n),
        ).fetchall()
        return [(int(a), int(sc)) for a, sc in reversed(rows)]

    def store_ids(self) -> list[str]:
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
        first, end, edges = whole_quarters(since, until)
        rows = self.db.execute(
            "SELECT quarter, outside, score, sum(n) FROM rating_rollup"
            " WHERE store = %s AND quarter >= %s AND quarter < %s"
            " GROUP BY quarter, outside, score",
            (store, first, end),
        ).fetchall()
        for a, b in edges:
            rows += self.db.execute(
                "SELECT at / 900, outside, score, count(*) FROM events"
                " WHERE kind = 'rating' AND store = %s AND outside IN (0, 1) AND at >= %s"
                " AND at < %s AND score IS NOT NULL GROUP BY 1, 2, 3",
                (store, a, b),
            ).fetchall()
        return [(int(q), bool(out), int(score), int(n)) for q, out, score, n in rows]

    # -- the roll-ups, checked against the events ----------------------------------------------

    def rollup_check(self, limit: int = 20) -> RollupCheck:
        """As sqlite.Storage.rollup_check: one snapshot (REPEATABLE READ) for both reads."""
        self.db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            held = self.db.execute(
                "SELECT coalesce(sum(n), 0), count(*) FROM rating_rollup"
            ).fetchone()
            found = self.db.execute(
                f"WITH recount {_KEY} AS ({PG_ROLLUP_RECOUNT}), {ROLLUP_COLUMNS} AS ({_RECOUNT_C})"
                f" SELECT {DIFFERENCES} LIMIT %s",
                (limit,),
            ).fetchall()
        finally:
            self._rollback()
        assert held is not None
        return RollupCheck(int(held[0]), int(held[1]), *differences(found))

    def rebuild_rollups(self) -> RollupCheck:
        """As sqlite.Storage.rebuild_rollups. Writers wait at their roll-ups meanwhile (the
        table is locked against writes, not reads), so a batch committed before the rebuild
        counts in it and one committed after adds to it."""
        with self.transaction():
            self.db.execute("LOCK TABLE rating_rollup IN EXCLUSIVE MODE")
            self.db.execute("DELETE FROM rating_rollup")
            self.db.execute(
                "INSERT INTO rating_rollup (store, quarter, station, staff, outside, score,"
                f" scale, n) {PG_ROLLUP_RECOUNT}{_IN_KEY_ORDER}"
            )
            held = self.db.execute(
                "SELECT coalesce(sum(n), 0), count(*) FROM rating_rollup"
            ).fetchone()
        assert held is not None
        return RollupCheck(int(held[0]), int(held[1]), 0, [])

    def ratings_page(
        self, store: str, since: int, until: int, after: tuple[int, str, int] | None, limit: int
    ) -> list[RatingLine]:
        at, device, seq = after if after is not None else (since - 1, "", 0)
        rows = self.db.execute(
            "SELECT at, device, seq, payload::json -> 'station', payload::json -> 'staff',"
            " score, payload::json -> 'scale', outside, time_flagged FROM events"
            " WHERE store = %s AND kind = 'rating' AND at >= %s AND at < %s"
            " AND (at, device, seq) > (%s, %s, %s) ORDER BY at, device, seq LIMIT %s",
            (store, since, until, at, device, seq, limit),
        )
        return [
            RatingLine(int(a), d, int(q), st, sf, int(sc), int(scale), bool(out), bool(flag))
            for a, d, q, st, sf, sc, scale, out, flag in rows
        ]

    def cases_opened_between(self, store: str, since: int, until: int) -> list[Case]:
        found = self._cases(
            "store = %s AND opened_at >= %s AND opened_at < %s ORDER BY opened_at, code",
            (store, since, until),
        )
        return [c for c, _ in found]

    def waiting_case_counts(self) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT store, count(*) FROM cases WHERE state IN ('open', 'fixed') GROUP BY store"
        )
        return {store: int(n) for store, n in rows}


def _version(c: psycopg.Connection[Any]) -> int | None:
    """The schema version, or None before the first migration made the table."""
    row = c.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    found = c.execute("SELECT version FROM schema_version").fetchone()
    return int(found[0]) if found else 0


def _text(value: Any) -> Any:
    """Text as PostgreSQL can hold it: a NUL character (which SQLite keeps and PostgreSQL
    refuses) becomes U+FFFD, so that a message naming one is still kept; anything else as is."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def _limit(limit: int) -> int | None:
    """SQLite's LIMIT -1 (no limit) as PostgreSQL's LIMIT NULL."""
    return None if limit < 0 else limit
