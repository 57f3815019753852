"""The service-recovery rules: event times, breakdowns, cases against their deadline, alerts.

Pure functions on frozen values, no I/O and no clock reads: every function is given the time
it needs in Unix seconds (event time), so a timer, a replay and a restart all reach the same
result.

A case's life (docs/recovery.md)::

    open --mark_fixed--> fixed --verdict wow--> wow              (recovered in time)
      |                    |   --verdict fixed--> recovered      (recovered in time)
      |                    +---verdict not_fixed--> open, escalations + 1
      +--verdict wow / fixed / not_fixed: as from fixed (only the customer's verdict counts)
    at the deadline: open -> breached, fixed -> unconfirmed
    breached --mark_fixed (a late fix)--> unconfirmed, late_fix: never recovered in time
    breached / unconfirmed --close_case--> the same state, closed by a person

The window is half-open, [rated_at, deadline): a verdict at `deadline - 1` is in time; a
verdict at `deadline` or later is late. A late verdict is stored (`verdict`, `verdict_at`,
`late_verdict` True) but never turns a breached or unconfirmed case into a success.

Every operation is judged at its own event time `at`. A kiosk that was offline may deliver a
verdict it took before the deadline after the host already settled the case; judged at its
own time that verdict was in time, so it still counts (breached is read back as open,
unconfirmed as fixed, and the verdict applies). The caller settles again with its `now`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from kiosk_host.errors import UserError
from kiosk_host.rules.stores import StoreConfig

State = Literal["open", "fixed", "wow", "recovered", "breached", "unconfirmed"]
STATES: Final[tuple[State, ...]] = get_args(State)
WAITING: Final[tuple[State, ...]] = ("open", "fixed")  # the window still runs
OVERDUE: Final[tuple[State, ...]] = ("breached", "unconfirmed")  # the window closed first
LISTED: Final[tuple[State, ...]] = (*WAITING, *OVERDUE)  # on the case list until closed
IN_TIME: Final[tuple[State, ...]] = ("wow", "recovered")  # "recovered in time"
Outcome = Literal["wow", "fixed", "not_fixed"]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
AlertType = Literal[
    "case_opened", "deadline_near", "escalated", "breached", "unconfirmed", "negative_surge",
    "praise", "seq_regression", "kiosk_offline", "outbox_filling",
]  # fmt: skip
Severity = Literal["info", "warning", "critical"]

EARLIEST_PLAUSIBLE: Final = 1_577_836_800  # 2020-01-01T00:00:00Z: an unsynced clock is earlier
TEXT_MAX: Final = 200  # alert.json: text maxLength
_ALERT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://kiosk-feedback.invalid/mqtt/v1/alert.json")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class RuleError(UserError):
    """An operation the rules do not allow on the case as it stands; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def event_time(
    device_ts: int | None, arrival: int, last_sync_ok: bool, max_skew_s: int
) -> tuple[int, bool]:
    """When an event happened, and whether that time is only the host's arrival time.

    The kiosk's wall time is used when it sent one, its clock is synced (`last_sync_ok`) and
    the time is plausible: not before 2020-01-01 and at most `max_skew_s` after the arrival.
    Any earlier time is plausible, so an event replayed late from the outbox keeps its own
    time. Otherwise the arrival time is used and flagged (True): a kiosk that was offline
    without a clock may have taken the event long before.
    """
    if (
        device_ts is not None
        and last_sync_ok
        and EARLIEST_PLAUSIBLE <= device_ts <= arrival + max_skew_s
    ):
        return device_ts, False
    return arrival, True


def is_breakdown(cfg: StoreConfig, score: int) -> bool:
    """A score at or below the store's low threshold is a service breakdown."""
    return score <= cfg.low_threshold


@dataclass(frozen=True)
class Case:
    """A recovery case: a breakdown whose customer accepted "Let us make it right?"."""

    store: str
    code: str  # the recovery code the customer was shown, unique within the store
    device: str  # the kiosk the breakdown was rated on
    station: str
    rating_seq: int
    opened_at: int  # the rating's event time
    deadline: int  # end of the window, exclusive
    state: State = "open"
    escalations: int = 0  # "Not yet" answers
    fixed_by: str | None = None  # who last marked it fixed
    fixed_at: int | None = None
    note: str | None = None
    verdict: Outcome | None = None  # the customer's last verdict
    verdict_at: int | None = None
    late_verdict: bool = False  # the last verdict came at or after the deadline
    late_fix: bool = False  # marked fixed only after the deadline: never recovered in time
    closed_by: str | None = None  # the person who took it off the case list
    closed_at: int | None = None
    close_note: str | None = None

    @property
    def recovered_in_time(self) -> bool:
        """The customer confirmed the recovery (Wow! or Fixed) before the deadline."""
        return self.state in IN_TIME

    @property
    def waiting(self) -> bool:
        """Still waiting for staff or the customer (open or fixed)."""
        return self.state in WAITING

    @property
    def escalated(self) -> bool:
        return self.escalations > 0

    @property
    def closed(self) -> bool:
        """A person closed it, or the customer's in-time verdict did: off the case list."""
        return self.closed_at is not None or self.state in IN_TIME

    def overdue(self, now: int) -> bool:
        """Its deadline has passed and nobody has closed it yet."""
        return now >= self.deadline and not self.closed


def open_case(
    cfg: StoreConfig,
    store: str,
    code: str,
    device: str,
    station: str,
    rating_seq: int,
    rated_at: int,
) -> Case:
    """A new open case whose deadline is `rated_at` + the store's window (24 h by default,
    to the minute).

    The window is elapsed time, not wall-clock time: across a daylight-saving change the
    store's clock shows the deadline 25 hours after the rating in spring (clocks go forward)
    and 23 hours after it in autumn. A rating that arrives late may already be past its
    deadline; `settle` then closes the case at once.
    """
    return Case(
        store=store,
        code=code,
        device=device,
        station=station,
        rating_seq=rating_seq,
        opened_at=rated_at,
        deadline=rated_at + cfg.window_s,
    )


def settle(case: Case, now: int) -> Case:
    """The case with its deadline applied at `now`: at or after the deadline an open case is
    breached and a fixed one unconfirmed; any other case is returned unchanged. A timer and
    a restart call it alike."""
    if now < case.deadline:
        return case
    if case.state == "open":
        return replace(case, state="breached")
    if case.state == "fixed":
        return replace(case, state="unconfirmed")
    return case


def mark_fixed(case: Case, staff: str, at: int, note: str | None = None) -> Case:
    """A staff member fixed the problem at `at`; the case waits for the customer's verdict.

    A breached case may still be fixed: a late recovery is one the customer deserves. It is
    kept as a late fix (`late_fix`) and the case becomes `unconfirmed`, as a case fixed in
    time whose customer never confirmed: it never counts as recovered in time, and a verdict
    the customer gives now is a late one (`apply_verdict`)."""
    c = _as_of(case, at)
    if c.closed_at is not None:
        raise RuleError(f"case {c.code} cannot be marked fixed: {_closed_by(c)}")
    if c.state == "open":
        return replace(c, state="fixed", fixed_by=staff, fixed_at=at, note=note)
    if c.state == "breached":
        return replace(
            c, state="unconfirmed", fixed_by=staff, fixed_at=at, note=note, late_fix=True
        )
    if c.state in ("fixed", "unconfirmed"):
        late = " late" if c.late_fix else ""
        raise RuleError(
            f"case {c.code} is already marked fixed{late} by {c.fixed_by}; "
            "it waits for the customer's verdict"
            + ("" if c.state == "fixed" else " until a person closes it")
        )
    raise RuleError(f"case {c.code} cannot be marked fixed: {_closed(c)}")


def close_case(case: Case, by: str, at: int, note: str | None = None) -> Case:
    """A person takes a case whose window has closed (`breached` or `unconfirmed`) off the
    case list at `at`; it keeps its outcome. A case still in its window is refused: it has
    no outcome yet (mark it fixed, or wait for the deadline)."""
    c = settle(case, at)
    if c.closed_at is not None:
        raise RuleError(f"case {c.code} is already closed: {_closed_by(c)}")
    if c.state in IN_TIME:
        raise RuleError(f"case {c.code} is closed already: {_closed(c)}")
    if c.state in WAITING:
        raise RuleError(
            f"case {c.code} is still in its window until {_utc(c.deadline)}: mark it fixed, "
            "or close it once the window has closed"
        )
    return replace(c, closed_by=by, closed_at=at, close_note=note)


def apply_verdict(case: Case, outcome: Outcome, at: int) -> Case:
    """The customer's verdict given at `at`: wow -> wow, fixed -> recovered, not_fixed -> back
    to open with one more escalation. At or after the deadline the verdict is only stored
    (`late_verdict`) and the case stays breached or unconfirmed."""
    if outcome not in OUTCOMES:
        raise RuleError(f"{outcome!r} is no verdict; expected one of {', '.join(OUTCOMES)}")
    c = _as_of(case, at)
    if c.state in IN_TIME:
        raise RuleError(f"case {c.code} already has a verdict: {_closed(c)}")
    if c.state in ("breached", "unconfirmed"):
        return replace(c, verdict=outcome, verdict_at=at, late_verdict=True)
    if outcome == "not_fixed":
        return replace(
            c,
            state="open",
            escalations=c.escalations + 1,
            verdict=outcome,
            verdict_at=at,
            late_verdict=False,
        )
    state: State = "wow" if outcome == "wow" else "recovered"
    return replace(c, state=state, verdict=outcome, verdict_at=at, late_verdict=False)


Refused = list[tuple[int, str]]  # (index of a verdict given to `replay`, why it was refused)


def replay(
    opened: Case, record: Case | None, verdicts: Sequence[tuple[int, Outcome]], now: int
) -> tuple[Case, Refused]:
    """The case rebuilt from its opening, whatever order its events reached the host in.

    `opened` is the case as `open_case` makes it; `record` the case as stored, whose staff
    fix (`fixed_by`, `fixed_at`, `note`) and close by a person (`closed_by`, `closed_at`,
    `close_note`) are the host's own acts, kept as they happened. `verdicts` are the
    customer's (event time, outcome), in event-time order. Every step is taken at its own
    time, in time order (at one second: the fix, the verdicts, then the close), then the case
    is settled at `now`. So the result depends only on which events are stored, never on the
    order they came in. A verdict the rules refuse (one after an in-time verdict) is returned
    with the reason; a fix the rules refuse (the customer had already confirmed) no longer
    counts; a close stays on record even when a verdict that comes late turns out in time."""
    steps: list[tuple[int, int, int]] = [(at, 1, i) for i, (at, _) in enumerate(verdicts)]
    fixer = record.fixed_by if record is not None and record.fixed_at is not None else None
    closer = record.closed_by if record is not None and record.closed_at is not None else None
    if record is not None and record.fixed_at is not None and fixer is not None:
        steps.append((record.fixed_at, 0, -1))
    if record is not None and record.closed_at is not None and closer is not None:
        steps.append((record.closed_at, 2, -1))
    note = record.note if record is not None else None
    close_note = record.close_note if record is not None else None
    c, refused = opened, []
    for at, step, i in sorted(steps):
        try:
            if step == 0 and fixer is not None:
                c = mark_fixed(c, fixer, at, note)
            elif step == 1:
                c = apply_verdict(c, verdicts[i][1], at)
            elif closer is not None:
                c = close_case(c, closer, at, close_note)
        except RuleError as why:
            if step == 1:
                refused.append((i, why.reason))
            elif step == 2 and c.state in IN_TIME:  # closed before the in-time verdict came
                c = replace(c, closed_by=closer, closed_at=at, close_note=close_note)
    return settle(c, now), refused


def _as_of(case: Case, at: int) -> Case:
    """The case as it stood at event time `at` (see the module's docstring)."""
    if at >= case.deadline:
        return settle(case, at)
    if case.state == "breached":
        return replace(case, state="open")
    if case.state == "unconfirmed":
        return replace(case, state="fixed")
    return case


def _closed(c: Case) -> str:
    words = {
        "wow": "the customer said Wow!",
        "recovered": "the customer confirmed it was made right",
        "breached": f"its window closed at {_utc(c.deadline)} while it was still open",
        "unconfirmed": f"its window closed at {_utc(c.deadline)} without the customer's verdict",
    }
    return words.get(c.state, c.state)


def _closed_by(c: Case) -> str:
    at = _utc(c.closed_at) if c.closed_at is not None else "?"
    return f"{c.closed_by} closed it at {at}"


def _utc(unix_s: int) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- alerts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """An alert for the store's managers (mqtt_schemas/schemas/alert.json without v and id)."""

    type: AlertType
    severity: Severity
    store: str
    case: str | None
    device: str | None
    deadline: int | None
    text: str
    at: int

    @property
    def id(self) -> str:
        """A stable id: the same case alert raised again (after a restart) has the same id."""
        at = None if self.case else self.at  # a store or kiosk alert is one of many
        key = (self.store, self.type, self.case, self.device, self.deadline, at)
        return str(uuid.uuid5(_ALERT_IDS, repr(key)))

    def to_payload(self) -> dict[str, Any]:
        """The payload for kiosk/v1/{store}/alerts."""
        return {
            "v": 1,
            "id": self.id,
            "store": self.store,
            "ts": self.at,
            "type": self.type,
            "severity": self.severity,
            "text": self.text,
            "case": self.case,
            "device": self.device,
            "deadline": self.deadline,
        }


def case_alerts(cfg: StoreConfig, before: Case | None, after: Case, now: int) -> list[Alert]:
    """The alerts a change of a case raises: `case_opened` for a new case (`before` None),
    `breached` when it has just become breached (a late rating can do both at once), and
    `unconfirmed` when a fixed case reached its deadline without the customer's verdict (not
    for a late fix: its breach was told already)."""
    alerts = []
    when = local_time(cfg, after.deadline)
    hours = _hours(after.deadline - after.opened_at)
    if before is None:
        if after.deadline <= now:
            text = (
                f"New case {after.code} at {after.station} arrived after its {hours} window "
                f"had closed ({when})"
            )
        else:
            text = f"New case {after.code} at {after.station}: make it right by {when} ({hours})"
        alerts.append(_case_alert("case_opened", "info", after, text, now))
    if after.state == "breached" and (before is None or before.state != "breached"):
        text = f"Case {after.code} at {after.station} missed its {hours} window ({when})"
        if after.escalations:
            n = after.escalations
            text += f" after {n} 'Not yet' answer{'s' if n != 1 else ''}"
        alerts.append(_case_alert("breached", "critical", after, text, now))
    if after.state == "unconfirmed" and before is not None and before.state == "fixed":
        text = (
            f"Case {after.code} at {after.station}: fixed by {after.fixed_by}, but the customer"
            f" did not confirm within {hours} ({when}); ask them"
        )
        alerts.append(_case_alert("unconfirmed", "warning", after, text, now))
    return alerts


def near_alerts(cfg: StoreConfig, case: Case, now: int, already_sent: bool) -> list[Alert]:
    """A `deadline_near` alert once a waiting case is within the store's lead (`near_s`) of
    its deadline, and `escalated` (critical: for whoever must step in) beside it when the
    case is not fixed yet; nothing when they were already sent for the case, or when the
    lead is 0."""
    lead = cfg.near_s
    if already_sent or lead <= 0 or not case.waiting:
        return []
    if not case.deadline - lead <= now < case.deadline:
        return []
    left = duration(case.deadline - now)
    if case.state == "fixed":
        text = (
            f"Case {case.code} at {case.station}: fixed by {case.fixed_by}, "
            f"{left} left for the customer to confirm"
        )
    else:
        text = f"Case {case.code} at {case.station}: {left} left to make it right"
    alerts = [_case_alert("deadline_near", "warning", case, text, now)]
    if case.state == "open":
        text = (
            f"Case {case.code} at {case.station} is not fixed yet, {left} before its deadline:"
            " please step in"
        )
        alerts.append(_case_alert("escalated", "critical", case, text, now))
    return alerts


def surge_alert(
    cfg: StoreConfig,
    recent: Sequence[tuple[int, int]],
    now: int,
    *,
    store: str,
    device: str | None = None,
    last_sent_at: int | None = None,
) -> Alert | None:
    """A `negative_surge` alert when, of the (time, score) ratings in the last
    `surge_window_min` minutes, (now - window, now], there are at least `surge_min_ratings`
    and more than `surge_share` of them are low. `device` None means the ratings are the
    store's; no second alert while the last one (`last_sent_at`) is younger than the window."""
    window = cfg.surge_window_min * 60
    if last_sent_at is not None and now - last_sent_at < window:
        return None
    scores = [score for t, score in recent if now - window < t <= now]
    low = sum(1 for s in scores if is_breakdown(cfg, s))
    if len(scores) < cfg.surge_min_ratings or low <= cfg.surge_share * len(scores):
        return None
    where = f"at {device}" if device else "across the store"
    text = (
        f"{low} of {len(scores)} ratings in the last {cfg.surge_window_min} min were low "
        f"({round(100 * low / len(scores))}%) {where}"
    )
    return Alert("negative_surge", "warning", store, None, device, None, clip_text(text), now)


def praise_alert(
    cfg: StoreConfig,
    recent_scores: Sequence[int],
    now: int,
    *,
    store: str,
    device: str | None = None,
) -> Alert | None:
    """A `praise` alert when the latest scores (oldest first) end in a run of `praise_run`
    top ratings (or a multiple of it). Pass more scores than the run, or the run is taken to
    start with the first score given. The engine asks once per run, with the scores up to
    the rating that made the run `praise_run` long: one praise per run."""
    run = 0
    for score in reversed(recent_scores):
        if score != cfg.scale:
            break
        run += 1
    if run < cfg.praise_run or run % cfg.praise_run:
        return None
    where = f"at {device}" if device else "in the store"
    text = f"{run} top ratings in a row {where}: customers are happy"
    return Alert("praise", "info", store, None, device, None, clip_text(text), now)


def _case_alert(type_: AlertType, severity: Severity, case: Case, text: str, now: int) -> Alert:
    return Alert(
        type_, severity, case.store, case.code, case.device, case.deadline, clip_text(text), now
    )


def local_time(cfg: StoreConfig, unix_s: int) -> str:
    """A time as the store's clock shows it, e.g. "Tue 4 Mar 14:05"."""
    t = datetime.fromtimestamp(unix_s, cfg.tz)
    return f"{_DAYS[t.weekday()]} {t.day} {_MONTHS[t.month - 1]} {t:%H:%M}"


def _hours(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    return f"{h} h" if not rest else duration(seconds)


def duration(seconds: int) -> str:
    """A span in words to the minute: "2 h 14 min", "3 h", "5 min", "less than a minute"."""
    h, m = seconds // 3600, seconds % 3600 // 60
    if h and m:
        return f"{h} h {m} min"
    if h:
        return f"{h} h"
    return f"{m} min" if m else "less than a minute"


def clip_text(text: str) -> str:
    """`text` cut to the contract's 200 characters of an alert's text, "…" marking the cut."""
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "…"
