"""The breakdown forecast (rules/forecast.py): shrinkage between a slot's own mean and the
store's, monotone in the slot's count, closed hours expect nothing, one bad day ranks below
an hour bad every week, new stores, stores without breakdowns, daylight saving, and the
back-test's synthetic store, on which it beats "the same hour last week"."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kiosk_host.rules.forecast import PRIOR_HOURS, Day, Slot, forecast, open_hours, reason
from kiosk_host.rules.stores import DEFAULT, StoreConfig, parse_stores
from tests.bench.forecast_backtest import backtest, synthetic_store

MONDAY = date(2025, 1, 6)
NOW = int(datetime(2025, 3, 2, 23, 59, 59, tzinfo=UTC).timestamp())  # Sunday, day 55's end
Counts = dict[tuple[int, int], int]  # (day index from MONDAY, hour): breakdowns


def days_of(counts: Counts, n: int = 56, first: date = MONDAY) -> list[Day]:
    by_day: dict[int, dict[int, int]] = {}
    for (d, h), c in counts.items():
        if c:
            by_day.setdefault(d, {})[h] = c
    return [Day(first + timedelta(days=d), by_day.get(d, {}), True) for d in range(n)]


def midnight(cfg: StoreConfig, day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=cfg.tz).timestamp())


counts_strategy = st.dictionaries(
    st.tuples(st.integers(0, 55), st.integers(0, 23)), st.integers(0, 6), max_size=60
)


@settings(max_examples=40, deadline=None)
@given(counts=counts_strategy)
def test_each_slot_lies_between_its_own_mean_and_the_stores(counts: Counts) -> None:
    f = forecast(DEFAULT, days_of(counts), NOW)  # always open, UTC: an hour a day per slot
    assert f.week[0] == date(2025, 3, 3) and f.days == 56 and f.weeks == 8.0
    total = sum(counts.values())
    mu = total / (56 * 24)
    assert f.store_rate == pytest.approx(mu)
    for wd in range(7):
        for hour in range(24):
            own = sum(c for (d, h), c in counts.items() if d % 7 == wd and h == hour) / 8
            x = f.expected[wd][hour]
            assert min(own, mu) - 1e-12 <= x <= max(own, mu) + 1e-12
            assert x == pytest.approx((own * 8 + PRIOR_HOURS * mu) / (8 + PRIOR_HOURS))
    assert len(f.top) == (3 if total else 0)


@settings(max_examples=40, deadline=None)
@given(counts=counts_strategy, day=st.integers(0, 55), hour=st.integers(0, 23))
def test_more_breakdowns_in_a_slot_never_lower_its_forecast(
    counts: Counts, day: int, hour: int
) -> None:
    before = forecast(DEFAULT, days_of(counts), NOW).expected[day % 7][hour]
    more = {**counts, (day, hour): counts.get((day, hour), 0) + 1}
    after = forecast(DEFAULT, days_of(more), NOW).expected[day % 7][hour]
    assert after > before


@settings(max_examples=25, deadline=None)
@given(
    every_week=st.integers(1, 4),
    share=st.floats(0.05, 1.0),
    quiet=st.tuples(st.integers(0, 6), st.integers(8, 19)),
    steady=st.tuples(st.integers(0, 6), st.integers(8, 19)),
    bad_week=st.integers(0, 7),
)
def test_a_quiet_hour_with_one_bad_day_ranks_below_an_hour_bad_every_week(
    every_week: int, share: float, quiet: tuple[int, int], steady: tuple[int, int], bad_week: int
) -> None:
    """However bad the one day, up to as many breakdowns as the steady hour's eight weeks."""
    assume(quiet != steady)
    one_day = max(1, round(share * 8 * every_week))
    counts = {(w * 7 + steady[0], steady[1]): every_week for w in range(8)}
    counts[bad_week * 7 + quiet[0], quiet[1]] = one_day
    f = forecast(DEFAULT, days_of(counts), NOW)
    assert [(s.weekday, s.hour) for s in f.top[:2]] == [steady, quiet]
    assert f.top[0].bad_days == 8 and f.top[1].bad_days == 1


def test_closed_hours_expect_nothing() -> None:
    cfg = parse_stores(
        '[stores.s]\ntz = "America/New_York"\n[stores.s.hours]\n'
        'mon = "07:30-12:00, 13:00-21:00"\nfri = "18:00-02:00"\nsat = "closed"\n'
    ).get("s")
    first = date(2025, 9, 1)  # a Monday
    counts = {(d, h): 1 for d in range(56) for h in range(24)}  # as a report never would
    now = midnight(cfg, first + timedelta(days=56)) - 1
    f = forecast(cfg, days_of(counts, first=first), now)
    mon, fri, sat = f.expected[0], f.expected[4], f.expected[5]
    assert [h for h in range(24) if mon[h]] == [7, *range(8, 12), *range(13, 21)]
    assert f.store_rate is not None
    # open half of the hour: half the exposure, then half the hour next week
    assert mon[7] == pytest.approx(0.5 * (8 + PRIOR_HOURS * f.store_rate) / (4 + PRIOR_HOURS))
    assert [h for h in range(24) if fri[h]] == [18, 19, 20, 21, 22, 23]
    assert [h for h in range(24) if sat[h]] == [0, 1]  # Friday's late hours
    for wd in (1, 2, 3, 6):
        assert f.expected[wd] == (0.0,) * 24
    assert all((s.weekday, s.hour) not in ((1, 9), (5, 12)) for s in f.top)


def test_a_new_store_a_store_without_breakdowns_and_days_without_ratings() -> None:
    new = days_of({(d, 15): 1 for d in range(46, 56)})[46:]  # ten days, one every afternoon
    f = forecast(DEFAULT, new, NOW)
    assert f.days == 10 and f.weeks == 1.4
    assert [(s.hour, s.days) for s in f.top] == [(15, 2), (15, 2), (15, 2)]
    # with two weeks of its own the slot is pulled harder to the store's mean than with eight
    eight = forecast(DEFAULT, days_of({(d, 15): 1 for d in range(56)}), NOW)
    assert f.top[0].expected < eight.top[0].expected

    calm = forecast(DEFAULT, days_of({}), NOW)
    assert calm.store_rate == 0 and calm.top == ()
    assert all(x == 0 for row in calm.expected for x in row)
    nothing = forecast(DEFAULT, [], NOW)
    assert nothing.store_rate is None and nothing.days == 0 and nothing.weeks == 0
    # a day without a single rating (kiosks off) is left out, not read as a quiet day
    off = [Day(d.day, d.breakdowns, d.day.weekday() != 0) for d in days_of({(1, 9): 4})]
    f_off = forecast(DEFAULT, off, NOW)
    mu = 4 / (48 * 24)
    assert f_off.days == 48 and f_off.store_rate == pytest.approx(mu)
    assert (f_off.top[0].weekday, f_off.top[0].hour, f_off.top[0].days) == (1, 9, 8)
    assert f_off.expected[0][9] == pytest.approx(mu)  # no Monday seen: the store's mean
    assert f_off.expected[2][9] == pytest.approx(PRIOR_HOURS * mu / (8 + PRIOR_HOURS))


def test_daylight_saving_a_missing_hour_and_a_doubled_one() -> None:
    cfg = parse_stores('[stores.s]\ntz = "Europe/Berlin"\n').get("s")
    # eight weeks over Sunday 30 March 2025, whose 02:00 hour never happened: a breakdown at
    # 02:00 and one at 03:00 every other day
    first = date(2025, 3, 3)
    assert open_hours(cfg, date(2025, 3, 30)).get(2) is None
    assert open_hours(cfg, date(2025, 10, 26))[2] == 2.0  # 02:00 to 03:00 happened twice
    counts = {(d, h): 1 for d in range(56) for h in (2, 3) if (d, h) != (27, 2)}
    history = days_of(counts, first=first)
    f = forecast(cfg, history, midnight(cfg, first + timedelta(days=56)) - 1)
    k, mu = PRIOR_HOURS, 111 / (56 * 24 - 1)
    assert f.store_rate == pytest.approx(mu)
    sunday_2 = (7 + k * mu) / (7 + k)  # seven Sundays had that hour
    assert f.expected[6][2] == pytest.approx(sunday_2)
    assert f.expected[6][3] == pytest.approx((8 + k * mu) / (8 + k))
    # next week's Sunday 26 October has the hour twice, Sunday 29 March 2026 not at all
    autumn = forecast(cfg, history, midnight(cfg, date(2025, 10, 20)) - 1)
    assert autumn.week[-1] == date(2025, 10, 26)
    assert autumn.expected[6][2] == pytest.approx(2 * sunday_2)
    spring = forecast(cfg, history, midnight(cfg, date(2026, 3, 23)) - 1)
    assert spring.week[-1] == date(2026, 3, 29)
    assert spring.expected[6][2] == 0
    assert spring.expected[6][3] == pytest.approx((8 + k * mu) / (8 + k))


def test_today_counts_only_as_far_as_it_has_gone() -> None:
    cfg = parse_stores('[stores.s]\ntz = "Asia/Kathmandu"\n').get("s")
    day = date(2025, 11, 20)
    ten = int(datetime(2025, 11, 20, 10, tzinfo=ZoneInfo("Asia/Kathmandu")).timestamp())
    assert open_hours(cfg, day, ten) == {h: 1.0 for h in range(10)}
    f = forecast(cfg, [Day(day, {9: 1}, True)], ten)
    assert f.store_rate == pytest.approx(1 / 10) and f.week[0] == date(2025, 11, 21)


def test_bad_input_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="hour 24"):
        forecast(DEFAULT, [Day(MONDAY, {24: 1}, True)], NOW)
    with pytest.raises(ValueError, match="-1 breakdowns"):
        forecast(DEFAULT, [Day(MONDAY, {3: -1}, True)], NOW)


def test_the_reason_a_manager_reads() -> None:
    assert reason(Slot(5, 14, 2.26, 6, 8, 4)) == (
        "Saturdays 14:00-15:00: 2.3 breakdowns expected (6 in the last 8 Saturdays)"
    )
    assert reason(Slot(0, 23, 0.5, 1, 1, 1)) == (
        "Mondays 23:00-24:00: 0.5 breakdowns expected (1 on the one Monday seen so far)"
    )


def test_on_the_synthetic_store_the_forecast_beats_last_week() -> None:
    cfg, days, _ = synthetic_store()
    errors = backtest(cfg, days)
    assert errors.weeks == 12 and errors.hours == 12 * (5 * 12 + 9)
    assert errors.forecast < 0.95 * errors.last_week
