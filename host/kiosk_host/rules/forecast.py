"""Next week's risky hours: breakdowns expected per weekday and hour, from the last weeks'.

Pure functions, no I/O and no clock reads (docs/forecast.md). A slot is one hour of one
weekday on the store's wall clock, Saturday 14:00-15:00 say.

For a manager: each hour of the coming week gets the breakdowns it can expect, worked out
from the same hour of the same weekday over the last eight weeks, but pulled towards the
store's average hour. An hour that went wrong week after week keeps most of its own record;
an hour that was quiet but for one bad day is pulled back towards the average, so that one
bad afternoon does not make it the week's red flag. An hour the store is closed expects
nothing. The three riskiest hours are those with the most breakdowns expected.

For a statistician: breakdowns in slot s are taken as Poisson with a rate per open hour
lambda_s, and lambda_s as Gamma-distributed around the store's rate
mu = (breakdowns) / (open hours) over the whole history, with the weight of K open hours
(prior Gamma(K mu, K); K = PRIOR_HOURS = 3, three weeks of one slot). The forecast is
the posterior mean times the slot's open hours in the coming week::

    rate_s     = (y_s + K mu) / (e_s + K)
    expected_s = rate_s * e'_s

with y_s the slot's breakdowns, e_s its open hours seen in the history (hours of days on
which no rating came at all are left out: the kiosks were off, or the store was closed for
a holiday) and e'_s its open hours next week. Open hours are counted by quarter hour, on the
same quarters as the report, so that:

* an hour the store is open for half of (opening at 07:30) counts half;
* an hour that did not exist one week (clocks going forward) has one occurrence fewer, and
  the hour that happens twice when clocks go back counts twice, in the history and next week;
* a store with fewer weeks of history (a new store) has smaller e_s, so is pulled harder to
  the store's mean; a store without any breakdown expects none anywhere.

Why K = 3: the weight that makes the error smallest is K = mu / tau^2, tau^2 being how much
the slots' true rates differ around mu; for hours that differ by a coefficient of variation c
that is K = 1 / (c^2 mu). A store with about one breakdown in two open hours (mu = 0.5) whose
busy hours see two to three times the quiet ones (c = 0.8) gives K = 3: after eight weeks a
slot's own record weighs 8/11, the store's mean 3/11, and a slot quiet but for one bad day of
four breakdowns expects (4 + 1.5) / 11 = 0.5, the store's average, not a red flag. A heavier
prior would pull real rush hours down; a lighter one lets one day's noise through. The
back-test (`make bench`) compares this forecast with "the same hour last week" and with the
plain eight-week mean.

The ranking: with equal open hours, slots rank as their breakdown counts do (the shrinkage is
monotone in the count); ties go to the slot that went wrong on more days, then the earlier
in the week (Monday first), then the earlier hour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final

from kiosk_host.rules.stores import WEEKDAYS, StoreConfig, is_open, local_day

PRIOR_HOURS: Final = 3.0  # K: the store's mean counts as 3 open hours of a slot's own record
WEEKS: Final = 8  # the history the forecast is meant for: the last eight weeks
TOP: Final = 3
QUARTER_S: Final = 900
DAY_NAMES: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
METHOD: Final = (
    "Gamma-Poisson: each weekday and hour's breakdowns per open hour, pulled towards the "
    "store's mean with the weight of 3 open hours"
)


@dataclass(frozen=True)
class Day:
    """One local day of history: its breakdowns per local hour (inside opening hours), and
    whether any rating came that day (inside opening hours or not)."""

    day: date
    breakdowns: Mapping[int, int]
    rated: bool


@dataclass(frozen=True)
class Slot:
    """One weekday's hour (weekday 0 = Monday) and what next week can expect of it."""

    weekday: int
    hour: int
    expected: float  # breakdowns expected in this hour of the coming week
    breakdowns: int  # in the history
    days: int  # days of history on which it was open and seen ("the last 8 Saturdays")
    bad_days: int  # of those, the days with a breakdown in it


@dataclass(frozen=True)
class Forecast:
    """The coming week of one store: `week[0]` is tomorrow (the store's local day)."""

    week: tuple[date, ...]
    expected: tuple[tuple[float, ...], ...]  # [weekday, Monday first][hour]
    top: tuple[Slot, ...]  # the riskiest hours, riskiest first; none expecting 0
    store_rate: float | None  # breakdowns per open hour over the history; None: no history
    days: int  # days of history used (rated, and open at some time)
    weeks: float  # from the first day used to today, in weeks (one decimal); 0 without
    prior_hours: float


def open_hours(cfg: StoreConfig, day: date, until: int | None = None) -> dict[int, float]:
    """The hours the store is open on local `day`, per local hour, counted by quarter hour
    (open at the quarter's middle) on the quarters of the report (from local midnight); only
    quarters whose middle is at or before `until` when given."""
    start = _midnight(cfg, day)
    end = _midnight(cfg, day + timedelta(days=1))
    out: dict[int, float] = {}
    for q in range(start, end, QUARTER_S):
        middle = q + QUARTER_S // 2
        if (until is not None and middle > until) or not is_open(cfg, middle):
            continue
        hour = datetime.fromtimestamp(q, cfg.tz).hour
        out[hour] = out.get(hour, 0.0) + QUARTER_S / 3600
    return out


def forecast(
    cfg: StoreConfig, history: Sequence[Day], now: int, prior_hours: float = PRIOR_HOURS
) -> Forecast:
    """The breakdowns expected in each weekday and hour of the seven local days after the
    one containing `now`, from the `history` seen up to `now` (see the module's docstring).
    ValueError for an hour outside 0..23 or a negative count."""
    if prior_hours <= 0:
        raise ValueError(f"prior_hours must be above 0, got {prior_hours}")
    y = [[0] * 24 for _ in WEEKDAYS]
    e = [[0.0] * 24 for _ in WEEKDAYS]
    seen = [[0] * 24 for _ in WEEKDAYS]
    bad = [[0] * 24 for _ in WEEKDAYS]
    used = 0
    since: date | None = None
    for d in history:
        for hour, n in d.breakdowns.items():
            if not 0 <= hour < 24 or n < 0:
                raise ValueError(f"{d.day}: {n} breakdowns at hour {hour}: expected 0..23, >= 0")
        hours = open_hours(cfg, d.day, now) if d.rated else {}
        if not hours:  # no rating at all that day, closed, or not begun: it tells nothing
            continue
        used += 1
        since = d.day if since is None else min(since, d.day)
        wd = d.day.weekday()
        for hour, h in hours.items():
            e[wd][hour] += h
            seen[wd][hour] += 1
        for hour, n in d.breakdowns.items():
            y[wd][hour] += n
            bad[wd][hour] += n > 0
    total_e = sum(map(sum, e))
    mu = sum(map(sum, y)) / total_e if total_e else None
    today = local_day(cfg, now)
    first = today + timedelta(days=1)
    week = tuple(first + timedelta(days=i) for i in range(7))
    expected = [[0.0] * 24 for _ in WEEKDAYS]
    for day in week:
        wd = day.weekday()
        for hour, h in open_hours(cfg, day).items():
            if mu is not None:
                rate = (y[wd][hour] + prior_hours * mu) / (e[wd][hour] + prior_hours)
                expected[wd][hour] = rate * h
    slots = [
        Slot(wd, hour, expected[wd][hour], y[wd][hour], seen[wd][hour], bad[wd][hour])
        for wd in range(7)
        for hour in range(24)
        if expected[wd][hour] > 0
    ]
    slots.sort(key=lambda s: (-s.expected, -s.bad_days, s.weekday, s.hour))
    return Forecast(
        week=week,
        expected=tuple(tuple(row) for row in expected),
        top=tuple(slots[:TOP]),
        store_rate=mu,
        days=used,
        weeks=0.0 if since is None else round(((today - since).days + 1) / 7, 1),
        prior_hours=prior_hours,
    )


def reason(slot: Slot) -> str:
    """The slot in one line a manager reads, e.g. "Saturdays 14:00-15:00: 2.3 breakdowns
    expected (6 in the last 8 Saturdays)"."""
    day = DAY_NAMES[slot.weekday]
    head = (
        f"{day}s {slot.hour:02d}:00-{slot.hour + 1:02d}:00: {slot.expected:.1f} breakdowns expected"
    )
    if slot.days == 0:
        return f"{head} (no {day} at this hour seen yet: the store's average hour)"
    if slot.days == 1:
        return f"{head} ({slot.breakdowns} on the one {day} seen so far)"
    return f"{head} ({slot.breakdowns} in the last {slot.days} {day}s)"


def _midnight(cfg: StoreConfig, day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=cfg.tz).timestamp())
