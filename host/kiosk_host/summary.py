"""What a store's managers and kiosks see: the day's figures and the list of waiting cases."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from kiosk_host.recognition import Rating, attribute, board, to_payload
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


def recognition(
    storage: Storage, cfg: StoreConfig, store: str, now: int, days: int = 7
) -> dict[str, Any]:
    """The payload of kiosk/v1/{store}/recognition for the last `days` days: each rating
    credited to whoever was signed in at the kiosk, else to the roster."""
    since = now - days * 86400
    ratings = [
        Rating(r.payload["staff"] or attribute((), cfg, r.payload["station"], r.at),
               r.payload["score"], r.at, r.payload["scale"])
        for r in storage.ratings(store, since, now)
        if r.kind == "rating"
    ]  # fmt: skip
    return to_payload(board(cfg, ratings, storage.cases(store), since, now), store, now)


def report(
    storage: Storage, cfg: StoreConfig, store: str, now: int, days: int
) -> list[dict[str, Any]]:
    """One row per local day of the period: counts per score, satisfaction, breakdowns, and
    the hours of the day in which the breakdowns happened (it matters when, more than why)."""
    rows = []
    for back in range(days - 1, -1, -1):
        since, until = day_bounds(cfg, now - back * 86400)
        counts, outside = storage.score_counts_between(store, since, until)
        ratings = sum(counts.values())
        low = [
            r
            for r in storage.ratings(store, since, until)
            if r.kind == "rating" and not r.outside and r.payload["score"] <= cfg.low_threshold
        ]
        hours: dict[int, int] = {}
        for r in low:
            hour = datetime.fromtimestamp(r.at, cfg.tz).hour
            hours[hour] = hours.get(hour, 0) + 1
        rows.append({
            "day": local_day(cfg, since).isoformat(),
            "weekday": local_day(cfg, since).strftime("%a"),
            "counts": [counts.get(s, 0) for s in range(1, cfg.scale + 1)],
            "ratings": ratings,
            "breakdowns": len(low),
            "satisfaction": round((ratings - len(low)) / ratings, 4) if ratings else None,
            "outside_hours": outside,
            "breakdowns_by_hour": {f"{h:02d}": n for h, n in sorted(hours.items())},
        })  # fmt: skip
    return rows
