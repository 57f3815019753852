"""The breakdown forecast's back-test: each week after the first eight is forecast from the
eight before it, and the forecast's mean absolute error per open hour is compared with that
of "the same hour last week" (the baseline) and of the plain eight-week mean.

Two stores: a synthetic one with known rates per weekday and hour (seeded Poisson draws), and
the demo's two stores, whose customers `kiosk-host demo` plays in real time: their weeks are
made in-process with the demo's own customer model (`customers` in demo/run.py, one day of
every kiosk's customers from each local midnight), without broker or kiosks, and counted as
the report counts them (a score at or below the store's low threshold, by local hour).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from kiosk_host.demo.run import KIOSKS, STORES_FILE, customers
from kiosk_host.rules.forecast import Day, forecast, open_hours
from kiosk_host.rules.stores import StoreConfig, parse_stores

WEEKS = 20
HISTORY_DAYS = 56
FIRST = date(2025, 1, 6)  # a Monday; 20 weeks run past the clocks going forward in March
SYNTHETIC = """
[stores.synthetic]
tz = "Europe/Berlin"
[stores.synthetic.hours]
mon = "08:00-20:00"
tue = "08:00-20:00"
wed = "08:00-20:00"
thu = "08:00-20:00"
fri = "08:00-20:00"
sat = "09:00-18:00"
sun = "closed"
"""


@dataclass(frozen=True)
class Errors:
    """Mean absolute errors per open hour of the held-out weeks."""

    forecast: float
    last_week: float
    mean_8: float
    hours: int  # open hours compared
    weeks: int  # weeks held out

    @property
    def ratio(self) -> float:
        return self.forecast / self.last_week


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth's method: the rates here are small)."""
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def synthetic_rates(seed: int = 1) -> list[list[float]]:
    """Breakdowns per hour of each weekday and hour: a lunchtime and an evening rush, busier
    Fridays and Saturdays, and each slot's own character (a Gamma factor of mean 1)."""
    rng = random.Random(seed)
    weekday = (1.0, 0.9, 0.9, 1.0, 1.2, 1.5, 1.0)
    rates = []
    for wd in range(7):
        row = []
        for h in range(24):
            base = 0.25 + 1.2 * math.exp(-(((h - 12.5) / 1.5) ** 2))
            base += 0.8 * math.exp(-(((h - 17.5) / 1.2) ** 2))
            row.append(base * weekday[wd] * rng.gammavariate(4.0, 0.25))
        rates.append(row)
    return rates


def synthetic_store(
    weeks: int = WEEKS, seed: int = 1
) -> tuple[StoreConfig, list[Day], list[list[float]]]:
    """The synthetic store, its days of breakdowns (Poisson draws of its known rates in each
    open hour) and those rates."""
    cfg = parse_stores(SYNTHETIC).get("synthetic")
    rates = synthetic_rates(seed)
    rng = random.Random(seed + 1000)
    days = []
    for i in range(weeks * 7):
        day = FIRST + timedelta(days=i)
        hours = open_hours(cfg, day)
        counts = {h: poisson(rng, rates[day.weekday()][h] * e) for h, e in sorted(hours.items())}
        days.append(Day(day, {h: n for h, n in counts.items() if n}, bool(hours)))
    return cfg, days, rates


def demo_stores(weeks: int = WEEKS, seed: int = 1) -> dict[str, tuple[StoreConfig, list[Day]]]:
    """The demo's stores over `weeks` weeks of the demo's everyday customers: each local day,
    every kiosk's customers from midnight, as `customers` makes them (a seed per day)."""
    stores = parse_stores(STORES_FILE.read_text(), STORES_FILE.name)
    names = sorted({k.store for k in KIOSKS})
    days: dict[str, list[Day]] = {s: [] for s in names}
    for i in range(weeks * 7):
        day = FIRST + timedelta(days=i)
        crowd = customers(25 * 60, seed * 100_000 + i)  # the longest local day: 25 hours
        for store in names:
            cfg = stores.get(store)
            start, end = _midnight(cfg, day), _midnight(cfg, day + timedelta(days=1))
            low: dict[int, int] = {}
            rated = False
            for c in crowd:
                at = start + int(c.at)
                if c.store != store or at >= end:
                    continue
                rated = True
                if c.score <= cfg.low_threshold:
                    hour = datetime.fromtimestamp(at, cfg.tz).hour
                    low[hour] = low.get(hour, 0) + 1
            days[store].append(Day(day, low, rated))
    return {s: (stores.get(s), days[s]) for s in names}


def backtest(cfg: StoreConfig, days: Sequence[Day]) -> Errors:
    """Each week after the first eight forecast from the 56 days before it, at the last second
    before it begins; errors over the hours open in the week forecast."""
    err_f = err_last = err_mean = 0.0
    hours = weeks = 0
    for start in range(HISTORY_DAYS, len(days) - 6, 7):
        history = days[start - HISTORY_DAYS : start]
        week = days[start : start + 7]
        now = _midnight(cfg, week[0].day) - 1
        f = forecast(cfg, history, now)
        assert f.week == tuple(d.day for d in week)
        weeks += 1
        for d in week:
            wd = d.day.weekday()
            same = [h for h in history if h.day.weekday() == wd]
            for hour in open_hours(cfg, d.day):
                actual = d.breakdowns.get(hour, 0)
                err_f += abs(f.expected[wd][hour] - actual)
                err_last += abs(same[-1].breakdowns.get(hour, 0) - actual)
                mean = sum(h.breakdowns.get(hour, 0) for h in same) / len(same)
                err_mean += abs(mean - actual)
                hours += 1
    return Errors(err_f / hours, err_last / hours, err_mean / hours, hours, weeks)


def line(name: str, e: Errors) -> str:
    return (
        f"breakdown forecast back-test, {name}: MAE {e.forecast:.2f} vs same-hour-last-week "
        f"{e.last_week:.2f}: {e.ratio:.2f} of it (plain 8-week mean {e.mean_8:.2f}; "
        f"{e.hours:,} open hours in {e.weeks} weeks held out)"
    )


def _midnight(cfg: StoreConfig, day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=cfg.tz).timestamp())


def main() -> None:
    cfg, days, _ = synthetic_store()
    print(line("synthetic store", backtest(cfg, days)))
    for store, (demo_cfg, demo_days) in demo_stores().items():
        print(line(f"demo {store}", backtest(demo_cfg, demo_days)))


if __name__ == "__main__":
    main()
