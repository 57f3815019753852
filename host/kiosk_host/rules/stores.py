"""Each store's settings, read from `stores.toml`: time zone, opening hours, rules, roster.

One table per store; every key is optional and a store the file does not describe gets the
defaults (UTC, always open, the thresholds below)::

    [stores.store-12]
    tz = "Europe/Berlin"            # IANA time zone name; times of day below are local
    scale = 4                       # buttons on the kiosk: 3, 4 or 5
    low_threshold = 2               # a score at or below it is a breakdown (below the scale)
    window_hours = 24               # a case's deadline: rating time + this many hours
    near_hours = 4                  # "deadline near" alert this long before it (0: none)
    surge_window_min = 60           # negative surge: sliding window in minutes ...
    surge_min_ratings = 10          # ... with at least this many ratings ...
    surge_share = 0.4               # ... of which more than this share are low
    praise_run = 10                 # praise: this many top ratings in a row
    offline_alert_minutes = 15      # kiosk_offline: down this long in opening hours (0: never)

    [stores.store-12.hours]         # without this table the store is always open
    mon = "08:00-20:00"             # a day left out, or "closed", is closed
    sat = "09:00-13:00, 14:00-18:00"
    fri = "18:00-02:00"             # ends after midnight: the early hours belong to Friday
    sun = "closed"

    [[stores.store-12.roster]]      # who serves at a station when nobody signed in
    station = "till-1"
    staff = "ana"
    days = ["mon", "tue", "wed"]    # every day when left out
    start = "08:00"
    end = "14:00"

    [stores.store-12.names]         # names shown on the recognition board
    ana = "Ana"

    [[stores.store-12.notify]]      # who is told of the store's alerts (docs/alerts.md)
    to = "mailto:manager@store12.example"   # or an http(s):// webhook URL
    kinds = ["case_opened", "deadline_near", "breached", "escalated"]   # default: all
    quiet = "21:00-07:00"           # store-local; critical alerts are never held back
    digests = ["week"]              # e-mail only; default ["day", "week"]

`language` (en, de, fr, es or nl; default en) is the language of the store's alerts, e-mails
and digests; `digest_hour` (default 7) the store-local hour at which the digests go out.

`window_minutes` and `near_minutes` give the same to the minute (a store gives at most one of
each pair), for a window shorter than hours: `kiosk-host demo`, whose customers come back
within minutes. Without either near key the warning comes 4 h before the deadline, or a sixth
of the window before it when the window is shorter than 24 h.

A bad file raises ValueError naming the file, the store, the key and what was expected.
Times of day are wall-clock times in the store's zone, so opening at 08:00 stays 08:00 on both
sides of a daylight-saving change; on the day the clocks go forward, a span that would cover
the skipped hour is simply an hour shorter.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kiosk_host.errors import UserError
from kiosk_host.wire.identifiers import identifier_pattern

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
DAY_S = 86_400
_CLOCK = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])")
_CLOCK_LIKE = re.compile(r"[0-9]{2}:[0-9]{2}")
LANGUAGES = ("en", "de", "fr", "es", "nl")  # the kiosk's own languages
# Every alert type (rules/recovery.py AlertType, mqtt_schemas/schemas/alert.json): what a
# recipient's `kinds` may name.
ALERT_KINDS = (
    "case_opened", "deadline_near", "escalated", "breached", "unconfirmed", "negative_surge",
    "praise", "seq_regression", "kiosk_offline", "outbox_filling",
)  # fmt: skip
DIGESTS = ("day", "week")
WEBHOOK_FORMATS = ("plain", "slack", "teams")
_MAILTO = re.compile(r"mailto:([^@\s<>,;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})")


@dataclass(frozen=True)
class Span:
    """A stretch of one local day in seconds from its midnight, [start, end); an end past
    86400 runs into the next day (e.g. 18:00-02:00 is 64800 to 93600)."""

    start: int
    end: int

    def covers(self, today_s: int, yesterday: bool) -> bool:
        """Whether local second `today_s` of a day is inside: of the span's own day, or of the
        day after when `yesterday` (the span started the day before)."""
        t = today_s + DAY_S if yesterday else today_s
        return self.start <= t < self.end


@dataclass(frozen=True)
class RosterEntry:
    """Who serves at a station on the given weekdays (0 = Monday) between two local times."""

    station: str
    staff: str
    days: frozenset[int]
    span: Span


@dataclass(frozen=True)
class Recipient:
    """Who is told of a store's alerts, and how: an e-mail address (`mailto:`) or a webhook
    URL; the alert types they get; the store-local span in which non-critical alerts wait;
    the digests they get (e-mail); a webhook's `format` and where its signing secret is."""

    to: str
    kinds: frozenset[str] = frozenset(ALERT_KINDS)
    quiet: Span | None = None
    digests: frozenset[str] = frozenset()
    format: str = "plain"
    secret_env: str | None = None  # the environment variable holding the webhook's secret
    secret_file: str | None = None  # or the file

    @property
    def email(self) -> str | None:
        """The address of an e-mail recipient; None for a webhook."""
        return self.to[len("mailto:") :] if self.to.startswith("mailto:") else None


@dataclass(frozen=True)
class StoreConfig:
    """One store's settings. The defaults are the product's: UTC, always open, a 4-point scale."""

    tz: tzinfo = UTC
    hours: tuple[tuple[Span, ...], ...] | None = None  # per weekday, Monday first; None: always
    scale: int = 4
    low_threshold: int = 2
    window_minutes: int = 24 * 60
    near_minutes: int = 4 * 60
    surge_window_min: int = 60
    surge_min_ratings: int = 10
    surge_share: float = 0.4
    praise_run: int = 10
    offline_alert_minutes: int = 15
    language: str = "en"
    digest_hour: int = 7
    notify: tuple[Recipient, ...] = ()
    roster: tuple[RosterEntry, ...] = ()
    names: tuple[tuple[str, str], ...] = ()  # (staff, display name)

    @property
    def window_s(self) -> int:
        """A case's window in seconds: its deadline is the rating time plus this."""
        return self.window_minutes * 60

    @property
    def near_s(self) -> int:
        """How long before a deadline the "deadline near" alert goes out (0: never)."""
        return self.near_minutes * 60

    @property
    def window_text(self) -> str:
        """The window in words: "24 h", "1 h 30 min", "5 min"."""
        h, m = divmod(self.window_minutes, 60)
        return " ".join(part for part in (f"{h} h" if h else "", f"{m} min" if m else "") if part)

    @property
    def tz_name(self) -> str:
        """The IANA name of the store's zone (as the summary's `tz` carries it)."""
        return str(getattr(self.tz, "key", "UTC"))

    def name_of(self, staff: str) -> str | None:
        """The display name the store gave a staff member, or None."""
        return dict(self.names).get(staff)


DEFAULT = StoreConfig()


@dataclass(frozen=True)
class Stores:
    """Every store the file describes; any other store gets the defaults."""

    configs: Mapping[str, StoreConfig] = field(default_factory=dict, hash=False)

    def get(self, store: str) -> StoreConfig:
        return self.configs.get(store, DEFAULT)

    def __contains__(self, store: object) -> bool:
        return store in self.configs


class StoresError(UserError, ValueError):
    """A stores file that cannot be read or breaks a rule; the message names the file and key."""


def load_stores(path: str | Path) -> Stores:
    """The stores described by the TOML file at `path`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StoresError(f"{p}: not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise StoresError(f"--stores {p}: {exc.strerror or exc}") from None
    return parse_stores(text, str(p))


def parse_stores(text: str, source: str = "stores.toml") -> Stores:
    """The stores described by TOML `text`; `source` names it in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StoresError(f"{source}: not valid TOML: {exc}") from None
    extra = sorted(set(doc) - {"stores"})
    if extra:
        raise StoresError(
            f"{source}: unknown top-level key {extra[0]!r}; "
            "expected only [stores.<store id>] tables"
        )
    tables = doc.get("stores", {})
    if not isinstance(tables, dict):
        raise StoresError(f"{source}: 'stores' must be a table of [stores.<store id>] tables")
    configs: dict[str, StoreConfig] = {}
    for store, table in tables.items():
        if not identifier_pattern().fullmatch(store):
            raise StoresError(
                f"{source}: store {store!r} is not a valid store id "
                "(lower-case letters, digits and '-', 1 to 32 characters)"
            )
        if not isinstance(table, dict):
            raise StoresError(f"{source}: store {store!r}: expected a table of settings")
        configs[store] = _Reader(source, store).config(table)
    return Stores(configs)


def is_open(cfg: StoreConfig, unix_s: int) -> bool:
    """Whether the store is open at `unix_s`, by its local wall clock."""
    if cfg.hours is None:
        return True
    local = datetime.fromtimestamp(unix_s, cfg.tz)
    t, wd = _second_of_day(local), local.weekday()
    return any(s.covers(t, False) for s in cfg.hours[wd]) or any(
        s.covers(t, True) for s in cfg.hours[(wd - 1) % 7]
    )


def local_day(cfg: StoreConfig, unix_s: int) -> date:
    """The store's local calendar day at `unix_s`."""
    return datetime.fromtimestamp(unix_s, cfg.tz).date()


def rostered(cfg: StoreConfig, station: str, unix_s: int) -> str | None:
    """Who the roster puts at `station` at `unix_s` (local time); the first matching entry of
    the file wins when entries overlap; None when nobody is rostered."""
    local = datetime.fromtimestamp(unix_s, cfg.tz)
    t, wd = _second_of_day(local), local.weekday()
    for entry in cfg.roster:
        if entry.station != station:
            continue
        if (wd in entry.days and entry.span.covers(t, False)) or (
            (wd - 1) % 7 in entry.days and entry.span.covers(t, True)
        ):
            return entry.staff
    return None


def _second_of_day(local: datetime) -> int:
    return local.hour * 3600 + local.minute * 60 + local.second


_KEYS = {
    "tz",
    "hours",
    "scale",
    "low_threshold",
    "window_hours",
    "window_minutes",
    "near_hours",
    "near_minutes",
    "surge_window_min",
    "surge_min_ratings",
    "surge_share",
    "praise_run",
    "offline_alert_minutes",
    "language",
    "digest_hour",
    "notify",
    "roster",
    "names",
}


class _Reader:
    """Reads one store's table, raising ValueError with the file, store and key on bad input."""

    def __init__(self, source: str, store: str) -> None:
        self.source = source
        self.store = store

    def fail(self, key: str, expected: str, got: object) -> ValueError:
        return ValueError(
            f"{self.source}: store {self.store!r}, key {key!r}: expected {expected}, got {got!r}"
        )

    def unknown(self, key: str, known: set[str]) -> ValueError:
        return ValueError(
            f"{self.source}: store {self.store!r}: unknown key {key!r}; "
            f"expected one of {', '.join(sorted(known))}"
        )

    def config(self, table: Mapping[str, Any]) -> StoreConfig:
        for key in table:
            if key not in _KEYS:
                raise self.unknown(key, _KEYS)
        d = DEFAULT
        scale = self.integer(table, "scale", d.scale, 3, 5)
        low = self.integer(table, "low_threshold", d.low_threshold, 1, scale - 1)
        window = self.minutes(table, "window", d.window_minutes, 1, 14 * 24 * 60)
        # Unless the store says otherwise, the warning comes 4 h before the deadline, as on
        # the default 24 h window, or a sixth of the window before it on a shorter window.
        near = self.minutes(table, "near", min(d.near_minutes, window // 6), 0, window - 1)
        return StoreConfig(
            tz=self.zone(table),
            hours=self.hours(table.get("hours")),
            scale=scale,
            low_threshold=low,
            window_minutes=window,
            near_minutes=near,
            surge_window_min=self.integer(table, "surge_window_min", d.surge_window_min, 1, 1440),
            surge_min_ratings=self.integer(
                table, "surge_min_ratings", d.surge_min_ratings, 1, 100_000
            ),
            surge_share=self.share(table, "surge_share", d.surge_share),
            praise_run=self.integer(table, "praise_run", d.praise_run, 1, 100_000),
            offline_alert_minutes=self.integer(
                table, "offline_alert_minutes", d.offline_alert_minutes, 0, 7 * 24 * 60
            ),
            language=self.language(table.get("language", d.language)),
            digest_hour=self.integer(table, "digest_hour", d.digest_hour, 0, 23),
            notify=self.recipients(table.get("notify", [])),
            roster=self.roster(table.get("roster", [])),
            names=self.names(table.get("names", {})),
        )

    def language(self, value: object) -> str:
        if value not in LANGUAGES:
            raise self.fail("language", "one of " + ", ".join(LANGUAGES), value)
        return str(value)

    def recipients(self, value: object) -> tuple[Recipient, ...]:
        if not isinstance(value, list):
            raise self.fail("notify", "a list of [[notify]] entries", value)
        return tuple(self.recipient(f"notify[{i}]", item) for i, item in enumerate(value))

    def recipient(self, key: str, item: object) -> Recipient:
        fields = {"to", "kinds", "quiet", "digests", "format", "secret_env", "secret_file"}
        if not isinstance(item, dict):
            raise self.fail(key, "a table with to, and optionally kinds and quiet", item)
        for k in item:
            if k not in fields:
                raise self.unknown(f"{key}.{k}", fields)
        to = item.get("to")
        web = isinstance(to, str) and _web_url(to)
        if not isinstance(to, str) or not (web or _MAILTO.fullmatch(to)):
            what = "mailto:ADDRESS or an http:// or https:// webhook URL"
            raise self.fail(f"{key}.to", what, to)
        kinds = item.get("kinds", list(ALERT_KINDS))
        if not isinstance(kinds, list) or not kinds or not all(k in ALERT_KINDS for k in kinds):
            raise self.fail(
                f"{key}.kinds", "a list of alert types: " + ", ".join(ALERT_KINDS), kinds
            )
        quiet = item.get("quiet")
        span = None
        if quiet is not None:
            bounds = quiet.split("-") if isinstance(quiet, str) else []
            if len(bounds) != 2 or not all(_CLOCK_LIKE.fullmatch(b.strip()) for b in bounds):
                raise self.fail(f"{key}.quiet", 'store-local hours like "21:00-07:00"', quiet)
            span = self.span(f"{key}.quiet", bounds[0], bounds[1])
        digests = item.get("digests", [] if web else list(DIGESTS))
        if not isinstance(digests, list) or not all(d in DIGESTS for d in digests):
            raise self.fail(f"{key}.digests", 'a list of "day" and "week" (or [])', digests)
        if digests and web:
            raise self.fail(f"{key}.digests", "digests only for mailto: recipients", digests)
        fmt = item.get("format", "plain")
        if fmt not in WEBHOOK_FORMATS or (fmt != "plain" and not web):
            what = "a webhook's format: " + ", ".join(WEBHOOK_FORMATS)
            raise self.fail(f"{key}.format", what, fmt)
        secrets = {}
        for k in ("secret_env", "secret_file"):
            v = item.get(k)
            if v is not None and (not isinstance(v, str) or not v or not web):
                raise self.fail(f"{key}.{k}", "a webhook's secret: a variable name or a file", v)
            secrets[k] = v
        if secrets["secret_env"] and secrets["secret_file"]:
            raise StoresError(f"{self.source}: store {self.store!r}: {key}: give secret_env or"
                              " secret_file, not both")  # fmt: skip
        return Recipient(
            to=to, kinds=frozenset(kinds), quiet=span, digests=frozenset(digests),
            format=str(fmt), **secrets,
        )  # fmt: skip

    def integer(self, table: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(key, f"a whole number from {lo} to {hi}", value)
        return value

    def minutes(self, table: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
        """A duration in minutes from `{name}_hours` or `{name}_minutes`, whichever is given
        (not both); `lo` and `hi` bound it in minutes, whole hours inside them for the first."""
        hours, minutes = f"{name}_hours", f"{name}_minutes"
        if hours in table and minutes in table:
            raise StoresError(
                f"{self.source}: store {self.store!r}: give {hours!r} or {minutes!r}, not both"
            )
        if hours in table:
            return self.integer(table, hours, 0, -(-lo // 60), hi // 60) * 60
        return self.integer(table, minutes, default, lo, hi)

    def share(self, table: Mapping[str, Any], key: str, default: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise self.fail(key, "a share above 0 and below 1, e.g. 0.4", value)
        return float(value)

    def zone(self, table: Mapping[str, Any]) -> tzinfo:
        name = table.get("tz")
        if name is None:
            return UTC
        if not isinstance(name, str) or not name:
            raise self.fail("tz", "an IANA time zone name such as 'Europe/Berlin'", name)
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail("tz", "an IANA time zone name such as 'Europe/Berlin'", name) from None

    def clock(self, key: str, text: str, end: bool) -> int:
        m = _CLOCK.fullmatch(text.strip())
        seconds = int(m.group(1)) * 3600 + int(m.group(2)) * 60 if m else -1
        if m is None or seconds > DAY_S or (seconds == DAY_S and not end):
            what = "a time of day HH:MM (24:00 only as an end)"
            raise self.fail(key, what, text)
        return seconds

    def span(self, key: str, start_text: str, end_text: str) -> Span:
        start = self.clock(key, start_text, end=False)
        end = self.clock(key, end_text, end=True)
        if end == start:
            raise self.fail(key, "a span of some length (end differs from start)", start_text)
        # An end at or before the start runs past midnight into the next day.
        return Span(start, end if end > start else end + DAY_S)

    def hours(self, value: object) -> tuple[tuple[Span, ...], ...] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail("hours", 'a table of weekdays, e.g. mon = "08:00-20:00"', value)
        days: list[tuple[Span, ...]] = [() for _ in WEEKDAYS]
        for day, text in value.items():
            key = f"hours.{day}"
            if day not in WEEKDAYS:
                raise self.fail(key, "a weekday: " + ", ".join(WEEKDAYS), day)
            what = '"closed" or opening hours like "08:00-20:00" or "09:00-13:00, 14:00-18:00"'
            if not isinstance(text, str):
                raise self.fail(key, what, text)
            if text.strip().lower() == "closed":
                continue
            spans = []
            for part in text.split(","):
                bounds = part.split("-")
                if len(bounds) != 2 or not all(_CLOCK_LIKE.fullmatch(b.strip()) for b in bounds):
                    raise self.fail(key, what, text)
                spans.append(self.span(key, bounds[0], bounds[1]))
            days[WEEKDAYS.index(day)] = tuple(spans)
        if not any(days):
            raise self.fail(
                "hours", "at least one open day (leave the table out: always open)", value
            )
        return tuple(days)

    def roster(self, value: object) -> tuple[RosterEntry, ...]:
        if not isinstance(value, list):
            raise self.fail("roster", "a list of [[roster]] entries", value)
        return tuple(self.roster_entry(f"roster[{i}]", item) for i, item in enumerate(value))

    def roster_entry(self, key: str, item: object) -> RosterEntry:
        fields = {"station", "staff", "days", "start", "end"}
        if not isinstance(item, dict):
            raise self.fail(key, "a table with station, staff, days, start and end", item)
        for k in item:
            if k not in fields:
                raise self.unknown(f"{key}.{k}", fields)
        ids = {}
        for k in ("station", "staff"):
            v = item.get(k)
            if not isinstance(v, str) or not identifier_pattern().fullmatch(v):
                raise self.fail(f"{key}.{k}", "an identifier (lower-case letters, digits, '-')", v)
            ids[k] = v
        days = item.get("days", list(WEEKDAYS))
        if (
            not isinstance(days, list)
            or not days
            or not all(isinstance(x, str) and x in WEEKDAYS for x in days)
        ):
            raise self.fail(f"{key}.days", "a list of weekdays: " + ", ".join(WEEKDAYS), days)
        for k in ("start", "end"):
            if not isinstance(item.get(k), str):
                raise self.fail(f"{key}.{k}", "a time of day HH:MM", item.get(k))
        return RosterEntry(
            station=ids["station"],
            staff=ids["staff"],
            days=frozenset(WEEKDAYS.index(x) for x in days),
            span=self.span(f"{key}.start", item["start"], item["end"]),
        )

    def names(self, value: object) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            raise self.fail("names", 'a table of staff names, e.g. ana = "Ana"', value)
        out: list[tuple[str, str]] = []
        for staff, name in value.items():
            if not identifier_pattern().fullmatch(staff):
                raise self.fail(f"names.{staff}", "a staff identifier as the key", staff)
            if not isinstance(name, str) or not 1 <= len(name) <= 24:
                raise self.fail(f"names.{staff}", "a name of 1 to 24 characters", name)
            out.append((staff, name))
        return tuple(out)


def _web_url(text: str) -> bool:
    """Whether `text` is an http(s) URL with a host (a webhook)."""
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname)
