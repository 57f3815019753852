"""Recognition (docs/recognition.md): attribution, shrunk smooth rate, recoveries, the board."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk_host.rules.recognition import (
    MAX_BYTES,
    Board,
    Rating,
    attribute,
    board,
    shrunk_rate,
    to_payload,
)
from kiosk_host.rules.recovery import Case, apply_verdict, mark_fixed, open_case, settle
from kiosk_host.rules.stores import DEFAULT, parse_stores
from kiosk_host.wire.contract import Contract, Message

BERLIN = ZoneInfo("Europe/Berlin")
S = "store-12"
FROM, TO = 1_748_217_600, 1_748_822_400  # a week
T = FROM + 3 * 86_400
DAY = 86_400
CFG = parse_stores(
    """
[stores.store-12]
tz = "Europe/Berlin"

[[stores.store-12.roster]]
station = "till-1"
staff = "ana"
start = "08:00"
end = "14:00"

[stores.store-12.names]
ana = "Ana"
zoe = "Zoë"
"""
).get(S)


def ratings(staff: str | None, top: int, total: int, at: int = T) -> list[Rating]:
    return [Rating(staff, 4 if i < top else 3, at + i) for i in range(total)]


def wowed(code: str, staff: str, verdict_after: int, outcome: str = "wow") -> Case:
    c = open_case(DEFAULT, S, code, "till-1", "till-1", 1, T)
    c = mark_fixed(c, staff, T + 60)
    return settle(apply_verdict(c, outcome, T + verdict_after), T + verdict_after)  # type: ignore[arg-type]


def names(b: Board) -> list[str]:
    return [s.staff for s in b.staff]


def berlin(y: int, mo: int, d: int, h: int, mi: int) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=BERLIN).timestamp())


# --- attribution ----------------------------------------------------------------------------


def test_a_rating_goes_to_whoever_signed_in_else_to_the_roster() -> None:
    monday_9 = berlin(2025, 6, 2, 9, 0)
    signins = [
        ("till-1", "ben-k", monday_9 - 1800, monday_9 + 600),
        ("till-2", "cleo", monday_9 - 3600, None),
    ]
    assert attribute(signins, CFG, "till-1", monday_9) == "ben-k"
    assert attribute(signins, CFG, "till-1", monday_9 + 600) == "ana"  # signed out: roster
    assert attribute(signins, CFG, "till-2", monday_9 + 9 * DAY) == "cleo"  # still signed in
    assert attribute([], CFG, "till-1", monday_9) == "ana"
    assert attribute([], CFG, "till-1", berlin(2025, 6, 2, 15, 0)) is None  # nobody rostered
    assert attribute(signins, CFG, "till-1", monday_9 - 1801) == "ana"  # before signing in


def test_the_latest_sign_in_wins_when_two_overlap() -> None:
    signins = [("till-1", "ben-k", T - 7200, None), ("till-1", "cleo", T - 60, None)]
    assert attribute(signins, DEFAULT, "till-1", T) == "cleo"
    assert attribute(signins, DEFAULT, "till-1", T - 600) == "ben-k"


# --- the smooth rate ------------------------------------------------------------------------


def test_five_lucky_ratings_do_not_beat_five_hundred_good_ones() -> None:
    team = ratings(None, 300, 400)  # the store's others: 75 %, so that both are above it
    b = board(DEFAULT, ratings("zoe", 5, 5) + ratings("ana", 450, 500) + team, [], FROM, TO)
    assert names(b) == ["ana", "zoe"]
    ana, zoe = b.staff
    assert (ana.ratings, ana.smooth, zoe.ratings, zoe.smooth) == (500, 450, 5, 5)
    assert ana.smooth_rate is not None and zoe.smooth_rate is not None
    assert ana.smooth_rate > zoe.smooth_rate
    assert zoe.smooth_rate < 1.0  # shrunk
    # ... also in a bigger store whose other staff bring its average down
    more = ratings("zoe", 5, 5) + ratings("ana", 450, 500) + ratings("ben-k", 300, 400)
    assert names(board(DEFAULT, more, [], FROM, TO)) == ["ana", "zoe"]  # ben-k: below it


def test_the_shrunk_rate_formula() -> None:
    # mean = (smooth + 20 p) / (ratings + 20), less one posterior standard deviation
    p = 0.8
    mean = (5 + 20 * p) / 25
    assert shrunk_rate(5, 5, p) == pytest.approx(mean - (mean * (1 - mean) / 26) ** 0.5)
    assert shrunk_rate(0, 0, 0.0) == 0.0
    assert shrunk_rate(100_000, 100_000, 1.0) == 1.0
    assert abs(shrunk_rate(90_000, 100_000, 0.5) - 0.9) < 0.002  # many ratings: their own


@settings(max_examples=200)
@given(
    st.integers(min_value=0, max_value=2000),
    st.integers(min_value=0, max_value=2000),
    st.floats(min_value=0, max_value=1),
)
def test_the_shrunk_rate_is_a_share_and_more_top_ratings_never_lower_it(
    a: int, b: int, p: float
) -> None:
    n, k = max(a, b), min(a, b)
    r = shrunk_rate(k, n, p)
    assert 0.0 <= r <= 1.0
    if k < n:
        assert shrunk_rate(k + 1, n, p) >= r - 1e-12


# --- recoveries -----------------------------------------------------------------------------


def test_a_wow_inside_the_window_is_credited_to_whoever_fixed_the_case() -> None:
    b = board(DEFAULT, [], [wowed("A7K3", "ben-k", 3600), wowed("B2XZ", "ben-k", 7200)], FROM, TO)
    (ben,) = b.staff
    assert (ben.staff, ben.wow_in_time, ben.recovered_in_time) == ("ben-k", 2, 2)
    assert ben.ratings == 0 and ben.smooth_rate is None
    assert ben.reasons == ("made 2 customers say Wow! within 24 h (cases A7K3, B2XZ)",)


def test_a_recovery_outside_the_window_earns_nothing() -> None:
    late = wowed("A7K3", "ben-k", DAY)  # the verdict came at the deadline second
    assert (late.state, late.late_verdict) == ("unconfirmed", True)
    later = wowed("B2XZ", "ben-k", DAY + 3600)
    b = board(DEFAULT, [], [late, later], FROM, TO)
    assert b.staff == ()
    assert (b.team.wow_in_time, b.team.recovered_in_time) == (0, 0)
    # one second earlier it would have counted
    assert board(DEFAULT, [], [wowed("A7K3", "ben-k", DAY - 1)], FROM, TO).team.wow_in_time == 1


def test_made_right_but_not_wowed_counts_as_recovered_not_wow() -> None:
    b = board(DEFAULT, [], [wowed("A7K3", "cleo", 60, "fixed")], FROM, TO)
    (cleo,) = b.staff
    assert (cleo.wow_in_time, cleo.recovered_in_time) == (0, 1)
    assert cleo.reasons == ("made it right for 1 customer within 24 h (case A7K3)",)


def test_a_recovery_is_counted_in_the_period_of_its_verdict() -> None:
    c = wowed("A7K3", "ben-k", 3600)
    assert board(DEFAULT, [], [c], T + 3600, TO).team.wow_in_time == 1
    assert board(DEFAULT, [], [c], FROM, T + 3600).team.wow_in_time == 0


# --- the board ------------------------------------------------------------------------------


def test_team_figures_are_the_whole_stores() -> None:
    rs = ratings("ana", 8, 10) + ratings("ben-k", 3, 5) + ratings(None, 2, 5)
    cases = [wowed("A7K3", "ana", 60), wowed("B2XZ", "ben-k", 60, "fixed")]
    cases.append(settle(open_case(DEFAULT, S, "C3PQ", "till-1", "till-1", 9, T), T + DAY))
    nobody = apply_verdict(open_case(DEFAULT, S, "D4RS", "till-1", "till-1", 9, T), "wow", T + 5)
    b = board(DEFAULT, rs, [*cases, nobody], FROM, TO)
    assert (b.team.ratings, b.team.smooth, b.team.smooth_rate) == (20, 13, 13 / 20)
    assert (b.team.wow_in_time, b.team.recovered_in_time) == (2, 3)  # D4RS: nobody fixed it
    assert {s.staff: s.wow_in_time for s in b.staff} == {"ana": 1, "ben-k": 0}


def test_ratings_outside_the_period_or_opening_hours_are_left_out() -> None:
    cfg = parse_stores('[stores.s.hours]\nmon = "08:00-20:00"\n').get("s")
    monday_noon = int(datetime(2025, 6, 2, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp())
    rs = [
        Rating("ana", 4, monday_noon),
        Rating(None, 1, monday_noon + 60),
        Rating("ana", 4, monday_noon + 9 * 3600),  # 21:00: closed
        Rating("ana", 4, monday_noon + 7 * DAY),  # next Monday: outside the period
    ]
    b = board(cfg, rs, [], monday_noon - 3600, monday_noon + DAY)
    assert (b.team.ratings, b.staff[0].ratings) == (2, 1)


def test_a_person_below_the_stores_rate_is_not_listed_the_team_still_first() -> None:
    # The store at 53 %: 2 of 6 (33 %) is no reason to be recognised; 4 of 6 (67 %) is, and so
    # is a customer won back in time, whatever the person's own rate.
    rs = ratings(None, 47, 88) + ratings("ana", 2, 6) + ratings("ben-k", 4, 6)
    b = board(CFG, rs, [], FROM, TO)
    assert b.team.smooth_rate == pytest.approx(0.53)
    assert names(b) == ["ben-k"]
    assert b.staff[0].reasons == (
        "4 of 6 customers gave the top score (67%, against 53% for the store)",
    )
    rs += ratings("cleo", 1, 4)
    b = board(CFG, rs, [wowed("A7K3", "cleo", 60, "fixed")], FROM, TO)
    assert names(b) == ["ben-k", "cleo"]
    assert b.staff[1].reasons == ("made it right for 1 customer within 24 h (case A7K3)",)
    payload = to_payload(b, S, TO)
    assert list(payload)[-2:] == ["team", "staff"]  # the team's line, then the people
    assert [s["staff"] for s in payload["staff"]] == ["ben-k", "cleo"]


def test_nobody_with_nothing_to_recognise_is_listed() -> None:
    rs = ratings("ana", 40, 50) + ratings("ben-k", 0, 30)  # ben-k: no top rating at all
    late = wowed("A7K3", "ben-k", DAY + 1)  # and only a recovery outside the window
    b = board(DEFAULT, rs, [late], FROM, TO)
    assert names(b) == ["ana"]
    assert b.team.ratings == 80  # but his ratings are the team's
    assert board(DEFAULT, [], [], FROM, TO).staff == ()


def test_ordering_by_rate_then_wow() -> None:
    rs = ratings("ana", 18, 20) + ratings("ben-k", 18, 20) + ratings("cleo", 12, 20)
    rs += ratings(None, 10, 40)  # the store: 58 of 100, below all three
    cases = [wowed("A7K3", "ben-k", 60)]
    assert names(board(DEFAULT, rs, cases, FROM, TO)) == ["ben-k", "ana", "cleo"]


def test_reasons_can_be_checked_against_the_data() -> None:
    rs = ratings("ana", 101, 120) + ratings("ben-k", 50, 100)
    b = board(CFG, rs, [wowed("A7K3", "ana", 60), wowed("B2XZ", "ana", 90)], FROM, TO)
    ana = b.staff[0]
    assert ana.name == "Ana"
    assert ana.reasons == (
        "101 of 120 customers gave the top score (84%, against 69% for the store)",
        "made 2 customers say Wow! within 24 h (cases A7K3, B2XZ)",
    )
    assert names(b) == ["ana"]  # ben-k, at 50 %, is below the store: not listed
    # listed for a recovery, a person below the store has no line about top ratings
    b = board(CFG, rs, [wowed("A7K3", "ben-k", 60)], FROM, TO)
    assert b.staff[1].reasons == ("made 1 customer say Wow! within 24 h (case A7K3)",)


def test_at_most_fifty_people() -> None:
    rs = [r for i in range(60) for r in ratings(f"s{i}", 10 + i % 7, 20)]
    rs += ratings(None, 0, 2000)  # the store as a whole well below every one of them
    b = board(DEFAULT, rs, [], FROM, TO)
    assert len(b.staff) == 50
    rates = [s.smooth_rate or 0.0 for s in b.staff]
    assert rates == sorted(rates, reverse=True)


# --- the payload ----------------------------------------------------------------------------


def _validates(contract: Contract, payload: dict[str, Any]) -> None:
    raw = json.dumps(payload, ensure_ascii=False).encode()
    result = contract.validate(f"kiosk/v1/{payload['store']}/recognition", raw)
    assert isinstance(result, Message), result


def test_the_payload_validates_against_the_contract(contract: Contract) -> None:
    rs = ratings("ana", 450, 500) + ratings("zoe", 5, 5) + ratings(None, 3, 10)
    b = board(CFG, rs, [wowed("A7K3", "ana", 60), wowed("B2XZ", "ben-k", 60, "fixed")], FROM, TO)
    payload = to_payload(b, S, TO + 60)
    _validates(contract, payload)
    assert payload["period"] == {"from": FROM, "to": TO}
    assert payload["team"]["ratings"] == 515
    assert [s["staff"] for s in payload["staff"]] == ["ana", "zoe", "ben-k"]
    assert payload["staff"][1]["name"] == "Zoë"
    assert payload["staff"][2]["smooth_rate"] is None


def test_an_empty_board_validates(contract: Contract) -> None:
    payload = to_payload(board(DEFAULT, [], [], FROM, TO), S, TO)
    assert payload["team"]["smooth_rate"] is None and payload["staff"] == []
    _validates(contract, payload)


def test_a_board_too_big_for_the_message_is_shortened(contract: Contract) -> None:
    # 50 people with the longest ids, long non-ASCII names (written escaped, six bytes a
    # letter) and three reasons each: too big with every reason, and with one reason each.
    people = [f"staff-member-with-a-long-id-{i:04d}" for i in range(50)]
    toml = "[stores.s.names]\n" + "".join(f'{p} = "{"ë" * 24}"\n' for p in people)
    cfg = parse_stores(toml).get("s")
    rs = [r for p in people for r in ratings(p, 15, 20)] + ratings(None, 0, 1000)
    cases = [
        wowed(code, person, 60, outcome)
        for person, letter in zip(people, "ABCDEFGHJKMNPQRSTUVWXYZ", strict=False)
        for digits in ("223", "234", "245", "256", "267", "278", "289", "29A")
        for code, outcome in ((letter + digits, "wow"), (letter + digits[::-1], "fixed"))
    ]
    b = board(cfg, rs, cases, FROM, TO)
    assert len(b.staff) == 50 and len(b.staff[0].reasons) == 3
    payload = to_payload(b, "s", TO)
    assert len(json.dumps(payload).encode()) <= MAX_BYTES
    assert 0 < len(payload["staff"]) < 50
    assert [s["staff"] for s in payload["staff"]] == [s.staff for s in b.staff][
        : len(payload["staff"])
    ]
    assert all(len(s["reasons"]) == 1 for s in payload["staff"])
    _validates(contract, payload)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["ana", "ben-k", "cleo", None]), st.integers(1, 4)),
        max_size=200,
    ),
)
def test_any_board_validates_and_lists_only_people_with_something(
    contract: Contract, rows: list[tuple[str | None, int]]
) -> None:
    rs = [Rating(staff, score, T + i) for i, (staff, score) in enumerate(rows)]
    b = board(DEFAULT, rs, [], FROM, TO)
    p = b.team.smooth_rate
    assert p is not None or b.staff == ()
    assert all(s.smooth / s.ratings > (p or 0) for s in b.staff)  # only those above the store
    for person in {staff for staff, _ in rows} - {s.staff for s in b.staff} - {None}:
        mine = [score for staff, score in rows if staff == person]
        share = sum(1 for score in mine if score == 4) / len(mine)
        assert p is None or round(100 * share) <= round(100 * p)  # in whole percent, as shown
    assert b.team.ratings == len(rows)
    _validates(contract, to_payload(b, S, TO))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["ana", "ben-k", None]), st.integers(1, 4), st.integers(1, 9)),
        max_size=30,
    ),
)
def test_a_tally_counts_as_that_many_ratings(rows: list[tuple[str | None, int, int]]) -> None:
    """A quarter hour's tally (`count`) weighs on the board as its ratings one by one do."""
    tallied = [Rating(staff, score, T, count=n) for staff, score, n in rows]
    one_by_one = [Rating(staff, score, T + i) for staff, score, n in rows for i in range(n)]
    assert board(DEFAULT, tallied, [], FROM, TO) == board(DEFAULT, one_by_one, [], FROM, TO)
    assert board(DEFAULT, tallied, [], FROM, TO).team.ratings == sum(n for _, _, n in rows)
