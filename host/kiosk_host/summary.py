"""What a store's managers and kiosks see: the day's figures and the list of waiting cases."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from kiosk_host.storage import Storage
from kiosk_host.stores import StoreConfig, local_day


def day_bounds(cfg: StoreConfig, now: int) -> tuple[int, int]:
    """Unix seconds of the start and end of the store's local day that contains `now`."""
    day = local_day(cfg, now)
    start = datetime.combine(day, time(), tzinfo=cfg.tz)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=cfg.tz)
    return int(start.timestamp()), int(end.timestamp())


def summary(storage: Storage, cfg: StoreConfig, store: str, now: int) -> dict[str, Any]:
    """The payload of kiosk/v1/{store}/summary: ratings inside opening hours are counted,
    presses outside them only in `outside_hours`; satisfaction is the share above the low
    threshold, or null without ratings."""
    since, until = day_bounds(cfg, now)
    counts, outside = storage.score_counts_between(store, since, until)
    ratings = sum(counts.values())
    breakdowns = sum(n for score, n in counts.items() if score <= cfg.low_threshold)
    cases = storage.case_figures(store, since, until, now)
    return {
        "v": 1,
        "store": store,
        "ts": now,
        "day": local_day(cfg, now).isoformat(),
        "tz": cfg.tz_name,
        "scale": cfg.scale,
        "counts": [counts.get(score, 0) for score in range(1, cfg.scale + 1)],
        "ratings": ratings,
        "satisfaction": round((ratings - breakdowns) / ratings, 4) if ratings else None,
        "breakdowns": breakdowns,
        "open_cases": cases["open"],
        "overdue_cases": cases["overdue"],
        "recovered_in_time": cases["recovered_in_time"],
        "outside_hours": outside,
    }


CASES_LISTED = 50  # the contract's most cases in one retained list


def case_list(storage: Storage, store: str, now: int) -> dict[str, Any]:
    """The payload of kiosk/v1/{store}/cases: waiting cases, soonest deadline first."""
    waiting = storage.cases(store, ("open", "fixed"), limit=CASES_LISTED)
    cases = [
        {"code": c.code, "state": c.state, "deadline": c.deadline, "opened": c.opened_at,
         "station": c.station, "escalated": c.escalations > 0}
        for c in waiting
    ]  # fmt: skip
    return {"v": 1, "store": store, "ts": now, "cases": cases}
