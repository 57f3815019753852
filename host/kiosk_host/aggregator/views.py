"""What a store's managers and kiosks see: the day's figures and the list of cases needing a
person."""

from __future__ import annotations

import dataclasses
import json
import time as _time
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from kiosk_host.rules import health
from kiosk_host.rules.recognition import Rating, attribute, board, to_payload
from kiosk_host.rules.recovery import Case
from kiosk_host.rules.stores import DAY_S, StoreConfig, Stores, is_open, local_day
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import QUARTER_S, whole_quarters


def day_bounds(cfg: StoreConfig, now: int) -> tuple[int, int]:
    """Unix seconds of the start and end of the store's local day that contains `now`."""
    day = local_day(cfg, now)
    start = datetime.combine(day, time(), tzinfo=cfg.tz)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=cfg.tz)
    return int(start.timestamp()), int(end.timestamp())


def summary(storage: Store, cfg: StoreConfig, store: str, now: int) -> dict[str, Any]:
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
CASES_BYTES = 8192  # the cases message's x-max-bytes


def case_list(storage: Store, store: str, now: int) -> dict[str, Any]:
    """The payload of kiosk/v1/{store}/cases: every case still needing a person, waiting or
    overdue until someone closes it; the overdue ones first (oldest deadline first), then the
    soonest deadline. At most 50, and no more than fit the message's bytes: the cases with
    the latest deadlines are left out first (the summary counts them all)."""
    payload: dict[str, Any] = {"v": 1, "store": store, "ts": now, "cases": []}
    size = _size(payload)
    for c in storage.listed_cases(store, limit=CASES_LISTED):
        item = case_item(c, now)
        size += _size(item) + (2 if payload["cases"] else 0)  # ", " between items
        if size > CASES_BYTES:
            break
        payload["cases"].append(item)
    return payload


def case_item(c: Case, now: int) -> dict[str, Any]:
    """A case as the case list carries it: `overdue` once its deadline has passed (until a
    person closes it), `fixed_by` while it waits on a fix, `late` for a fix made after the
    deadline."""
    item: dict[str, Any] = {
        "code": c.code, "state": c.state, "deadline": c.deadline, "opened": c.opened_at,
        "station": c.station, "escalated": c.escalated, "overdue": c.overdue(now),
    }  # fmt: skip
    if c.state in ("fixed", "unconfirmed") and c.fixed_by is not None:
        item["fixed_by"] = c.fixed_by
    if c.late_fix:
        item["late"] = True
    return item


def case_json(c: Case, now: int) -> dict[str, Any]:
    """A case as `kiosk-host cases list --json` and the dashboard's API give it: every stored
    field, with the case list's fields beside them (`late` false too)."""
    return {**dataclasses.asdict(c), **case_item(c, now), "late": c.late_fix}


def _size(payload: dict[str, Any]) -> int:
    # Escaped non-ASCII and spaced separators: the largest way the list may be written.
    return len(json.dumps(payload).encode())


def recognition(
    storage: Store, cfg: StoreConfig, store: str, now: int, days: int = 7
) -> dict[str, Any]:
    """The payload of kiosk/v1/{store}/recognition for the last `days` days: each rating
    credited to whoever was signed in at the kiosk, else to the roster. The whole quarters of
    the period are read as tallies from the roll-ups, credited by the roster at each
    quarter's start; the parts of quarters at its edges, and any quarter in which the store's
    hours or its roster change (at a time not on a quarter hour), rating by rating from the
    events."""
    since = now - days * 86400
    first, end, edges = whole_quarters(since, now)
    uneven = uneven_quarters(cfg, first, end)
    ratings = [
        Rating(staff or attribute((), cfg, station, at), score, at, scale)
        for a, b in [*edges, *_spans(uneven)]
        for at, score, staff, station, scale in storage.rating_credits(store, a, b)
    ]
    # The board counts what falls in the period while the store is open: the whole
    # quarters' tallies of open quarters add up per person, score and scale into one Rating
    # each, at the first such quarter's start.
    opened: dict[int, bool] = {}
    rostered: dict[tuple[str, int], str | None] = {}
    tallies: dict[tuple[str | None, int, int], list[int]] = {}
    for quarter, station, staff, scale, score, n in storage.rollup_credits(store, first, end):
        if quarter not in opened:
            opened[quarter] = quarter not in uneven and is_open(cfg, quarter * QUARTER_S)
        if not opened[quarter]:
            continue
        if staff is None and cfg.roster:
            if (station, quarter) not in rostered:
                rostered[station, quarter] = attribute((), cfg, station, quarter * QUARTER_S)
            staff = rostered[station, quarter]
        tally = tallies.setdefault((staff, score, scale), [quarter * QUARTER_S, 0])
        tally[1] += n
    ratings += [
        Rating(staff, score, at, scale, count=n)
        for (staff, score, scale), (at, n) in tallies.items()
    ]
    cases = storage.recovered_between(store, since, now)
    return to_payload(board(cfg, ratings, cases, since, now), store, now)


def uneven_quarters(cfg: StoreConfig, first: int, end: int) -> set[int]:
    """The quarters in [first, end) (numbered at // 900) in which the store's opening hours or
    a roster entry begin or end: those whose hours or roster are not one for the whole
    quarter. Times of day are HH:MM, so a quarter is uneven only when one is not on a
    quarter hour (a conservative test: at that time of day on any weekday)."""
    times = [s for day in cfg.hours or () for span in day for s in (span.start, span.end)]
    times += [s for entry in cfg.roster for s in (entry.span.start, entry.span.end)]
    slots = {t % DAY_S // QUARTER_S for t in times if t % QUARTER_S}
    if not slots:
        return set()
    found = set()
    for quarter in range(first, end):
        local = datetime.fromtimestamp(quarter * QUARTER_S, cfg.tz)
        second = local.hour * 3600 + local.minute * 60 + local.second
        if second // QUARTER_S in slots:
            found.add(quarter)
    return found


def _spans(quarters: set[int]) -> list[tuple[int, int]]:
    """Quarters as spans of unix seconds [since, until), neighbours joined."""
    spans: list[tuple[int, int]] = []
    for q in sorted(quarters):
        if spans and spans[-1][1] == q * QUARTER_S:
            spans[-1] = (spans[-1][0], (q + 1) * QUARTER_S)
        else:
            spans.append((q * QUARTER_S, (q + 1) * QUARTER_S))
    return spans


def report(
    storage: Store, cfg: StoreConfig, store: str, now: int, days: int
) -> list[dict[str, Any]]:
    """One row per local day of the last `days` up to today, read in one query: counts per
    score, satisfaction and breakdowns (ratings inside opening hours; the rest only in
    `outside_hours`); the hours in which the breakdowns happened (it matters when, more than
    why); the ratings per local hour and score (`ratings_by_hour`, hours without ratings left
    out); and the cases: waiting now (`open_cases`), breached or left unconfirmed at a
    deadline that fell on the day (`overdue_cases`), and recovered in time by a verdict given
    on the day (`recovered_in_time`)."""
    today = local_day(cfg, now)
    first = today - timedelta(days=days - 1)
    since, until = local_bounds(cfg, first, today)
    per_day: dict[date, _Day] = {first + timedelta(days=n): _Day() for n in range(days)}
    for quarter, outside, score, n in storage.rating_quarters(store, since, until):
        local = datetime.fromtimestamp(max(since, quarter * QUARTER_S), cfg.tz)
        tally = per_day[local.date()]
        if outside:
            tally.outside += n
            continue
        tally.counts[score] = tally.counts.get(score, 0) + n
        hour = tally.hours.setdefault(local.hour, {})
        hour[score] = hour.get(score, 0) + n
    rows = []
    for day, tally in per_day.items():
        day_since, day_until = local_bounds(cfg, day, day)
        ratings = sum(tally.counts.values())
        low = {h: sum(n for s, n in by.items() if s <= cfg.low_threshold)
               for h, by in tally.hours.items()}  # fmt: skip
        breakdowns = sum(low.values())
        cases = storage.case_figures(store, day_since, day_until, now)
        rows.append({
            "day": day.isoformat(),
            "weekday": day.strftime("%a"),
            "counts": [tally.counts.get(s, 0) for s in range(1, cfg.scale + 1)],
            "ratings": ratings,
            "breakdowns": breakdowns,
            "satisfaction": round((ratings - breakdowns) / ratings, 4) if ratings else None,
            "outside_hours": tally.outside,
            "breakdowns_by_hour": {f"{h:02d}": n for h, n in sorted(low.items()) if n},
            "ratings_by_hour": {
                f"{h:02d}": [by.get(s, 0) for s in range(1, cfg.scale + 1)]
                for h, by in sorted(tally.hours.items())
            },
            "open_cases": cases["open"],
            "overdue_cases": cases["overdue"],
            "recovered_in_time": cases["recovered_in_time"],
        })  # fmt: skip
    return rows


@dataclass
class _Day:
    counts: dict[int, int] = field(default_factory=dict)  # score: ratings in opening hours
    hours: dict[int, dict[int, int]] = field(default_factory=dict)  # hour: {score: ratings}
    outside: int = 0


def local_bounds(cfg: StoreConfig, first: date, last: date) -> tuple[int, int]:
    """Unix seconds of the start of local day `first` and of the end of local day `last`."""
    start = datetime.combine(first, time(), tzinfo=cfg.tz)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=cfg.tz)
    return int(start.timestamp()), int(end.timestamp())


def kiosk_health(storage: Store, store: str, now: int) -> list[dict[str, Any]]:
    """The store's kiosks as `kiosk-host devices --json` lists them (`health` at `now`
    included), with whether each is online and when it was last heard of (its last status or
    telemetry)."""
    rows = []
    for d in storage.devices(store):
        heard = [t for t in (d["status_at"], d["telemetry_at"]) if t is not None]
        row = device_row(d, now)
        online = row["health"] == "online"
        rows.append({**row, "online": online, "last_seen": max(heard, default=None)})
    return rows


def store_ids(storage: Store, stores: Stores) -> list[str]:
    """The stores to show: those `stores.toml` describes and any the database knows of."""
    return sorted(set(stores.configs) | set(storage.store_ids()))


def overview(storage: Store, cfg: StoreConfig, store: str, now: int) -> dict[str, Any]:
    """One store on the overview: its summary for today, how many kiosks are online, and
    which are down (offline or refused: `kiosks_down`, by device id)."""
    kiosks = kiosk_health(storage, store, now)
    down = [k["device"] for k in kiosks if not k["online"]]
    return {
        **summary(storage, cfg, store, now),
        "low_threshold": cfg.low_threshold,
        "kiosks": {"online": len(kiosks) - len(down), "offline": len(down)},
        "kiosks_down": down,
    }


TELEMETRY = ("heap_free", "rssi", "outbox", "dropped")


def device_row(d: dict[str, Any], now: int | None = None) -> dict[str, Any]:
    """A kiosk as `kiosk-host devices --json` shows it: the stored row, with the figures of
    its last telemetry beside it, and its `health` at `now` (the clock's when None: online,
    offline or refused) with `late_s`, the seconds its telemetry is overdue (rules/health.py)."""
    t = d.get("telemetry") or {}
    h = health.kiosk_health(
        int(_time.time()) if now is None else now,
        state=d["state"],
        since=d["since"],
        telemetry_at=d["telemetry_at"],
        interval_s=d.get("interval_s"),
        refused_at=d.get("refused_at"),
    )
    return {**d, **{k: t.get(k) for k in TELEMETRY}, "health": h.state, "late_s": h.late_s,
            "update": update_text(d.get("ota"))}  # fmt: skip


UPDATE_PROBLEMS = ("ota_failed", "refused")  # the update states shown as a problem


def update_text(ota: dict[str, Any] | None) -> str | None:
    """A kiosk's firmware update in a few words, as the dashboard's update column and
    `devices` show it: "VER 45 %" while it receives, "VER staged", "VER done", or the state
    and its reason for a failed or refused update; None when there is none."""
    if not ota:
        return None
    state, version, reason = ota.get("state"), ota.get("version"), ota.get("reason")
    if state in UPDATE_PROBLEMS:
        return f"{state}: {reason}" if reason else str(state)
    progress = ota.get("progress")
    if state == "receiving" and isinstance(progress, list) and len(progress) == 2:
        done, total = progress
        # rounded down: 100 % only once every chunk is in
        return f"{version} {done * 100 // total if total else 0} %"
    return f"{version} {state}"


def _when(at: int | None, now: int) -> str:
    if at is None:
        return "?"
    ago = max(now - at, 0)
    span = f"{ago} s" if ago < 120 else f"{ago // 60} min" if ago < 7200 else f"{ago // 3600} h"
    return _time.strftime("%Y-%m-%d %H:%M:%SZ", _time.gmtime(at)) + f" ({span} ago)"


def device_line(d: dict[str, Any], now: int) -> str:
    """One line per kiosk for a person: health and since when, firmware, board, last figures."""
    connected = d["since"] if d["state"] == "online" else None
    heard = max((t for t in (connected, d["telemetry_at"]) if t is not None), default=None)
    if d["health"] == "online":
        health = f"online since {_when(d['since'], now)}"
    elif d["health"] == "refused":
        health = f"refused by the broker since {_when(d['refused_at'], now)}"
    elif d["state"] == "offline":  # its last will
        health = f"offline since {_when(d['since'], now)}"
    else:
        health = f"offline, silent since {_when(heard, now)}"
    line = f"{d['store']}/{d['device']}: {health}, fw {d['fw'] or '?'}, board {d['board'] or '?'}"
    if d.get("telemetry"):
        rssi = "off Wi-Fi" if d["rssi"] is None else f"{d['rssi']} dBm"
        line += (
            f"; telemetry {_when(d['telemetry_at'], now)}: heap {d['heap_free']} B free, RSSI "
            f"{rssi}, outbox {d['outbox']}, dropped {d['dropped']}"
        )
    if d.get("config_error"):
        line += f"; config refused: {d['config_error']}"
    update = d.get("update")  # device_row words it
    if update:
        line += f"; update {update}"
    return line
