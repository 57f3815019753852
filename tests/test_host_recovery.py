"""The recovery rules of docs/recovery.md: event time, cases against the deadline, alerts."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk_host.aggregator.engine import Engine
from kiosk_host.aggregator.views import case_list
from kiosk_host.rules.recovery import (
    EARLIEST_PLAUSIBLE,
    STATES,
    Alert,
    Case,
    RuleError,
    apply_verdict,
    case_alerts,
    close_case,
    event_time,
    is_breakdown,
    mark_fixed,
    near_alerts,
    open_case,
    praise_alert,
    settle,
    surge_alert,
)
from kiosk_host.rules.stores import DEFAULT, StoreConfig, parse_stores
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import EventRow
from kiosk_host.wire.contract import Contract, Message
from kiosk_host.wire.identifiers import check_character

BERLIN = ZoneInfo("Europe/Berlin")
CFG = parse_stores('[stores.store-12]\ntz = "Europe/Berlin"\n').get("store-12")
S = "store-12"
T0 = 1_748_500_000  # 2025-05-29 06:26:40 UTC
DAY = 86_400
CODE = "A7K3" + check_character("A7K3")  # a code as a kiosk with letter A makes it


def new_case(rated_at: int = T0, cfg: StoreConfig = CFG) -> Case:
    return open_case(cfg, S, CODE, "till-1", "till-1", 41, rated_at)


# --- event time -----------------------------------------------------------------------------


def test_event_time_uses_the_synced_device_time() -> None:
    assert event_time(T0 - 3, T0, True, 300) == (T0 - 3, False)
    assert event_time(T0 + 300, T0, True, 300) == (T0 + 300, False)  # skew limit included


def test_event_time_without_a_device_time_is_the_arrival_flagged() -> None:
    assert event_time(None, T0, True, 300) == (T0, True)
    assert event_time(None, T0, False, 300) == (T0, True)


def test_event_time_of_an_unsynced_kiosk_is_the_arrival_flagged() -> None:
    assert event_time(T0 - 60, T0, False, 300) == (T0, True)


@pytest.mark.parametrize(
    "device_ts",
    [
        0,  # 1970: a clock that never synced
        86_400 * 365,  # 1971
        EARLIEST_PLAUSIBLE - 1,  # 2019-12-31 23:59:59
        T0 + 301,  # just beyond the allowed skew
        4_102_444_800,  # 2100: far future
    ],
)
def test_an_implausible_device_time_is_replaced_by_the_arrival(device_ts: int) -> None:
    assert event_time(device_ts, T0, True, 300) == (T0, True)


def test_a_late_arrival_from_the_outbox_keeps_its_original_time() -> None:
    three_days_ago = T0 - 3 * DAY
    assert event_time(three_days_ago, T0, True, 300) == (three_days_ago, False)
    assert event_time(EARLIEST_PLAUSIBLE, T0, True, 300) == (EARLIEST_PLAUSIBLE, False)


def test_breakdown_is_at_or_below_the_low_threshold() -> None:
    assert [is_breakdown(DEFAULT, s) for s in (1, 2, 3, 4)] == [True, True, False, False]
    five = StoreConfig(scale=5, low_threshold=3)
    assert [is_breakdown(five, s) for s in (1, 2, 3, 4, 5)] == [True, True, True, False, False]


# --- transitions ----------------------------------------------------------------------------


def test_a_new_case_is_open_with_a_24_hour_deadline() -> None:
    c = new_case()
    assert (c.state, c.opened_at, c.deadline, c.escalations) == ("open", T0, T0 + DAY, 0)
    assert (c.store, c.code, c.device, c.station, c.rating_seq) == (
        S,
        CODE,
        "till-1",
        "till-1",
        41,
    )
    assert c.waiting and not c.recovered_in_time and not c.escalated
    assert (
        open_case(StoreConfig(window_minutes=48 * 60), S, CODE, "d", "s", 1, T0).deadline
        == T0 + 2 * DAY
    )


def test_open_fixed_wow() -> None:
    fixed = mark_fixed(new_case(), "ana", T0 + 3600, "replaced the broken charger, free coffee")
    assert (fixed.state, fixed.fixed_by, fixed.fixed_at) == ("fixed", "ana", T0 + 3600)
    assert fixed.note == "replaced the broken charger, free coffee"
    wow = apply_verdict(fixed, "wow", T0 + 7200)
    assert (wow.state, wow.verdict, wow.verdict_at, wow.late_verdict) == (
        "wow",
        "wow",
        T0 + 7200,
        False,
    )
    assert wow.recovered_in_time and not wow.waiting
    assert settle(wow, T0 + 2 * DAY) == wow  # a closed case stays closed


def test_open_fixed_recovered() -> None:
    c = apply_verdict(mark_fixed(new_case(), "ana", T0 + 60), "fixed", T0 + 120)
    assert (c.state, c.verdict) == ("recovered", "fixed")
    assert c.recovered_in_time


def test_not_yet_sends_the_case_back_to_open_escalated() -> None:
    fixed = mark_fixed(new_case(), "ana", T0 + 60)
    again = apply_verdict(fixed, "not_fixed", T0 + 120)
    assert (again.state, again.escalations, again.verdict) == ("open", 1, "not_fixed")
    assert again.escalated and again.waiting
    twice = apply_verdict(mark_fixed(again, "ben-k", T0 + 180), "not_fixed", T0 + 240)
    assert (twice.state, twice.escalations) == ("open", 2)
    finally_ = apply_verdict(mark_fixed(twice, "cleo", T0 + 300), "wow", T0 + 360)
    assert (finally_.state, finally_.fixed_by, finally_.escalations) == ("wow", "cleo", 2)


def test_a_verdict_on_an_open_case_counts_without_a_staff_mark() -> None:
    c = apply_verdict(new_case(), "wow", T0 + 60)
    assert c.state == "wow" and c.fixed_by is None


def test_at_the_deadline_an_open_case_is_breached() -> None:
    c = new_case()
    assert settle(c, T0 + DAY - 1).state == "open"
    breached = settle(c, T0 + DAY)
    assert breached.state == "breached" and not breached.recovered_in_time
    assert settle(breached, T0 + 5 * DAY) == breached


def test_at_the_deadline_a_fixed_case_without_verdict_is_unconfirmed() -> None:
    c = mark_fixed(new_case(), "ana", T0 + 60)
    assert settle(c, T0 + DAY - 1).state == "fixed"
    assert settle(c, T0 + DAY).state == "unconfirmed"
    assert settle(c, T0 + DAY).fixed_by == "ana"  # a staff mark alone is no recovery


def test_a_settle_before_the_deadline_changes_nothing() -> None:
    c = new_case()
    assert settle(c, T0 - DAY) is c
    assert settle(c, T0 + 3600) is c


def test_a_verdict_one_second_before_the_deadline_counts() -> None:
    c = apply_verdict(mark_fixed(new_case(), "ana", T0 + 60), "wow", T0 + DAY - 1)
    assert c.state == "wow" and c.recovered_in_time and not c.late_verdict


@pytest.mark.parametrize("late", [0, 1, 3600])
def test_a_verdict_at_or_after_the_deadline_is_stored_but_stays_unconfirmed(late: int) -> None:
    fixed = mark_fixed(new_case(), "ana", T0 + 60)
    c = apply_verdict(fixed, "wow", T0 + DAY + late)
    assert (c.state, c.verdict, c.verdict_at, c.late_verdict) == (
        "unconfirmed",
        "wow",
        T0 + DAY + late,
        True,
    )
    assert not c.recovered_in_time


@pytest.mark.parametrize("outcome", ["wow", "fixed", "not_fixed"])
def test_a_late_verdict_does_not_turn_a_breach_into_a_success(outcome: str) -> None:
    breached = settle(new_case(), T0 + DAY)
    c = apply_verdict(breached, outcome, T0 + DAY + 1)  # type: ignore[arg-type]
    assert (c.state, c.verdict, c.late_verdict) == ("breached", outcome, True)
    assert not c.recovered_in_time
    # also when nothing settled the case before the verdict came in
    c = apply_verdict(new_case(), outcome, T0 + DAY + 1)  # type: ignore[arg-type]
    assert (c.state, c.late_verdict) == ("breached", True)


def test_an_in_time_verdict_delivered_after_the_case_was_settled_still_counts() -> None:
    # The kiosk was offline: the customer said Wow! one minute before the deadline, the
    # event reached the host an hour after the timer had settled the case.
    unconfirmed = settle(mark_fixed(new_case(), "ana", T0 + 60), T0 + DAY)
    c = apply_verdict(unconfirmed, "wow", T0 + DAY - 60)
    assert (c.state, c.late_verdict, c.fixed_by) == ("wow", False, "ana")
    # A "Not yet" given in time reopens it, and the next settle breaches it.
    c = apply_verdict(unconfirmed, "not_fixed", T0 + DAY - 60)
    assert (c.state, c.escalations) == ("open", 1)
    assert settle(c, T0 + DAY + 3600).state == "breached"


def test_a_late_arriving_rating_past_its_deadline_is_breached_at_once() -> None:
    rated_at, now = T0, T0 + 2 * DAY  # replayed from the outbox two days later
    t, flagged = event_time(rated_at, now, True, 300)
    assert (t, flagged) == (rated_at, False)
    opened = new_case(t)
    c = settle(opened, now)
    assert c.state == "breached"
    alerts = case_alerts(CFG, None, c, now)
    assert [a.type for a in alerts] == ["case_opened", "breached"]
    assert "arrived after its 24 h window had closed" in alerts[0].text


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: mark_fixed(new_case(), "ana", T0 + 1), "already marked fixed by ana"),
        (lambda: apply_verdict(new_case(), "wow", T0 + 1), "the customer said Wow!"),
        (lambda: apply_verdict(new_case(), "fixed", T0 + 1), "confirmed it was made right"),
        (lambda: settle(mark_fixed(new_case(), "ana", T0), T0 + DAY), "already marked fixed"),
        (lambda: mark_fixed(settle(new_case(), T0 + DAY), "ana", T0 + DAY), "fixed late by ana"),
        (lambda: close_case(settle(new_case(), T0 + DAY), "maria", T0 + DAY), "maria closed"),
    ],
)
def test_a_closed_or_fixed_case_cannot_be_fixed_again(make: Callable[[], Case], words: str) -> None:
    c = make()
    settled = c.state in ("breached", "unconfirmed")
    with pytest.raises(RuleError) as err:
        mark_fixed(c, "ben-k", T0 + DAY + 1 if settled else T0 + 7200)
    assert words in err.value.reason


def test_fixing_after_the_deadline_is_a_late_fix_even_before_any_settle() -> None:
    for c in (new_case(), settle(new_case(), T0 + DAY)):  # not yet settled, and breached
        late = mark_fixed(c, "ana", T0 + DAY, "called back")
        assert (late.state, late.late_fix, late.fixed_by, late.fixed_at, late.note) == (
            "unconfirmed", True, "ana", T0 + DAY, "called back",
        )  # fmt: skip
        assert not late.recovered_in_time and not late.waiting and late.overdue(T0 + DAY)


def test_a_late_fix_waits_for_a_verdict_that_can_only_be_late() -> None:
    late = mark_fixed(settle(new_case(), T0 + DAY), "ana", T0 + DAY + 600)
    for outcome in ("wow", "fixed", "not_fixed"):
        judged = apply_verdict(late, outcome, T0 + DAY + 900)  # type: ignore[arg-type]
        assert (judged.state, judged.verdict, judged.late_verdict) == (
            "unconfirmed", outcome, True,
        )  # fmt: skip
        assert not judged.recovered_in_time and judged.late_fix
        assert case_alerts(CFG, late, judged, T0 + DAY + 900) == []
    # a verdict the customer gave in time, delivered after the late fix, still counts
    assert apply_verdict(late, "wow", T0 + DAY - 1).state == "wow"


def test_a_person_closes_an_overdue_case_which_keeps_its_outcome() -> None:
    breached = settle(new_case(), T0 + DAY)
    closed = close_case(breached, "maria", T0 + DAY + 60, "customer moved away")
    assert (closed.state, closed.closed_by, closed.closed_at, closed.close_note) == (
        "breached", "maria", T0 + DAY + 60, "customer moved away",
    )  # fmt: skip
    assert closed.closed and not closed.overdue(T0 + DAY + 60) and breached.overdue(T0 + DAY)
    late = mark_fixed(breached, "ana", T0 + DAY + 30)
    assert close_case(late, "maria", T0 + DAY + 60).state == "unconfirmed"
    unsettled = close_case(new_case(), "maria", T0 + DAY)  # the deadline applies first
    assert (unsettled.state, unsettled.closed_by) == ("breached", "maria")
    with pytest.raises(RuleError, match="already closed: maria closed it"):
        close_case(closed, "ben", T0 + DAY + 90)
    with pytest.raises(RuleError, match="still in its window"):
        close_case(new_case(), "maria", T0 + DAY - 1)
    with pytest.raises(RuleError, match="still in its window"):
        close_case(mark_fixed(new_case(), "ana", T0 + 60), "maria", T0 + 120)
    with pytest.raises(RuleError, match="the customer said Wow!"):
        close_case(apply_verdict(new_case(), "wow", T0 + 60), "maria", T0 + DAY + 1)


def test_a_second_verdict_on_a_recovered_case_is_refused() -> None:
    c = apply_verdict(new_case(), "wow", T0 + 60)
    with pytest.raises(RuleError, match="already has a verdict"):
        apply_verdict(c, "not_fixed", T0 + 120)
    with pytest.raises(RuleError, match="already has a verdict"):
        apply_verdict(c, "wow", T0 + DAY + 1)


def test_an_unknown_verdict_is_refused() -> None:
    with pytest.raises(RuleError, match="no verdict"):
        apply_verdict(new_case(), "great", T0)  # type: ignore[arg-type]


# --- daylight saving ------------------------------------------------------------------------


def _local(unix_s: int) -> datetime:
    return datetime.fromtimestamp(unix_s, BERLIN)


def test_deadline_across_the_spring_change_is_25_hours_on_the_local_clock() -> None:
    # Clocks go forward on Sunday 2025-03-30 at 02:00 (CET -> CEST).
    rated = int(datetime(2025, 3, 29, 10, 0, tzinfo=BERLIN).timestamp())
    c = new_case(rated)
    assert c.deadline - rated == 24 * 3600
    assert _local(c.deadline).replace(tzinfo=None) == datetime(2025, 3, 30, 11, 0)
    assert settle(c, c.deadline - 1).state == "open"
    assert settle(c, c.deadline).state == "breached"
    near = near_alerts(CFG, c, c.deadline - 4 * 3600, already_sent=False)
    assert _local(near[0].at).replace(tzinfo=None) == datetime(2025, 3, 30, 7, 0)
    assert case_alerts(CFG, None, c, rated)[0].text.endswith(
        "make it right by Sun 30 Mar 11:00 (24 h)"
    )


def test_deadline_across_the_autumn_change_is_23_hours_on_the_local_clock() -> None:
    # Clocks go back on Sunday 2025-10-26 at 03:00 (CEST -> CET).
    rated = int(datetime(2025, 10, 25, 10, 0, tzinfo=BERLIN).timestamp())
    c = new_case(rated)
    assert c.deadline - rated == 24 * 3600
    assert _local(c.deadline).replace(tzinfo=None) == datetime(2025, 10, 26, 9, 0)
    local_gap = _local(c.deadline).replace(tzinfo=None) - _local(rated).replace(tzinfo=None)
    assert local_gap == timedelta(hours=23)
    assert apply_verdict(c, "wow", c.deadline - 1).state == "wow"
    assert apply_verdict(c, "wow", c.deadline + 1).state == "breached"


# --- alerts ---------------------------------------------------------------------------------


def _valid(contract: Contract, alert: Alert) -> None:
    payload = json.dumps(alert.to_payload(), ensure_ascii=False).encode()
    result = contract.validate(f"kiosk/v1/{alert.store}/alerts", payload)
    assert isinstance(result, Message), result


def test_a_new_case_raises_case_opened(contract: Contract) -> None:
    c = new_case()
    alerts = case_alerts(CFG, None, c, T0 + 5)
    assert [(a.type, a.severity, a.case, a.device, a.deadline, a.at) for a in alerts] == [
        ("case_opened", "info", CODE, "till-1", T0 + DAY, T0 + 5)
    ]
    assert alerts[0].text == f"New case {CODE} at till-1: make it right by Fri 30 May 08:26 (24 h)"
    _valid(contract, alerts[0])


def test_no_case_alert_for_other_changes() -> None:
    c = new_case()
    fixed = mark_fixed(c, "ana", T0 + 60)
    assert case_alerts(CFG, c, fixed, T0 + 60) == []
    assert case_alerts(CFG, fixed, apply_verdict(fixed, "wow", T0 + 90), T0 + 90) == []
    late = mark_fixed(settle(c, T0 + DAY), "ana", T0 + DAY + 60)  # breached told already
    assert late.state == "unconfirmed"
    assert case_alerts(CFG, settle(c, T0 + DAY), late, T0 + DAY + 60) == []


def test_a_fix_nobody_confirmed_by_the_deadline_raises_unconfirmed(contract: Contract) -> None:
    fixed = mark_fixed(new_case(), "ana", T0 + 60)
    unconfirmed = settle(fixed, T0 + DAY)
    (alert,) = case_alerts(CFG, fixed, unconfirmed, T0 + DAY)
    assert (alert.type, alert.severity, alert.case) == ("unconfirmed", "warning", CODE)
    assert alert.text == (
        f"Case {CODE} at till-1: fixed by ana, but the customer did not confirm within 24 h"
        " (Fri 30 May 08:26); ask them"
    )
    assert case_alerts(CFG, unconfirmed, unconfirmed, T0 + DAY + 60) == []  # raised once
    _valid(contract, alert)


def test_a_breach_raises_breached_once(contract: Contract) -> None:
    c = apply_verdict(mark_fixed(new_case(), "ana", T0 + 60), "not_fixed", T0 + 120)
    breached = settle(c, T0 + DAY)
    alerts = case_alerts(CFG, c, breached, T0 + DAY)
    assert [(a.type, a.severity) for a in alerts] == [("breached", "critical")]
    assert alerts[0].text == (
        f"Case {CODE} at till-1 missed its 24 h window (Fri 30 May 08:26) after 1 'Not yet' answer"
    )
    assert case_alerts(CFG, breached, breached, T0 + DAY + 60) == []
    _valid(contract, alerts[0])


def test_deadline_near_is_sent_exactly_once(contract: Contract) -> None:
    c = new_case()
    sent: list[Alert] = []
    for now in range(T0, T0 + DAY + 3600, 600):  # a timer every 10 minutes
        c = settle(c, now)
        new = near_alerts(CFG, c, now, already_sent=bool(sent))
        sent += new
    assert [(a.type, a.severity, a.case) for a in sent] == [
        ("deadline_near", "warning", CODE), ("escalated", "critical", CODE)
    ]  # fmt: skip
    for alert in sent:
        assert T0 + DAY - 4 * 3600 <= alert.at < T0 + DAY - 4 * 3600 + 600
        _valid(contract, alert)
    exact = near_alerts(CFG, new_case(), T0 + DAY - 4 * 3600, already_sent=False)
    assert [a.text for a in exact] == [
        f"Case {CODE} at till-1: 4 h left to make it right",
        f"Case {CODE} at till-1 is not fixed yet, 4 h before its deadline: please step in",
    ]


def test_a_window_of_minutes_runs_to_the_second(contract: Contract) -> None:
    short = parse_stores(
        '[stores.store-12]\ntz = "Europe/Berlin"\nwindow_minutes = 5\nnear_minutes = 2\n'
    ).get("store-12")
    c = new_case(cfg=short)
    assert c.deadline == T0 + 300
    assert settle(c, T0 + 299).state == "open"
    assert settle(c, T0 + 300).state == "breached"
    assert apply_verdict(mark_fixed(c, "ana", T0 + 60), "wow", T0 + 299).state == "wow"
    assert apply_verdict(mark_fixed(c, "ana", T0 + 60), "wow", T0 + 300).state == "unconfirmed"
    assert near_alerts(short, c, T0 + 179, already_sent=False) == []
    near, escalated = near_alerts(short, c, T0 + 180, already_sent=False)
    assert escalated.type == "escalated"
    assert near.text == f"Case {CODE} at till-1: 2 min left to make it right"
    (opened,) = case_alerts(short, None, c, T0)
    assert opened.text == f"New case {CODE} at till-1: make it right by Thu 29 May 08:31 (5 min)"
    (breached,) = case_alerts(short, c, settle(c, T0 + 300), T0 + 300)
    assert breached.text == f"Case {CODE} at till-1 missed its 5 min window (Thu 29 May 08:31)"
    for alert in (near, escalated, opened, breached):
        _valid(contract, alert)


def test_the_engine_warns_and_breaches_on_a_minutes_window(store_url: str) -> None:
    stores = parse_stores("[stores.store-12]\nwindow_minutes = 3\nnear_minutes = 1\n")
    storage = open_storage(store_url)
    now = [float(T0)]
    engine = Engine(stores, now=lambda: now[0])
    with storage.transaction():
        storage.save_case(new_case(cfg=stores.get(S)))
    seen: list[tuple[int, list[str], str]] = []
    for t in range(T0, T0 + 241, 30):  # a tick every 30 s, for four minutes
        now[0] = t
        engine.tick(storage)
        alerts = [a["type"] for a in storage.alerts(S)]
        seen.append((t - T0, sorted(alerts), storage.cases(S)[0].state))
    assert seen[3] == (90, [], "open")
    near = ["deadline_near", "escalated"]  # not fixed yet: escalated too
    assert seen[4] == (120, near, "open")  # 1 min before the deadline
    assert seen[5] == (150, near, "open")
    assert seen[6] == (180, sorted(["breached", *near]), "breached")
    assert seen[-1] == (240, sorted(["breached", *near]), "breached")  # each raised once


def test_the_engine_looks_as_far_ahead_as_the_longest_warning() -> None:
    long_lead = parse_stores("[stores.far]\nwindow_hours = 336\nnear_hours = 100\n")
    assert Engine(long_lead).near_max_s == 100 * 3600
    assert Engine(parse_stores("[stores.s1]\nwindow_minutes = 5\n")).near_max_s == 4 * 3600


def test_deadline_near_bounds_and_states() -> None:
    c = new_case()
    lead = T0 + DAY - 4 * 3600
    assert near_alerts(CFG, c, lead - 1, already_sent=False) == []
    assert near_alerts(CFG, c, T0 + DAY, already_sent=False) == []  # too late: breached
    fixed = mark_fixed(c, "ana", T0 + 60)
    (alert,) = near_alerts(CFG, fixed, lead + 30 * 60, already_sent=False)  # not escalated
    assert alert.text == (
        f"Case {CODE} at till-1: fixed by ana, 3 h 30 min left for the customer to confirm"
    )
    assert near_alerts(CFG, apply_verdict(fixed, "wow", lead - 60), lead, False) == []
    assert near_alerts(StoreConfig(near_minutes=0), c, lead + 60, already_sent=False) == []


def _ratings(lows: int, highs: int, now: int) -> list[tuple[int, int]]:
    return [(now - 60 * i, 1) for i in range(lows)] + [
        (now - 60 * (lows + i), 4) for i in range(highs)
    ]


def test_negative_surge_above_the_share(contract: Contract) -> None:
    alert = surge_alert(CFG, _ratings(5, 5, T0), T0, store=S, device="till-1")
    assert alert is not None
    assert (alert.type, alert.severity, alert.case, alert.deadline) == (
        "negative_surge",
        "warning",
        None,
        None,
    )
    assert alert.text == "5 of 10 ratings in the last 60 min were low (50%) at till-1"
    _valid(contract, alert)
    store_wide = surge_alert(CFG, _ratings(5, 5, T0), T0, store=S)
    assert store_wide is not None and store_wide.device is None
    assert store_wide.text.endswith("across the store")
    _valid(contract, store_wide)


def test_no_surge_at_or_below_the_share_or_with_too_few_ratings() -> None:
    assert surge_alert(CFG, _ratings(4, 6, T0), T0, store=S) is None  # 40 %: not above
    assert surge_alert(CFG, _ratings(9, 0, T0), T0, store=S) is None  # 9 ratings: too few
    old = [(T0 - 3600, 1), *_ratings(4, 5, T0)]  # one hour ago: outside (now - 60 min, now]
    assert surge_alert(CFG, old, T0, store=S) is None
    assert surge_alert(CFG, _ratings(5, 5, T0), T0, store=S, last_sent_at=T0 - 600) is None
    assert surge_alert(CFG, _ratings(5, 5, T0), T0, store=S, last_sent_at=T0 - 3600) is not None


def test_praise_for_a_run_of_top_ratings(contract: Contract) -> None:
    nine = [1] + [4] * 9
    assert praise_alert(CFG, nine, T0, store=S, device="till-1") is None
    alert = praise_alert(CFG, [*nine, 4], T0, store=S, device="till-1")
    assert alert is not None and (alert.type, alert.severity) == ("praise", "info")
    assert alert.text.startswith("10 top ratings in a row at till-1")
    _valid(contract, alert)
    assert praise_alert(CFG, [*nine, 4, 4], T0, store=S) is None  # once per run ...
    assert praise_alert(CFG, [1] + [4] * 20, T0, store=S) is not None  # ... and at 20
    assert praise_alert(CFG, [4] * 9 + [3], T0, store=S) is None
    assert praise_alert(StoreConfig(scale=5), [4] * 10, T0, store=S) is None  # 4 is not top of 5


def test_alert_ids_are_stable_for_a_case_and_distinct_between_alerts() -> None:
    c = new_case()
    first = case_alerts(CFG, None, c, T0)[0]
    again = case_alerts(CFG, None, c, T0 + 30)[0]  # raised again after a restart
    assert first.id == again.id
    breached = case_alerts(CFG, c, settle(c, T0 + DAY), T0 + DAY)[0]
    assert breached.id != first.id
    s1 = surge_alert(CFG, _ratings(5, 5, T0), T0, store=S)
    s2 = surge_alert(CFG, _ratings(5, 5, T0 + 7200), T0 + 7200, store=S)
    assert s1 is not None and s2 is not None and s1.id != s2.id


def test_the_rules_never_read_the_clock() -> None:
    def run() -> tuple[object, ...]:
        c = new_case()
        return (
            settle(c, T0 + DAY),
            apply_verdict(mark_fixed(c, "ana", T0 + 60), "wow", T0 + 120),
            event_time(None, T0, True, 300),
            case_alerts(CFG, None, c, T0),
            near_alerts(CFG, c, T0 + DAY - 3600, already_sent=False),
        )

    with freeze_time("2025-05-29 06:26:40"):
        at_rating = run()
    with freeze_time("2031-01-01 00:00:00"):
        years_later = run()
    assert at_rating == years_later


# --- property -------------------------------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["fix", "wow", "fixed", "not_fixed", "settle"]),
        st.integers(min_value=-DAY, max_value=3 * DAY),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_any_sequence_keeps_a_valid_state_and_no_late_verdict_succeeds(
    ops: list[tuple[str, int]],
) -> None:
    c = new_case()
    for op, offset in ops:
        at = T0 + offset
        try:
            if op == "fix":
                c = mark_fixed(c, "ana", at)
            elif op == "settle":
                c = settle(c, at)
            else:
                c = apply_verdict(c, op, at)  # type: ignore[arg-type]
        except RuleError as err:
            assert err.reason
            continue
        assert c.state in STATES
        assert c.deadline == T0 + DAY
        if c.recovered_in_time:
            assert c.verdict_at is not None and c.verdict_at < c.deadline
            assert c.verdict == ("wow" if c.state == "wow" else "fixed")
        if op != "fix" and op != "settle" and at >= c.deadline:
            assert c.state in ("breached", "unconfirmed") and c.late_verdict
            assert not c.recovered_in_time
        if op == "settle" and at >= c.deadline:
            assert not c.waiting
        if c.late_verdict:
            assert c.verdict_at is not None and c.verdict_at >= c.deadline


def test_a_rating_and_its_follow_up_in_one_batch_open_the_case_from_the_rating(
    store_url: str,
) -> None:
    """A kiosk's backlog after a reconnect brings a rating and its accepted follow-up together:
    the case takes the rating's time and station, as when they come one by one."""
    from kiosk_host.aggregator.writer import Writer

    rated_at, arrived = 1763900000, 1763900600
    base = {"v": 1, "store": "s1", "device": "till-1", "up_ms": 1000}
    rating = {**base, "kind": "rating", "seq": 7, "ts": rated_at, "score": 1, "scale": 4,
              "station": "desk-2", "staff": None}  # fmt: skip
    follow_up = {**base, "kind": "follow_up", "seq": 8, "ts": rated_at + 60, "rating_seq": 7,
                 "accepted": True, "code": CODE}  # fmt: skip
    topic = "kiosk/v1/s1/till-1/event"
    storage = open_storage(store_url)
    Writer(storage).write([(topic, json.dumps(e).encode(), arrived) for e in (rating, follow_up)])
    (case,) = storage.cases("s1")
    assert (case.code, case.station, case.opened_at) == (CODE, "desk-2", rated_at)
    assert case.deadline == rated_at + 24 * 3600
    storage.close()


# --- the case list: overdue cases stay until a person closes them --------------------------


def _code(body: str) -> str:
    return body + check_character(body)


def _listed(storage: Store, now: int) -> list[dict[str, object]]:

    cases: list[dict[str, object]] = case_list(storage, S, now)["cases"]
    return cases


def _verdict(storage: Store, engine: Engine, code: str, outcome: str, at: int) -> None:
    payload = {"v": 1, "kind": "recovery_confirm", "store": S, "device": "till-2", "seq": at,
               "ts": at, "up_ms": 1, "case": code, "outcome": outcome}  # fmt: skip
    event = EventRow(S, "till-2", at, "recovery_confirm", at, at, at, False, payload)
    storage.write_batch([event], apply=engine.apply)


def test_the_case_list_keeps_overdue_cases_until_a_person_closes_them(
    store_url: str, contract: Contract
) -> None:
    from kiosk_host.aggregator.views import recognition, summary

    storage = open_storage(store_url)
    now = [float(T0)]
    engine = Engine(parse_stores('[stores.store-12]\ntz = "Europe/Berlin"\n'), lambda: now[0])
    gone, unconfirmed, soon, fixed, wowed = (_code(b) for b in ("A2B3", "B2C3", "C2D3", "D2E3",
                                                                  "E2F3"))  # fmt: skip
    with storage.transaction():
        for seq, (code, rated) in enumerate([(gone, T0 - 2 * DAY), (unconfirmed, T0 - DAY - 3600),
                                             (soon, T0 - DAY + 600), (fixed, T0 - 100),
                                             (wowed, T0 - 200)], start=1):  # fmt: skip
            storage.save_case(open_case(CFG, S, code, "till-1", "till-1", seq, rated))
    for code, at in ((unconfirmed, T0 - DAY), (fixed, T0 - 50), (wowed, T0 - 150)):
        now[0] = at
        engine.fix(storage, S, code, "ben", None)
    _verdict(storage, engine, wowed, "wow", T0 - 120)
    now[0] = T0
    assert engine.tick(storage) == {S}  # the deadlines: one breached, one unconfirmed

    listed = _listed(storage, T0)
    assert [(c["code"], c["state"], c["overdue"]) for c in listed] == [
        (gone, "breached", True),  # overdue first, the oldest deadline first
        (unconfirmed, "unconfirmed", True),
        (soon, "open", False),  # then the soonest deadline
        (fixed, "fixed", False),
    ]
    assert [c.get("fixed_by") for c in listed] == [None, "ben", None, "ben"]
    assert not any("late" in c for c in listed)
    assert [c["opened"] for c in listed[:2]] == [T0 - 2 * DAY, T0 - DAY - 3600]
    payload = json.dumps({"v": 1, "store": S, "ts": T0, "cases": listed}).encode()
    assert isinstance(contract.validate(f"kiosk/v1/{S}/cases", payload), Message)

    # A late fix: listed as late and overdue, never recovered in time, nobody credited.
    now[0] = T0 + 60
    late = engine.fix(storage, S, gone, "ana", "called the customer back")
    assert (late.state, late.late_fix, late.fixed_by) == ("unconfirmed", True, "ana")
    _verdict(storage, engine, gone, "wow", T0 + 120)  # the customer is happy, but late
    (stored,) = [c for c in storage.cases(S) if c.code == gone]
    assert (stored.state, stored.verdict, stored.late_verdict) == ("unconfirmed", "wow", True)
    item = _listed(storage, T0 + 180)[0]
    assert (item["code"], item["overdue"], item["late"], item["fixed_by"]) == (gone, True, True,
                                                                                "ana")  # fmt: skip
    assert [c.code for c in storage.recovered_between(S, T0 - 7 * DAY, T0 + DAY)] == [wowed]
    board = recognition(storage, CFG, S, T0 + 180)
    assert board["team"]["recovered_in_time"] == 1  # the case wowed in time, only
    assert all(p["staff"] != "ana" for p in board["staff"])
    assert summary(storage, CFG, S, T0 + 180)["recovered_in_time"] == 1

    # A person closes the two overdue cases: they leave the list and keep their outcome.
    now[0] = T0 + 240
    for code in (gone, unconfirmed):
        closed = engine.close(storage, S, code, "maria", "spoke to the customer")
        assert (closed.closed_by, closed.closed_at) == ("maria", T0 + 240)
    assert [c["code"] for c in _listed(storage, T0 + 300)] == [soon, fixed]
    kept = {c.code: c.state for c in storage.cases(S) if c.closed_by == "maria"}
    assert kept == {gone: "unconfirmed", unconfirmed: "unconfirmed"}
    with pytest.raises(RuleError, match="still in its window"):
        engine.close(storage, S, soon, "maria", None)
    with pytest.raises(RuleError, match="no case"):
        engine.close(storage, S, _code("Z9Z9"), "maria", None)
    storage.close()


def test_the_case_list_fits_its_message_leaving_out_the_latest_deadlines(
    store_url: str, contract: Contract
) -> None:
    from kiosk_host.aggregator.views import CASES_BYTES, case_list

    storage = open_storage(store_url)
    long = "s" * 32
    with storage.transaction():
        for seq in range(1, 61):  # more than 50, each as long as the contract allows
            c = open_case(CFG, S, _code(f"A{seq:03d}".replace("0", "2").replace("1", "3")),
                          "till-1", long, seq, T0 - DAY - seq)  # fmt: skip
            c = mark_fixed(settle(c, T0), long, T0)
            storage.save_case(c)
    payload = case_list(storage, S, T0 + 1)
    text = json.dumps(payload).encode()
    assert len(text) <= CASES_BYTES
    assert isinstance(contract.validate(f"kiosk/v1/{S}/cases", text), Message)
    cases = payload["cases"]
    assert 30 < len(cases) < 50
    assert all(c["late"] and c["overdue"] and c["fixed_by"] == long for c in cases)
    deadlines = [c["deadline"] for c in cases]
    assert deadlines == sorted(deadlines)
    everyone = sorted(c.deadline for c in storage.listed_cases(S))
    assert deadlines == everyone[: len(deadlines)]  # the earliest deadlines are the ones kept
    storage.close()


def test_a_fixed_case_turning_overdue_sends_the_stores_case_list_again(store_url: str) -> None:
    """No alert comes when a fixed case's window closes without a verdict, yet it is now
    overdue: the writer's tick still publishes the store's case list again."""
    from kiosk_host.aggregator.writer import Writer

    storage = open_storage(store_url)
    writer = Writer(storage)
    clock = [float(T0)]
    writer.engine = Engine(parse_stores(""), lambda: clock[0])
    code = _code("A2B3")
    with storage.transaction():
        storage.save_case(open_case(CFG, S, code, "till-1", "till-1", 1, T0 - 60))
    assert writer.engine.fix(storage, S, code, "ben", None).state == "fixed"
    writer.tick(T0)  # the first tick publishes every store's views: not the point here
    assert {t for t, _, _ in writer.tick(T0 + 1)} == set()
    clock[0] = T0 + DAY  # the window closes with no verdict: no alert for that
    now = T0 + DAY
    published = {t for t, _, _ in writer.tick(now + 1)}
    assert f"kiosk/v1/{S}/cases" in published
    (item,) = case_list(storage, S, now + 1)["cases"]
    assert (item["state"], item["overdue"]) == ("unconfirmed", True)
    assert {t for t, _, _ in writer.tick(now + 2)} == set()  # nothing changed since
