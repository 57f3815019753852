"""A store's daily and weekly digest e-mail (`kiosk-host digest`): its figures are the
report's for the same local days, its cases and recognition those of the store, in English,
German and Dutch, and in every language a store may have; a store without ratings says so;
which digests are due when; and the HTML as Chromium shows it, heatmap colours included."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from kiosk_host.aggregator.digest import (
    TEXTS,
    digest_message,
    due_periods,
    period_from,
    period_of,
    risk_line,
)
from kiosk_host.aggregator.engine import Engine
from kiosk_host.rules.forecast import Slot, reason
from kiosk_host.rules.stores import LANGUAGES, WEEKDAYS, Stores, load_stores, parse_stores
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import Storage
from tests.cli_run import run_cli
from tests.postgres import Postgres
from tests.test_dashboard_api import fill_store, message, store_messages
from tests.test_host_ingest import case_code

BERLIN = ZoneInfo("Europe/Berlin")
STORES_TOML = """
[stores.north]
tz = "Europe/Berlin"

[stores.north.names]
ana = "Ana"

[stores.quiet]
tz = "Europe/Berlin"
language = "de"
"""
# The digests go out on Monday 23 November 2026 at 07:00 in Berlin: the daily one covers
# Sunday the 22nd, the weekly one Monday the 16th to Sunday the 22nd (ISO week 47).
SENT = datetime(2026, 11, 23, 7, 0, tzinfo=BERLIN)
WEEK_FIRST, DAY = date(2026, 11, 16), date(2026, 11, 22)


@dataclass
class Filled:
    db: Path
    stores_file: Path
    tmp: Path

    def cli(self, *args: str) -> Any:
        done = run_cli([*args, "--db", str(self.db), "--stores", str(self.stores_file)],
                       {"KIOSK_STORES": None})  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    def digest(self, store: str, period: str, *extra: str, again: bool = False) -> EmailMessage:
        """`kiosk-host digest` as at SENT, read back from its file (written once per module
        unless `again`)."""
        out = self.tmp / f"{store}-{period}-{'-'.join(extra) or 'own'}.eml"
        if again or not out.exists():
            self.cli("digest", "--store", store, "--period", period, "--at", SENT.isoformat(),
                     "--to", str(out), *extra)  # fmt: skip
        parsed = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def report(self, store: str, period: str) -> list[dict[str, Any]]:
        """`kiosk-host report --json` on the period's last second, the clock frozen there."""
        first = WEEK_FIRST if period == "week" else DAY
        span = period_from(load_stores(self.stores_file).get(store), period, first)
        with freeze_time(datetime.fromtimestamp(span.until - 1, UTC)):
            rows: list[dict[str, Any]] = json.loads(
                self.cli("report", "--store", store, "--period", period, "--json").stdout
            )
        return rows


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """Nine days of north up to the Monday morning the digests go out, through the ingest
    path and the recovery engine: ratings, cases fixed, wowed, recovered, breached and left
    unconfirmed, and one case fixed late. Quiet has nothing."""
    tmp = tmp_path_factory.mktemp("digest")
    stores_file = tmp / "stores.toml"
    stores_file.write_text(STORES_TOML)
    stores = parse_stores(STORES_TOML)
    db = tmp / "kiosk.db"
    fill(str(db), stores)
    return Filled(db, stores_file, tmp)


def fill(db: str, stores: Stores) -> None:
    storage = open_storage(db, create=True)
    try:
        fill_store(storage, stores, "north", int(SENT.timestamp()), seed=4, ratings=160)
        late_fix(storage, stores)
    finally:
        storage.close()


LATE = case_code("till-9", 1)  # the case fixed only after its deadline


def late_fix(storage: Store, stores: Stores) -> None:
    """A low rating on Wednesday whose case nobody fixed until after its deadline."""
    rated = int(datetime(2026, 11, 18, 12, 0, tzinfo=BERLIN).timestamp())
    clock = [rated]
    engine = Engine(stores, now=lambda: clock[0])
    low = message("north", "till-9", 1, "rating", rated, score=1, scale=4, station="till-9",
                  staff=None)  # fmt: skip
    store_messages(storage, engine, [low], rated)
    accepted = message("north", "till-9", 2, "follow_up", rated + 20, rating_seq=1,
                       accepted=True, code=LATE)  # fmt: skip
    store_messages(storage, engine, [accepted], rated + 20)
    clock[0] = rated + 30 * 3600
    engine.tick(storage)
    engine.fix(storage, "north", LATE, "ana", "called them back")


class _Figures(HTMLParser):
    """The data-* attributes the digest's HTML carries, read back."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[tuple[str, str], str] = {}  # (day or "period", figure): data-value
        self.shown: dict[tuple[str, str], str] = {}  # the same, as the text shows it
        self.heat: dict[tuple[str, str], int] = {}  # (day, hour): data-count
        self.cases: list[str] = []
        self.staff: list[str] = []
        self.reasons: dict[str, list[str]] = {}
        self.risk: list[str] = []
        self.team: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.tags: set[str] = set()
        self.attrs: set[str] = set()
        self._open: tuple[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        self.attrs |= set(a)
        if "data-figure" in a:
            key = (a["data-day"], a["data-figure"])
            self.figures[key] = a["data-value"]
            self._open = ("shown", key)
        elif "data-heat-day" in a:
            self.heat[a["data-heat-day"], a["data-hour"]] = int(a["data-count"])
        elif "data-case" in a:
            self.cases.append(a["data-case"])
        elif "data-staff" in a:
            self.staff.append(a["data-staff"])
            self.reasons[a["data-staff"]] = []
        elif "data-reason" in a:
            self._open = ("reason", self.staff[-1])
        elif "data-risk" in a:
            self._open = ("risk", None)
        elif a.get("id") == "team":
            self.team = {k[5:]: v for k, v in a.items() if k.startswith("data-")}
        elif "id" in a:
            self._open = ("id", a["id"])

    def handle_data(self, data: str) -> None:
        if self._open is None:
            return
        what, key = self._open
        self._open = None
        if what == "shown":
            self.shown[key] = data
        elif what == "reason":
            self.reasons[key].append(data)
        elif what == "risk":
            self.risk.append(data)
        else:
            self.ids[key] = data


def subject(msg: EmailMessage) -> str:
    """The Subject as a mail client shows it (a long one is folded onto a line of its own),
    French no-break spaces kept."""
    return re.sub(r"[^\S\u00a0\u202f]+", " ", str(msg["Subject"])).strip()


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def read(msg: EmailMessage) -> _Figures:
    parsed = _Figures()
    parsed.feed(html_of(msg))
    return parsed


DAY_FIGURES = ("ratings", "satisfaction", "breakdowns", "recovered_in_time", "overdue_cases")


def as_value(x: Any) -> str:
    return "" if x is None else str(x)


def period_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratings = sum(r["ratings"] for r in rows)
    breakdowns = sum(r["breakdowns"] for r in rows)
    return {
        "ratings": ratings,
        "breakdowns": breakdowns,
        "satisfaction": round((ratings - breakdowns) / ratings, 4) if ratings else None,
        "recovered_in_time": sum(r["recovered_in_time"] for r in rows),
        "overdue_cases": sum(r["overdue_cases"] for r in rows),
        "open_cases": rows[-1]["open_cases"],
    }


def test_the_weekly_digests_figures_are_the_reports_for_last_week(filled: Filled) -> None:
    msg = filled.digest("north", "week")
    rows = filled.report("north", "week")
    assert [r["day"] for r in rows] == [f"2026-11-{d}" for d in range(16, 23)]
    got = read(msg)
    for r in rows:
        for name in DAY_FIGURES:
            assert got.figures[r["day"], name] == as_value(r[name]), (r["day"], name)
    totals = period_totals(rows)
    for name, value in totals.items():
        assert got.figures["period", name] == as_value(value), name
    assert got.ids["counts"].startswith("By score (1 lowest): 1: ")
    # every hour of every day, breakdowns or none, as the report counts them
    assert got.heat == {
        (r["day"], f"{h:02d}"): r["breakdowns_by_hour"].get(f"{h:02d}", 0)
        for r in rows
        for h in range(24)
    }
    # the cases: those recovered in time and those that missed their deadline in the week
    assert totals["recovered_in_time"] > 0 and totals["overdue_cases"] > 0
    assert len(got.cases) == totals["recovered_in_time"] + totals["overdue_cases"]
    storage = Storage(filled.db)
    late = storage.case_by_code("north", LATE)
    storage.close()
    assert late is not None and late.late_fix and late.code in got.cases
    assert re.search(rf"{late.code}</td>.*?fixed late</td><td[^>]*>Ana</td>", html_of(msg))
    shown = round(100 * totals["satisfaction"])
    assert subject(msg) == (
        f"north: week 47, {shown}% satisfied, {totals['breakdowns']} breakdowns, "
        f"{totals['overdue_cases']} missed"
    )
    assert got.shown["period", "satisfaction"] == f"{shown}%"


def test_the_daily_digest_covers_the_day_before(filled: Filled) -> None:
    msg = filled.digest("north", "day")
    (row,) = filled.report("north", "day")
    assert row["day"] == "2026-11-22"
    got = read(msg)
    for name in DAY_FIGURES:
        assert got.figures["period", name] == as_value(row[name]), name
    assert not any(day != "period" for day, _ in got.figures)  # no table of days
    assert {day for day, _ in got.heat} == {"2026-11-22"}
    assert sum(got.heat.values()) == row["breakdowns"] > 0
    assert subject(msg).startswith("north: Sun 22 Nov, ")
    assert msg["Message-ID"] == "<digest-north-day-2026-11-22@kiosk-host>"
    assert "risk" not in got.ids and not got.risk  # next week's hours: weekly only


def test_the_message_is_mail_of_its_own(filled: Filled) -> None:
    msg = filled.digest("north", "week")
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Message-ID"] == "<digest-north-week-2026-11-16@kiosk-host>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Content-Language"] == "en"
    assert msg["Date"].datetime == SENT
    again = filled.digest("north", "week", again=True)  # the same message, by its id
    assert again["Message-ID"] == msg["Message-ID"] and html_of(again) == html_of(msg)
    got = read(msg)
    # what mail clients render: inline styles only, nothing fetched, nothing run
    assert not {"style", "script", "img", "link", "iframe", "object"} & got.tags
    assert not {"class", "src", "srcset", "onload", "onclick"} & got.attrs
    text = text_of(msg)
    assert "Weekly digest of north" in text and "<" not in text.replace("<digest", "")


def test_recognition_is_the_boards_with_the_team_first(filled: Filled) -> None:
    msg = filled.digest("north", "week")
    since = period_from(load_stores(filled.stores_file).get("north"), "week", WEEK_FIRST)
    # the recognition command's week ends at its clock: frozen at the period's end
    with freeze_time(datetime.fromtimestamp(since.until, UTC)):
        board = json.loads(
            filled.cli("recognition", "--store", "north", "--period", "week", "--json").stdout
        )
    got = read(msg)
    assert board["staff"], "someone to recognise"
    assert got.staff == [p["staff"] for p in board["staff"]]
    assert got.reasons == {p["staff"]: p["reasons"] for p in board["staff"]}
    team = board["team"]
    for key in ("ratings", "smooth", "wow_in_time", "recovered_in_time"):
        assert got.team[key.replace("_", "-")] == str(team[key]), key
    assert round(float(got.team["smooth-rate"]), 4) == team["smooth_rate"]
    html = html_of(msg)
    assert html.index('id="team"') < html.index('id="board"')  # the team first
    assert "<strong>Ana</strong>" in html  # by the name the store gave


# What the weekly digest of north says in German and in Dutch: its subject (with the share
# satisfied, the breakdowns and the cases missed), title, period, two headings, the word the
# recognition's reasons name customers by, and the risky hours' words.
IN_WORDS = {
    "de": {
        "subject": "north: KW 47, {pct} % zufrieden, {breakdowns} schlechte Bewertungen, "
        "{missed} Fristen verpasst",
        "title": "Wochenbericht der Filiale north",
        "period": "KW 47, Mo, 16. Nov. bis So, 22. Nov. 2026",
        "recovered": "Rechtzeitig gutgemacht",
        "recognition": "Anerkennung",
        "customers": "Kunden",
        "risk": "schlechte Bewertungen erwartet",
        "risk_heading": "Die riskantesten Stunden der nächsten Woche",
    },
    "nl": {
        "subject": "north: week 47, {pct}% tevreden, {breakdowns} slechte beoordelingen, "
        "{missed} deadlines gemist",
        "title": "Weekoverzicht van north",
        "period": "week 47, ma 16 nov t/m zo 22 nov 2026",
        "recovered": "Op tijd goedgemaakt",
        "recognition": "Waardering",
        "customers": "klant",
        "risk": "slechte beoordelingen verwacht",
        "risk_heading": "De riskantste uren van volgende week",
    },
}


@pytest.mark.parametrize("lang", sorted(IN_WORDS))
def test_in_german_and_dutch_the_same_figures_in_their_words(filled: Filled, lang: str) -> None:
    words = IN_WORDS[lang]
    english, own = (
        filled.digest("north", "week"),
        filled.digest("north", "week", "--language", lang),
    )
    assert own["Content-Language"] == lang
    assert own["Message-ID"] == english["Message-ID"]
    en, got = read(english), read(own)
    assert got.figures == en.figures and got.heat == en.heat and got.cases == en.cases
    assert got.staff == en.staff and got.team == en.team
    totals = {k: int(en.figures["period", k]) for k in ("breakdowns", "overdue_cases")}
    pct = en.shown["period", "satisfaction"].rstrip("%")
    assert totals["breakdowns"] > 1 and totals["overdue_cases"] > 1  # the plural forms
    assert subject(own) == words["subject"].format(
        pct=pct, breakdowns=totals["breakdowns"], missed=totals["overdue_cases"]
    )
    html = html_of(own)
    assert f'<html lang="{lang}">' in html and words["title"] in html
    assert words["period"] in html
    assert words["recovered"] in html and words["recognition"] in html
    reasons = [r for rs in got.reasons.values() for r in rs]
    assert reasons and all(words["customers"] in r and "customer" not in r for r in reasons)
    assert len(got.risk) == len(en.risk) == 3
    assert all(words["risk"] in line for line in got.risk), got.risk
    assert words["risk_heading"] in text_of(own)


def test_a_store_without_ratings_says_so(filled: Filled) -> None:
    german = filled.digest("quiet", "week")  # its own language: German
    assert subject(german) == "quiet: KW 47, keine Bewertungen, 0 Fristen verpasst"
    assert "Keine Bewertungen in diesem Zeitraum." in html_of(german)
    assert "Keine Bewertungen in diesem Zeitraum." in text_of(german)
    assert "Keine Stunde fällt auf" in html_of(german)  # no history: no riskiest hours
    english = filled.digest("quiet", "day", "--language", "en")
    assert subject(english) == "quiet: Sun 22 Nov, no ratings, 0 missed"
    got = read(english)
    assert got.ids["no-ratings"] == "No ratings in this period."
    assert got.figures["period", "ratings"] == "0" and got.figures["period", "satisfaction"] == ""
    assert got.ids["heatmap-none"] == "No breakdowns in this period."
    assert set(got.heat.values()) == {0}
    assert "No case was recovered in this period." in text_of(english)
    dutch = filled.digest("quiet", "day", "--language", "nl")
    assert subject(dutch) == "quiet: zo 22 nov, geen beoordelingen, 0 deadlines gemist"
    assert read(dutch).ids["no-ratings"] == "Geen beoordelingen in deze periode."


def test_next_weeks_riskiest_hours_in_the_weekly_digest(filled: Filled) -> None:
    from kiosk_host.aggregator.risk import next_week

    cfg = load_stores(filled.stores_file).get("north")
    storage = Storage(filled.db)
    try:
        top = next_week(storage, cfg, "north", period_of(cfg, "week", int(SENT.timestamp()))
                        .until - 1)["top"]  # fmt: skip
    finally:
        storage.close()
    got = read(filled.digest("north", "week"))
    assert got.risk == [slot["reason"] for slot in top] and len(top) == 3


@pytest.mark.parametrize("seen", [0, 1, 8])
@pytest.mark.parametrize(("weekday", "hour", "expected"), [(5, 14, 2.3456), (0, 23, 0.04)])
def test_a_risky_hour_in_the_catalogue_reads_as_the_forecast_writes_it(
    seen: int, weekday: int, hour: int, expected: float
) -> None:
    slot = Slot(weekday, hour, expected, breakdowns=6, days=seen, bad_days=min(seen, 3))
    item = {"weekday": WEEKDAYS[weekday], "hour": hour, "expected": expected,
            "breakdowns": 6, "days": seen}  # fmt: skip
    assert risk_line(TEXTS["en"], item) == reason(slot)
    german = risk_line(TEXTS["de"], item)
    assert german.startswith(("Samstags 14:00\N{EN DASH}15:00 Uhr: 2,3 ", "Montags 23:00"))
    dutch = risk_line(TEXTS["nl"], item)
    day = "zaterdag" if weekday == 5 else "maandag"
    assert dutch.startswith(
        f"Op {day} van {hour}:00 tot {hour + 1}:00: {'2,3' if weekday == 5 else '0,0'} slechte "
    )
    assert dutch.endswith(
        {0: f"(nog geen {day} op dit uur gezien: het gemiddelde uur van de winkel)",
         1: f"(6 op de enige {day} tot nu toe)",
         8: f"(6 op de laatste 8 {day}en)"}[seen]
    )  # fmt: skip


def test_every_language_has_every_text() -> None:
    assert set(TEXTS) == set(LANGUAGES)  # every language a store may have
    keys = set(TEXTS["en"])
    for lang, words in TEXTS.items():
        assert set(words) == keys, lang
        assert len(words["days"].split()) == 7 and len(words["months"].split()) == 12
        for key in ("risk.day", "risk.when", "risk.days"):
            assert len(words[key].split(",")) == 7, (lang, key)


def test_french_puts_a_narrow_no_break_space_before_its_signs_and_only_french() -> None:
    for key, pattern in TEXTS["fr"].items():
        for before, sign in re.findall(r"(.)([:;!?%»])", pattern):
            assert before == "\u202f", (key, sign)
    for lang, words in TEXTS.items():
        if lang != "fr":
            assert not any("\u202f" in pattern for pattern in words.values()), lang


@pytest.mark.parametrize(
    ("language", "written", "begins"),
    [
        ("fr", "fr", "north\u202f: dim. 22 nov., "),
        ("es", "es", "north: dom 22 nov, "),
        ("de-AT", "de", "north: So, 22. Nov., "),
        ("nl", "nl", "north: zo 22 nov, "),
        ("it", "en", "north: Sun 22 Nov, "),  # a language without digest texts: English
    ],
)
def test_each_language_of_the_alerts_and_english_for_the_others(
    filled: Filled, language: str, written: str, begins: str
) -> None:
    msg = filled.digest("north", "day", "--language", language)
    assert msg["Content-Language"] == written and subject(msg).startswith(begins)
    assert f'<html lang="{written}">' in html_of(msg)


@pytest.mark.e2e  # a PostgreSQL server of the test's own
def test_the_same_digest_from_postgresql(
    filled: Filled, postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.database()
    try:
        fill(url, load_stores(filled.stores_file))
        for period in ("week", "day"):
            out = tmp_path / f"{period}.eml"
            done = run_cli(["digest", "--store", "north", "--period", period, "--at",
                            SENT.isoformat(), "--to", str(out), "--db", url, "--stores",
                            str(filled.stores_file)])  # fmt: skip
            assert done.returncode == 0, done.stderr
            got = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
            assert isinstance(got, EmailMessage)
            sqlite = filled.digest("north", period)
            assert subject(got) == subject(sqlite) and got["Message-ID"] == sqlite["Message-ID"]
            assert text_of(got) == text_of(sqlite) and html_of(got) == html_of(sqlite)
    finally:
        postgres.drop(url)


# -- which digests are due --------------------------------------------------------------------


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> int:
    return int(datetime(2026, month, day, hour, minute, tzinfo=BERLIN).timestamp())


def due(last_sent: Mapping[str, date | None], now: int, hour: int = 7) -> list[tuple[str, date]]:
    cfg = replace(parse_stores(STORES_TOML).get("north"), digest_hour=hour)
    return [(p.kind, p.first) for p in due_periods(cfg, last_sent, now)]


def test_the_daily_digest_every_morning_and_the_weekly_on_mondays_at_the_digest_hour() -> None:
    sent_before = {"day": date(2026, 11, 21), "week": date(2026, 11, 9)}
    assert due(sent_before, at(23, 6, 59)) == []  # Monday, before 07:00
    assert due(sent_before, at(23, 7, 0)) == [("day", DAY), ("week", WEEK_FIRST)]
    sent = {"day": DAY, "week": WEEK_FIRST}
    assert due(sent, at(23, 7, 5)) == []  # sent: not again
    assert due(sent, at(24, 6, 0)) == []
    assert due(sent, at(24, 7, 0)) == [("day", date(2026, 11, 23))]  # Tuesday: daily only
    # a host down on Monday morning sends the latest of each when it is back, once
    assert due(sent_before, at(24, 9, 30)) == [("day", date(2026, 11, 23)), ("week", WEEK_FIRST)]
    assert due({}, at(23, 7, 0)) == [("day", DAY), ("week", WEEK_FIRST)]  # never sent yet
    # the store's own hour, on its clock
    assert due(sent_before, at(23, 17, 59), hour=18) == []
    assert due(sent_before, at(23, 18, 0), hour=18) == [("day", DAY), ("week", WEEK_FIRST)]
    cfg = parse_stores(STORES_TOML).get("north")
    assert [p.kind for p in due_periods(cfg, {}, at(23, 7), kinds=("week",))] == ["week"]


def test_a_week_is_monday_to_sunday_on_the_stores_clock_through_a_clock_change() -> None:
    cfg = parse_stores(STORES_TOML).get("north")
    # Berlin's clocks went back on Sunday 25 October 2026: that week was an hour longer
    week = period_of(cfg, "week", at(26, 7, month=10))
    assert (week.first, week.last) == (date(2026, 10, 19), date(2026, 10, 25))
    assert week.until - week.since == 7 * 86400 + 3600
    assert week.since == at(19, 0, month=10) and week.until == at(26, 0, month=10)
    day = period_of(cfg, "day", at(26, 0, 30, month=10))
    assert (day.first, day.until - day.since) == (date(2026, 10, 25), 25 * 3600)
    # any time in a week gives the week before it, Sunday night included
    assert period_of(cfg, "week", at(29, 23, 59)).first == WEEK_FIRST
    assert period_of(cfg, "week", at(30, 0, 0)).first == date(2026, 11, 23)
    with pytest.raises(ValueError, match="Monday"):
        period_from(cfg, "week", date(2026, 11, 17))


def test_a_period_not_over_is_refused(filled: Filled) -> None:
    storage = Storage(filled.db)
    try:
        with pytest.raises(ValueError, match="not over"):
            digest_message(storage, load_stores(filled.stores_file), "north", "week",
                           at(22, 12), first=WEEK_FIRST)  # fmt: skip
        msg = digest_message(storage, load_stores(filled.stores_file), "north", "week",
                             at(25, 12), "de", first=WEEK_FIRST)  # fmt: skip
    finally:
        storage.close()
    # a digest sent late (a retry) still covers the week it was kept for
    assert msg["Message-ID"] == "<digest-north-week-2026-11-16@kiosk-host>"
    assert subject(msg).startswith("north: KW 47, ")


# -- the command's mistakes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--store", "nowhere", "--period", "day"], "--store nowhere: no such store"),
        (["--store", "north", "--period", "month"], "--period month: give day or week"),
        (["--store", "north", "--period", "day", "--at", "last monday"],
         "--at last monday: not an ISO time"),
    ],
)  # fmt: skip
def test_a_mistake_is_one_line_and_writes_nothing(
    filled: Filled, tmp_path: Path, args: list[str], said: str
) -> None:
    out = tmp_path / "digest.eml"
    done = run_cli(["digest", *args, "--to", str(out), "--db", str(filled.db), "--stores",
                    str(filled.stores_file)])  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"kiosk-host: {said}") and done.stderr.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_file_that_cannot_be_written_is_one_line(filled: Filled, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "digest.eml"
    done = run_cli(["digest", "--store", "north", "--period", "day", "--to", str(out), "--db",
                    str(filled.db), "--stores", str(filled.stores_file)])  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"kiosk-host: --to {out}: No such file or directory")


def test_json_says_what_was_written(filled: Filled, tmp_path: Path) -> None:
    out = tmp_path / "d.eml"
    done = filled.cli("digest", "--store", "north", "--period", "week", "--at",
                      "2026-11-23T06:00Z", "--to", str(out), "--json")  # fmt: skip
    said = json.loads(done.stdout)
    assert said["message_id"] == "<digest-north-week-2026-11-16@kiosk-host>"
    assert said["to"] == str(out) and said["language"] == "en" and out.stat().st_size > 0


# -- in a browser -------------------------------------------------------------------------------


def expected_background(n: int, top: int) -> str:
    """The dashboard's heatmap scale (dashboard/static/charts.js), on the mail's white."""
    if not n:
        return "rgb(241, 243, 245)"  # #f1f3f5
    alpha = 0.15 + 0.85 * n / top
    r, g, b = (round(255 + (c - 255) * alpha) for c in (192, 57, 43))
    return f"rgb({r}, {g}, {b})"


@pytest.fixture
def page(filled: Filled) -> Iterator[Any]:
    from tests.browser import chromium, tab

    with chromium() as browser, tab(browser, 800, 900) as opened:
        yield opened


@pytest.mark.browser
def test_the_digest_in_chromium_shows_the_figures_and_the_heatmaps_colours(
    filled: Filled, page: Any, tmp_path: Path
) -> None:
    msg = filled.digest("north", "week")
    rows = filled.report("north", "week")
    html = tmp_path / "digest.html"
    html.write_text(html_of(msg), encoding="utf-8")
    page.page.goto(html.as_uri())
    p = page.page
    totals = period_totals(rows)
    assert p.inner_text("#figure-ratings") == str(totals["ratings"])
    assert p.inner_text("#figure-breakdowns") == str(totals["breakdowns"])
    assert p.inner_text("#figure-satisfaction") == f"{round(100 * totals['satisfaction'])}%"
    for r in rows:
        cell = p.locator(f'tr[data-day="{r["day"]}"] td[data-figure="ratings"]')
        assert cell.inner_text() == str(r["ratings"])
    cells = p.eval_on_selector_all(
        "td[data-heat-day]",
        "cells => cells.map(c => [c.dataset.heatDay, c.dataset.hour, +c.dataset.count,"
        " getComputedStyle(c).backgroundColor, c.getBoundingClientRect().width])",
    )
    top = max(n for r in rows for n in r["breakdowns_by_hour"].values())
    assert len(cells) == 7 * 24
    for day, hour, n, colour, width in cells:
        assert n == rows[[r["day"] for r in rows].index(day)]["breakdowns_by_hour"].get(hour, 0)
        assert colour == expected_background(n, top), (day, hour, n)
        assert width >= 12
    strongest = [c for c in cells if c[2] == top]
    assert strongest and all(c[3] == "rgb(192, 57, 43)" for c in strongest)
    # mail clients see it whole: no stylesheet, no script, nothing fetched
    assert p.evaluate("document.styleSheets.length") == 0
    assert p.evaluate("document.querySelectorAll('[class], script, img, link').length") == 0
    assert page.errors == []
