"""Recognition (docs/recognition.md): who gave smooth service and who wowed customers in time.

Pure functions, no I/O and no clock reads. A rating is attributed to whoever was signed in
at the station, else to the store's roster. Per staff member and period the board counts
smooth experiences (top ratings), a smooth rate shrunk towards the store's own (see
`shrunk_rate`) and recoveries the customer confirmed inside the window, credited to whoever
marked the case fixed; the team's figures stand beside them. The board lists only people with
a reason to be recognised (more top ratings than the store as a whole, or a customer won back
in time), best first, each with reasons anyone can check against the data; it has no bottom
list.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from kiosk_host.rules.recovery import Case
from kiosk_host.rules.stores import StoreConfig, is_open, rostered

PRIOR_WEIGHT: Final = 20  # m in shrunk_rate: the store's rate counts as 20 ratings
MAX_LISTED: Final = 50  # recognition.json: staff maxItems
MAX_BYTES: Final = 16_384  # the recognition message's x-max-bytes
REASON_MAX: Final = 160  # recognition.json: reasons maxLength
_CODES_SHOWN = 6

SignIn = tuple[str, str, int, int | None]  # (station, staff, from, to); to None: still signed in


@dataclass(frozen=True)
class Rating:
    """One attributed rating: the staff member (None: nobody), the score and its event time.
    `scale` is the kiosk's scale when it differs from the store's. `count` such ratings at
    once: a tally of ratings given while the store was open, `at` the time of the first."""

    staff: str | None
    score: int
    at: int
    scale: int | None = None
    count: int = 1


@dataclass(frozen=True)
class Team:
    """The whole store's figures for the period (win together)."""

    ratings: int
    smooth: int
    smooth_rate: float | None  # plain share of top ratings; None without ratings
    wow_in_time: int
    recovered_in_time: int  # Wow! or Fixed inside the window


@dataclass(frozen=True)
class Recognised:
    """One person on the board and why."""

    staff: str
    name: str | None
    ratings: int
    smooth: int
    smooth_rate: float | None  # shrunk; None when the person has no ratings in the period
    wow_in_time: int
    recovered_in_time: int
    wow_cases: tuple[str, ...]
    recovered_cases: tuple[str, ...]  # made right (Fixed), not wowed
    reasons: tuple[str, ...]
    rank: float  # what the board is ordered by: the shrunk rate (the store's prior without ratings)


@dataclass(frozen=True)
class Board:
    """The recognition board of one store for [period_from, period_to)."""

    period_from: int
    period_to: int
    team: Team
    staff: tuple[Recognised, ...]


def attribute(signins: Iterable[SignIn], cfg: StoreConfig, station: str, at: int) -> str | None:
    """Who a rating at `station` at `at` is attributed to: the staff member signed in there
    (the latest sign-in when several overlap), else the roster, else nobody."""
    best: tuple[int, str] | None = None
    for where, staff, start, end in signins:
        signed_in = where == station and start <= at and (end is None or at < end)
        if signed_in and (best is None or start >= best[0]):
            best = (start, staff)
    return best[1] if best else rostered(cfg, station, at)


def shrunk_rate(smooth: int, ratings: int, store_rate: float, m: int = PRIOR_WEIGHT) -> float:
    """A person's smooth rate, shrunk towards the store's and discounted for uncertainty.

    With p the store's share of top ratings over the period, the person's rate is taken as a
    Beta distribution: the store's rate worth m = 20 ratings (prior Beta(m p, m (1 - p)))
    updated with the person's own `smooth` of `ratings`. The result is its mean less one
    standard deviation::

        mean = (smooth + m p) / (ratings + m)
        rate = mean - sqrt(mean (1 - mean) / (ratings + m + 1))      (kept within 0..1)

    Why: the mean alone pulls a handful of ratings towards the store (after 20 ratings a
    person's own record weighs as much as the store's, about one busy shift at a till), but a
    perfect 5 of 5 still lands above the store's average, so in a store at 90 % it would beat
    someone with 450 top ratings of 500. Less one standard deviation, a rate is what we are
    fairly sure (about 84 %) the person reaches: 5 of 5 gives about 0.87 there, 450 of 500
    about 0.89, and with many ratings the rate approaches the person's own share.
    """
    n = ratings + m
    mean = (smooth + m * store_rate) / n
    rate = mean - math.sqrt(mean * (1 - mean) / (n + 1))
    return min(1.0, max(0.0, rate))


def above_store(smooth: int, ratings: int, store_rate: float | None) -> bool:
    """Whether a person's share of top ratings is above the store's in whole percent, as the
    board writes both: a reason to be recognised. (A share above the store's is what puts
    the mean of `shrunk_rate`, before the uncertainty is taken off, above the store's.)"""
    if not smooth or store_rate is None:
        return False
    return round(100 * smooth / ratings) > round(100 * store_rate)


def board(
    cfg: StoreConfig,
    ratings: Sequence[Rating],
    cases: Sequence[Case],
    period_from: int,
    period_to: int,
) -> Board:
    """The board for [period_from, period_to): ratings in the period and inside opening hours
    (presses outside them are left out of the figures), and cases whose in-time verdict fell
    in the period. It lists only people with a reason to be recognised: a share of top
    ratings above the store's (`above_store`), or a recovery in time. At most 50 people,
    ordered by shrunk rate, then Wow!s, then recoveries."""
    opened: dict[int, bool] = {}  # a quarter's tallies share one time: look it up once
    per: dict[str, list[int]] = {}
    team_ratings = team_smooth = 0
    for r in ratings:
        if not period_from <= r.at < period_to:
            continue
        if r.at not in opened:
            opened[r.at] = is_open(cfg, r.at)
        if not opened[r.at]:
            continue
        top = r.count if r.score == (r.scale or cfg.scale) else 0
        team_ratings += r.count
        team_smooth += top
        if r.staff is not None:
            tally = per.setdefault(r.staff, [0, 0])
            tally[0] += r.count
            tally[1] += top
    p = team_smooth / team_ratings if team_ratings else None

    in_time = [
        c
        for c in cases
        if c.recovered_in_time
        and c.verdict_at is not None
        and c.verdict_at < c.deadline
        and period_from <= c.verdict_at < period_to
    ]
    wows: dict[str, list[str]] = {}
    fixes: dict[str, list[str]] = {}
    for c in sorted(in_time, key=lambda c: (c.verdict_at or 0, c.code)):
        if c.fixed_by is not None:
            (wows if c.state == "wow" else fixes).setdefault(c.fixed_by, []).append(c.code)
    team = Team(
        ratings=team_ratings,
        smooth=team_smooth,
        smooth_rate=p,
        wow_in_time=sum(1 for c in in_time if c.state == "wow"),
        recovered_in_time=len(in_time),
    )

    listed = []
    for staff in set(per) | set(wows) | set(fixes):
        n, k = per.get(staff, [0, 0])
        w, f = tuple(wows.get(staff, ())), tuple(fixes.get(staff, ()))
        if not above_store(k, n, p) and not w and not f:
            continue  # nothing to recognise: not listed, and listed nowhere else either
        rank = shrunk_rate(k, n, p) if p is not None else 0.0
        listed.append(
            Recognised(
                staff=staff,
                name=cfg.name_of(staff),
                ratings=n,
                smooth=k,
                smooth_rate=rank if n else None,
                wow_in_time=len(w),
                recovered_in_time=len(w) + len(f),
                wow_cases=w,
                recovered_cases=f,
                reasons=_reasons(cfg, n, k, p, w, f),
                rank=rank,
            )
        )
    listed.sort(key=lambda s: (-s.rank, -s.wow_in_time, -s.recovered_in_time, -s.smooth, s.staff))
    return Board(period_from, period_to, team, tuple(listed[:MAX_LISTED]))


def _reasons(
    cfg: StoreConfig,
    ratings: int,
    smooth: int,
    store_rate: float | None,
    wow: tuple[str, ...],
    fixed: tuple[str, ...],
) -> tuple[str, ...]:
    out = []
    if store_rate is not None and above_store(smooth, ratings, store_rate):
        own = _pct(smooth / ratings)
        out.append(
            f"{smooth} of {ratings} customers gave the top score"
            f" ({own}, against {_pct(store_rate)} for the store)"
        )
    window = f"within {cfg.window_text}"
    if wow:
        out.append(f"made {_people(len(wow))} say Wow! {window} ({_codes(wow)})")
    if fixed:
        more = " more" if wow else ""
        out.append(f"made it right for {_people(len(fixed), more)} {window} ({_codes(fixed)})")
    return tuple(r[:REASON_MAX] for r in out)


def _people(n: int, more: str = "") -> str:
    return f"{n}{more} customer{'s' if n != 1 else ''}"


def _codes(codes: tuple[str, ...]) -> str:
    shown = ", ".join(codes[:_CODES_SHOWN])
    rest = len(codes) - _CODES_SHOWN
    word = "case" if len(codes) == 1 else "cases"
    return f"{word} {shown}" + (f" and {rest} more" if rest > 0 else "")


def _pct(share: float) -> str:
    return f"{round(100 * share)}%"


def to_payload(board: Board, store: str, now: int) -> dict[str, Any]:
    """The board as published on kiosk/v1/{store}/recognition (mqtt_schemas recognition.json).

    Rates are rounded to 4 decimals. A board too big for the message keeps each person's
    first reason only, then lists fewer people (from the end)."""
    team = board.team
    payload: dict[str, Any] = {
        "v": 1,
        "store": store,
        "ts": now,
        "period": {"from": board.period_from, "to": board.period_to},
        "team": {
            "ratings": team.ratings,
            "smooth": team.smooth,
            "smooth_rate": _rate(team.smooth_rate),
            "wow_in_time": team.wow_in_time,
            "recovered_in_time": team.recovered_in_time,
        },
        "staff": [_line(s) for s in board.staff[:MAX_LISTED]],
    }
    if _size(payload) > MAX_BYTES:
        payload["staff"] = [_line(replace(s, reasons=s.reasons[:1])) for s in board.staff]
    while payload["staff"] and _size(payload) > MAX_BYTES:
        payload["staff"].pop()
    return payload


def _line(s: Recognised) -> dict[str, Any]:
    return {
        "staff": s.staff,
        "name": s.name,
        "ratings": s.ratings,
        "smooth": s.smooth,
        "smooth_rate": _rate(s.smooth_rate),
        "wow_in_time": s.wow_in_time,
        "reasons": list(s.reasons[:5]),
    }


def _rate(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 4)


def _size(payload: dict[str, Any]) -> int:
    # Escaped non-ASCII and spaced separators: the largest way the board may be written.
    return len(json.dumps(payload).encode())
