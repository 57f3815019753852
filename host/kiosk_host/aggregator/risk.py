"""Next week's risky hours of a store, from its stored breakdowns (docs/forecast.md)."""

from __future__ import annotations

from datetime import date
from typing import Any

from kiosk_host.aggregator import views
from kiosk_host.rules import forecast
from kiosk_host.rules.stores import WEEKDAYS, StoreConfig
from kiosk_host.storage.protocol import Store

HISTORY_DAYS = forecast.WEEKS * 7


def history(rows: list[dict[str, Any]]) -> list[forecast.Day]:
    """The report's rows as the forecast reads them: breakdowns per local hour, and whether
    the day had any rating at all."""
    return [
        forecast.Day(
            day=date.fromisoformat(row["day"]),
            breakdowns={int(h): n for h, n in row["breakdowns_by_hour"].items()},
            rated=row["ratings"] + row["outside_hours"] > 0,
        )
        for row in rows
    ]


def next_week(storage: Store, cfg: StoreConfig, store: str, now: int) -> dict[str, Any]:
    """The store's coming week (the seven local days after today) as JSON: the breakdowns
    expected per weekday (`mon`..`sun`) and hour (24 values, 0 where the store is closed),
    the three riskiest hours with a line a manager reads, a one-line `summary`, the method
    and the history it used (`days`, `weeks`), from the last eight weeks' report."""
    rows = views.report(storage, cfg, store, now, days=HISTORY_DAYS)
    f = forecast.forecast(cfg, history(rows), now)
    weeks = f.weeks
    top = [
        {
            "weekday": WEEKDAYS[s.weekday],
            "hour": s.hour,
            "expected": round(s.expected, 2),
            "breakdowns": s.breakdowns,
            "days": s.days,
            "bad_days": s.bad_days,
            "reason": forecast.reason(s),
        }
        for s in f.top
    ]
    if f.store_rate is None:
        summary = "No ratings in the last 8 weeks: nothing to forecast from."
    elif not top:
        summary = f"No breakdowns in {_weeks(weeks)} of history: no hour stands out."
    else:
        total = sum(map(sum, f.expected))
        summary = (
            f"{total:.1f} breakdowns expected next week in all, from {_weeks(weeks)} of history."
        )
    return {
        "store": store,
        "ts": now,
        "tz": cfg.tz_name,
        "from": f.week[0].isoformat(),
        "to": f.week[-1].isoformat(),
        "method": forecast.METHOD,
        "prior_hours": f.prior_hours,
        "days": f.days,
        "weeks": weeks,
        "store_rate": None if f.store_rate is None else round(f.store_rate, 4),
        "expected": {
            name: [round(x, 3) for x in f.expected[wd]] for wd, name in enumerate(WEEKDAYS)
        },
        "top": top,
        "summary": summary,
    }


def _weeks(weeks: float) -> str:
    return "1 week" if weeks == 1 else f"{weeks:g} weeks"
