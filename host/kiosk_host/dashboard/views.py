"""The dashboard's views of the database, made by the library functions the CLI prints.

Each is a JSON-ready dict equal to what `kiosk-host ... --json` prints for the same store and
period, read on database connections of the dashboard's own.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from kiosk_host.aggregator import views as summary
from kiosk_host.aggregator.engine import Engine
from kiosk_host.aggregator.sender import alerts_sent
from kiosk_host.dashboard.live import Changes
from kiosk_host.rules.recovery import LISTED, STATES, Case
from kiosk_host.rules.stores import StoreConfig, Stores
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.protocol import Store
from kiosk_host.wire.identifiers import identifier_pattern

T = TypeVar("T")
PERIODS = {"day": 1, "week": 7}
CASES_SHOWN = 200  # waiting cases on the store page, soonest deadline first
ALERTS_SHOWN = 100
MMAP_BYTES = 256 * 1024 * 1024
RECOGNITION_S = 5.0


class Views:
    """Every view of the dashboard over the database at `db`.

    Reads use one connection per worker thread, set to query only; writes (acknowledgements,
    comments, cases fixed) go through one connection of their own, one at a time. A view is
    kept until the database changes or `cache_s` seconds pass (0: never kept), so that many
    pages open on one store cost what one does."""

    def __init__(
        self, db: str, stores: Stores, now: Callable[[], float], cache_s: float = 10.0
    ) -> None:
        self.db = db
        self.stores = stores
        self.now = now
        self.cache_s = cache_s
        self.writer = open_storage(db)  # opened first: creates and migrates a new database
        self.changes = Changes(open_storage(db))
        self.engine = Engine(stores, now)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: weakref.WeakSet[Store] = weakref.WeakSet()  # gone with their threads
        self._cache: dict[tuple[Any, ...], tuple[tuple[int, int], float, Any]] = {}

    def reader(self) -> Store:
        """A new connection that only reads (the caller closes it)."""
        storage = open_storage(self.db)
        storage.read_only(MMAP_BYTES)  # SQLite: pages read from a memory map every one shares
        return storage

    def storage(self) -> Store:
        """This thread's read connection."""
        found: Store | None = getattr(self._local, "storage", None)
        if found is None:
            found = self.reader()
            self._local.storage = found
            with self._lock:
                self._opened.add(found)
        return found

    def close(self) -> None:
        self.changes.close()
        with self._lock:
            for s in list(self._opened):
                s.close()
        with self._write_lock:
            self.writer.close()

    def _cached(self, key: tuple[Any, ...], make: Callable[[], T], settle_s: float = 0) -> T:
        """The view made by `make`, kept while the database does not change and the clock
        stays in the same `cache_s` stretch; one that took long to make (`settle_s` > 0) is
        kept that long after it was made even when the database changes meanwhile."""
        if self.cache_s <= 0:
            return make()
        stamp = (self.changes.current(), int(self.now() // self.cache_s))
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and (hit[0] == stamp or time.monotonic() - hit[1] < settle_s):
            value: T = hit[2]
            return value
        value = make()
        with self._lock:
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[key] = (stamp, time.monotonic(), value)
        return value

    # -- reads -------------------------------------------------------------------------------

    def store_ids(self) -> list[str]:
        return self._cached(("stores",), lambda: summary.store_ids(self.storage(), self.stores))

    def known(self, store: str) -> bool:
        return bool(identifier_pattern().fullmatch(store)) and store in self.store_ids()

    def overview(self) -> dict[str, Any]:
        """Each store's day so far: the overview page."""

        def make() -> dict[str, Any]:
            now = int(self.now())
            rows = [
                {**summary.overview(self.storage(), self.stores.get(s), s, now)}
                for s in self.store_ids()
            ]
            return {"ts": now, "stores": rows}

        return self._cached(("overview",), make)

    def summary(self, store: str) -> dict[str, Any]:
        """Today's figures, as the aggregator publishes them on kiosk/v1/{store}/summary."""
        return self._cached(
            ("summary", store),
            lambda: summary.summary(self.storage(), self.stores.get(store), store, int(self.now())),
        )

    def report(self, store: str, period: str) -> dict[str, Any]:
        """`kiosk-host report --json` as `days`: each day's figures, its ratings by hour and
        the hours of its breakdowns (a week of them is the weekday-by-hour heatmap)."""

        def make() -> dict[str, Any]:
            cfg, now = self.stores.get(store), int(self.now())
            days = summary.report(self.storage(), cfg, store, now, PERIODS[period])
            return {
                "store": store, "ts": now, "period": period, "tz": cfg.tz_name,
                "scale": cfg.scale, "low_threshold": cfg.low_threshold, "days": days,
            }  # fmt: skip

        return self._cached(("report", store, period), make)

    def cases(
        self, store: str, states: Sequence[str] | None = None, limit: int = CASES_SHOWN
    ) -> dict[str, Any]:
        """The store's cases in `states`, soonest deadline first, as `cases list --json`;
        without `states`, those still needing a person as kiosk/v1/{store}/cases lists them
        (waiting, and overdue until someone closes them), overdue first."""

        def make() -> dict[str, Any]:
            now = int(self.now())
            storage = self.storage()
            found = (
                storage.listed_cases(store, limit)
                if states is None
                else storage.cases(store, states, limit)
            )
            return {
                "store": store,
                "ts": now,
                "states": list(LISTED if states is None else states),
                "cases": [case_json(c, now) for c in found],
            }

        key = None if states is None else tuple(states)
        return self._cached(("cases", store, key, limit), make)

    def alerts(self, store: str, limit: int = ALERTS_SHOWN) -> dict[str, Any]:
        """The store's alerts, newest first, as `alerts list --json`, each with what was sent
        to people about it (`deliveries`: to whom, and how it went)."""

        return self._cached(
            ("alerts", store, limit),
            lambda: {
                "store": store,
                "ts": int(self.now()),
                "alerts": alerts_sent(self.storage(), store, limit),
            },
        )

    def recognition(self, store: str, period: str) -> dict[str, Any]:
        """The recognition board, as `recognition --json` and kiosk/v1/{store}/recognition.
        The slowest view (every rating of the week is read), so made at most every
        RECOGNITION_S seconds while ratings stream in: a week's board hardly moves in that."""
        return self._cached(
            ("recognition", store, period),
            lambda: summary.recognition(
                self.storage(), self.stores.get(store), store, int(self.now()), PERIODS[period]
            ),
            settle_s=RECOGNITION_S,
        )

    def devices(self, store: str) -> dict[str, Any]:
        """The store's kiosks and their health (`health`, `late_s`) as of `ts`, as `devices
        --json` with a little more."""

        def make() -> dict[str, Any]:
            now = int(self.now())
            return {
                "store": store,
                "ts": now,
                "devices": summary.kiosk_health(self.storage(), store, now),
            }

        return self._cached(("devices", store), make)

    def store_page(self, store: str) -> dict[str, Any]:
        """Every view of the store page, by the name its live stream sends it under."""
        return {
            "summary": self.summary(store),
            "report": self.report(store, "week"),
            "cases": self.cases(store),
            "alerts": self.alerts(store),
            "recognition": self.recognition(store, "week"),
            "devices": self.devices(store),
        }

    def gauges(self) -> tuple[dict[str, int], int]:
        """Cases waiting per store (every known store, 0 included) and dead letters kept."""
        storage = self.storage()
        waiting = storage.waiting_case_counts()
        return {s: waiting.get(s, 0) for s in self.store_ids()}, storage.dead_letter_count()

    # -- changes -----------------------------------------------------------------------------

    def note_alert(self, alert_id: str, by: str | None, comment: str | None) -> bool:
        with self._write_lock:
            return self.writer.note_alert(alert_id, by, comment)

    def fix_case(self, store: str, code: str, staff: str, note: str | None) -> Case:
        """Mark a case fixed exactly as `kiosk-host cases fix` does (RuleError if it cannot)."""
        with self._write_lock:
            return self.engine.fix(self.writer, store, code, staff, note)

    def close_case(self, store: str, code: str, by: str, note: str | None) -> Case:
        """Close an overdue case exactly as `kiosk-host cases close` does (RuleError if not)."""
        with self._write_lock:
            return self.engine.close(self.writer, store, code, by, note)


def roster_json(cfg: StoreConfig) -> list[dict[str, str]]:
    """The store's staff for the dashboard's forms: every id that stores.toml names or puts on
    the roster, with its display name (the id itself when it has none), sorted by name."""
    ids = {staff for staff, _ in cfg.names} | {entry.staff for entry in cfg.roster}
    people = [{"staff": s, "name": cfg.name_of(s) or s} for s in ids]
    return sorted(people, key=lambda p: (p["name"].casefold(), p["staff"]))


def case_json(c: Case, now: int | None = None) -> dict[str, Any]:
    """A case as `kiosk-host cases list --json` gives it (`overdue` as of `now`)."""
    return summary.case_json(c, int(time.time()) if now is None else now)


def states_of(values: Sequence[str]) -> tuple[str, ...] | None:
    """Case states asked for by name (`all` for every state); None, the cases still needing a
    person, when none is asked for; ValueError for an unknown one."""
    if not values:
        return None
    if "all" in values:
        return STATES
    for v in values:
        if v not in STATES:
            raise ValueError(f"{v!r} is no case state; expected all or one of {', '.join(STATES)}")
    return tuple(dict.fromkeys(values))
