"""CSV exports of a store's ratings and cases over a range of its local days."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, datetime

import anyio

from kiosk_host.aggregator.views import local_bounds
from kiosk_host.rules.stores import StoreConfig
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import RatingLine

PAGE = 5000  # ratings read per query
MAX_DAYS = 400

RATING_COLUMNS = (
    "time", "unix", "device", "seq", "station", "staff", "score", "scale", "breakdown",
    "outside_hours", "time_is_arrival",
)  # fmt: skip
CASE_COLUMNS = (
    "code", "state", "station", "device", "rating_seq", "opened", "deadline", "fixed_by",
    "fixed_at", "note", "verdict", "verdict_at", "late_verdict", "escalations",
)  # fmt: skip


def day_range(
    cfg: StoreConfig, first: str | None, last: str | None, today: date
) -> tuple[int, int]:
    """Unix seconds from the start of local day `first` to the end of local day `last`
    (YYYY-MM-DD, both included, each today when not given); ValueError saying what to fix."""
    days = []
    for name, text in (("from", first), ("to", last)):
        try:
            days.append(date.fromisoformat(text) if text else today)
        except ValueError:
            raise ValueError(f"{name}={text!r} is not a day; expected YYYY-MM-DD") from None
    if days[0] > days[1]:
        raise ValueError(f"from={days[0]} is after to={days[1]}")
    if (days[1] - days[0]).days >= MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days at once; export a longer time in parts")
    try:  # the end of 9999-12-31 is past the last day Python's dates can hold
        return local_bounds(cfg, days[0], days[1])
    except (OverflowError, OSError) as why:
        raise ValueError(f"from={days[0]} to={days[1]} is out of range: {why}") from None


def _line(values: Sequence[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


def _text(value: object) -> str:
    """Free text as a spreadsheet shows it, never as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] and text[0] in "=+-@\t\r" else text


def _local(cfg: StoreConfig, unix_s: int | None) -> str:
    return "" if unix_s is None else datetime.fromtimestamp(unix_s, cfg.tz).isoformat()


async def ratings_csv(
    opener: Callable[[], Store], cfg: StoreConfig, store: str, since: int, until: int
) -> AsyncIterator[str]:
    """Every rating of the period, oldest first, outside opening hours included (flagged)."""
    storage = await anyio.to_thread.run_sync(opener)
    try:
        yield _line(RATING_COLUMNS)
        after: tuple[int, str, int] | None = None
        while True:
            page = await anyio.to_thread.run_sync(
                storage.ratings_page, store, since, until, after, PAGE
            )
            yield "".join(_rating_line(cfg, r) for r in page)
            if len(page) < PAGE:
                return
            after = (page[-1].at, page[-1].device, page[-1].seq)
    finally:
        storage.close()


def _rating_line(cfg: StoreConfig, r: RatingLine) -> str:
    # station and staff are identifiers when stored since payloads are canonical; a row from
    # before may hold any text, so they are neutralised as free text is
    return _line((
        _local(cfg, r.at), r.at, r.device, r.seq, _text(r.station), _text(r.staff), r.score,
        r.scale, int(r.score <= cfg.low_threshold), int(r.outside), int(r.time_flagged),
    ))  # fmt: skip


async def cases_csv(
    opener: Callable[[], Store], cfg: StoreConfig, store: str, since: int, until: int
) -> AsyncIterator[str]:
    """Every case whose breakdown was rated in the period, oldest first."""
    storage = await anyio.to_thread.run_sync(opener)
    try:
        cases = await anyio.to_thread.run_sync(storage.cases_opened_between, store, since, until)
    finally:
        storage.close()
    yield _line(CASE_COLUMNS)
    for c in cases:
        yield _line((
            c.code, c.state, _text(c.station), c.device, c.rating_seq, _local(cfg, c.opened_at),
            _local(cfg, c.deadline), _text(c.fixed_by), _local(cfg, c.fixed_at), _text(c.note),
            c.verdict or "", _local(cfg, c.verdict_at), int(c.late_verdict), c.escalations,
        ))  # fmt: skip
