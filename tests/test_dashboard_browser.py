"""The dashboard in Chromium while `kiosk-host serve --http` ingests from mosquitto.

The pages render, a kiosk's event appears without a reload, a case counts down, overdue cases
stay listed first, a case is fixed by a name from the roster and closed, the buttons wait for
the managers' token, kiosks that are down show so, the alerts and kiosk tables lay out whole,
and the store's page fits a phone. Saves the pages' pictures in build/docs/dashboard/
(`make docs` copies them into docs/dashboard/).
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from kiosk_host.rules.stores import load_stores, parse_stores
from kiosk_host.shipped import ROOT
from kiosk_host.storage.sqlite import REFUSED, DeviceStatus, Storage
from tests.broker import Mosquitto, free_port
from tests.browser import chromium, tab
from tests.test_dashboard_api import FILLED, STORES_TOML, TOKEN, fill
from tests.test_host_ingest import case_code, publisher, rating
from tests.virtual_kiosks import KIOSK_HOST, Watcher, wait_until

pytestmark = pytest.mark.browser  # Chromium: make test runs these, make check does not

PICTURES = ROOT / "build" / "docs" / "dashboard"  # not docs/: `make docs` refreshes that
WAIT_MS = 30_000
PHONE = (390, 844)  # an everyday phone's viewport, in CSS pixels
# North's staff: Ana and Ben by name, dora only on the roster (of a station no kiosk rates at,
# so that every figure stays the API tests' own).
STORES = (
    STORES_TOML.replace('ana = "Ana"\n', 'ana = "Ana"\nben = "Ben Okafor"\n')
    + """
[[stores.north.roster]]
station = "back-office"
staff = "dora"
start = "00:00"
end = "24:00"
"""
)
ROSTER = [("ana", "Ana"), ("ben", "Ben Okafor"), ("dora", "dora")]  # by name
RED = "rgb(192, 57, 43)"  # --bad


@dataclass
class Served:
    url: str
    db: Path
    broker: Mosquitto

    def api(self, path: str) -> Any:
        r = httpx.get(self.url + path, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mosquitto: Mosquitto) -> Iterator[Served]:
    """`kiosk-host serve --http` over a database with nine days of three stores in it."""
    tmp = tmp_path_factory.mktemp("served")
    assert "Ben Okafor" in STORES
    (tmp / "stores.toml").write_text(STORES)
    (tmp / "token").write_text(TOKEN + "\n")
    db = tmp / "kiosk.db"
    fill(str(db), load_stores(tmp / "stores.toml"), int(time.time()))
    url = f"http://127.0.0.1:{free_port()}"
    watcher = Watcher(mosquitto.url, "kiosk/v1/_host/status", "watch-dashboard-host")
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(KIOSK_HOST), "serve", "--broker", mosquitto.url, "--db", str(db),
         "--stores", str(tmp / "stores.toml"), "--client-id", "agg-dashboard",
         "--http", url.removeprefix("http://"), "--token-file", str(tmp / "token")],
        stdout=log, stderr=log,
    )  # fmt: skip

    def up() -> bool:
        online = any(b'"online"' in p for _, p, _ in watcher.messages)
        try:
            return online and httpx.get(url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 60, "the aggregator and its dashboard")
        yield Served(url, db, mosquitto)
    finally:
        watcher.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def publish(served: Served, *events: bytes) -> None:
    messages = [(f"kiosk/v1/north/{json.loads(p)['device']}/event", p) for p in events]
    publish_to(served, messages)


def publish_to(served: Served, messages: list[tuple[str, bytes]]) -> None:
    pub = publisher(served.broker, f"dashboard-kiosk-{time.monotonic_ns()}")
    try:
        for topic, payload in messages:
            pub.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        pub.disconnect()  # first: it wakes paho's loop, which then ends at once
        pub.loop_stop()


def now_event(payload: bytes) -> bytes:
    """A kiosk's event as of now (the helpers' events are dated 2025)."""
    return json.dumps({**json.loads(payload), "ts": int(time.time())}).encode()


def open_store(page: Page, served: Served, store: str) -> dict[str, Any]:
    summary: dict[str, Any] = served.api(f"/api/stores/{store}/summary")
    page.goto(f"{served.url}/stores/{store}")
    expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    expect(page.locator("#f-ratings")).to_have_text(str(summary["ratings"]), timeout=WAIT_MS)
    return summary


def sign_in(page: Page, token: str, who: str = "maria") -> None:
    """Enter the token and a name under Manager access, as a manager does."""
    page.locator("#access summary").click()
    page.fill("#token", token)
    page.fill("#who", who)
    page.click("#token-save")
    page.locator("#access summary").click()


def case_row(page: Page, code: str) -> Any:
    return page.locator(f'#cases tr[data-key="{code}"]')


def find_case(page: Page, code: str) -> Any:
    """The case's row, found by typing its code, as staff do (the list shows its first rows)."""
    page.locator("#find-code").fill(code)
    row = case_row(page, code)
    expect(row).to_be_visible(timeout=WAIT_MS)
    return row


def test_the_overview_shows_each_stores_day(served: Served, browser: Browser) -> None:
    # A case whose window closed a second ago: north has a case overdue today at any hour.
    at = int(time.time()) - 86400 - 1
    code = case_code("till-5", 1)
    follow_up = {"v": 1, "kind": "follow_up", "store": "north", "device": "till-5",
                 "seq": 2, "ts": at + 10, "up_ms": 2000, "rating_seq": 1, "accepted": True,
                 "code": code}  # fmt: skip
    publish(served, json.dumps({**json.loads(rating("north", "till-5", 1, score=1)), "ts": at})
            .encode(), json.dumps(follow_up).encode())  # fmt: skip
    wait_until(
        lambda: served.api("/api/stores/north/summary")["overdue_cases"] > 0, 30, "an overdue case"
    )
    with tab(browser, height=700) as t:
        t.page.goto(served.url + "/")
        cards = t.page.locator(".store-card")
        # a card for every store in stores.toml and every store with data
        stores = set(parse_stores(STORES_TOML).configs) | set(FILLED)
        expect(cards).to_have_count(len(stores), timeout=WAIT_MS)
        for row in served.api("/api/stores")["stores"]:
            card = t.page.locator(f'.store-card[data-store="{row["store"]}"]')
            share = row["satisfaction"]  # shown as the page's Math.round does
            share = "\u2013" if share is None else f"{math.floor(share * 100 + 0.5)}%"
            expect(card.locator(".big")).to_have_text(share)
            expect(card.locator(".kiosks")).to_contain_text(f"{row['kiosks']['online']} online")
            for device in row["kiosks_down"]:  # the kiosks down are named
                expect(card).to_contain_text(device)
            overdue = card.locator(".cases a.overdue")
            if row["overdue_cases"]:
                expect(overdue).to_have_text(f"{row['overdue_cases']} overdue")
                expect(overdue).to_have_attribute("href", f"/stores/{row['store']}#cases")
            else:
                expect(overdue).to_have_count(0)
        assert any(r["kiosks_down"] for r in served.api("/api/stores")["stores"])
        PICTURES.mkdir(parents=True, exist_ok=True)
        t.page.screenshot(path=str(PICTURES / "overview.png"), full_page=True)

        # "N overdue" leads to the store's case list, overdue cases first
        t.page.locator('.store-card[data-store="north"] a.overdue').click()
        t.page.wait_for_url(f"{served.url}/stores/north#cases")
        expect(t.page.locator("#cases tbody tr").first).to_have_attribute(
            "data-overdue", "yes", timeout=WAIT_MS
        )
        expect(t.page.locator("#cases-card")).to_be_in_viewport()
        assert t.errors == []


def test_a_kiosks_event_appears_live_and_its_case_counts_down(
    served: Served, browser: Browser
) -> None:
    with tab(browser) as t:
        page = t.page
        before = open_store(page, served, "north")
        expect(page.locator("#heatmap rect.cell")).to_have_count(7 * 24)
        expect(page.locator("#by-hour rect.hour")).to_have_count(24)
        waiting = served.api("/api/stores/north/cases")["cases"]
        expect(page.locator("#cases tbody tr")).to_have_count(len(waiting))
        page.evaluate("window.notReloaded = true")

        code = case_code("till-7", 1)
        low = now_event(rating("north", "till-7", 1, score=1))
        follow_up = {"v": 1, "kind": "follow_up", "store": "north", "device": "till-7",
                     "seq": 2, "ts": int(time.time()), "up_ms": 2000, "rating_seq": 1,
                     "accepted": True, "code": code}  # fmt: skip
        publish(served, low, json.dumps(follow_up).encode())

        expect(page.locator("#f-ratings")).to_have_text(str(before["ratings"] + 1), timeout=WAIT_MS)
        expect(page.locator("#f-breakdowns")).to_have_text(str(before["breakdowns"] + 1))
        row = page.locator(f'#cases tr[data-key="{code}"]')
        expect(row.locator(".state")).to_have_text("open", timeout=WAIT_MS)
        expect(page.locator("#f-open")).to_have_text(str(before["open_cases"] + 1))
        assert page.evaluate("window.notReloaded") is True

        countdown = row.locator(".countdown")
        expect(countdown).to_contain_text("left")
        first = int(countdown.get_attribute("data-left") or "0")
        assert 23 * 3600 < first <= 24 * 3600
        page.wait_for_function(
            "([code, first]) => Number(document.querySelector("
            "`#cases tr[data-key='${code}'] .countdown`).dataset.left) < first",
            arg=[code, first],
            timeout=WAIT_MS,
        )
        expect(page.locator(f'#alerts li:has-text("{code}")').first).to_be_visible(timeout=WAIT_MS)
        sign_in(page, TOKEN)  # the picture shows the page as a manager uses it
        expect(page.locator("body")).to_have_attribute("data-access", "ok", timeout=WAIT_MS)
        PICTURES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(PICTURES / "store.png"), full_page=True)
        assert t.errors == []


def test_without_the_token_the_buttons_say_how_to_sign_in(served: Served, browser: Browser) -> None:
    alert = next(a for a in served.api("/api/stores/north/alerts")["alerts"] if not a["acked_by"])
    with tab(browser) as t:
        page = t.page
        open_store(page, served, "north")
        item = page.locator(f'#alerts li[data-key="{alert["id"]}"]')
        status = item.locator(".result")
        hints = page.locator(".sign-in")
        buttons = page.locator("button.needs-token")
        expect(page.locator("#cases tbody tr").first).to_be_visible(timeout=WAIT_MS)

        def all_disabled(disabled: bool) -> bool:
            flags = buttons.evaluate_all("nodes => nodes.map((b) => b.disabled)")
            return bool(flags) and all(f is disabled for f in flags)

        # no token in this browser: nothing looks active, and each panel says how to sign in
        expect(page.locator("body")).to_have_attribute("data-access", "none", timeout=WAIT_MS)
        assert all_disabled(True)
        expect(hints).to_have_count(2)
        for hint in hints.all():
            expect(hint).to_be_visible()
            expect(hint).to_contain_text("open Manager access (top right)")
        expect(item.locator(".ack")).to_be_disabled()
        item.locator(".ack").click(force=True)  # a disabled button sends nothing
        expect(status).to_have_text("")
        hints.first.locator("button.link").click()  # "Sign in" opens the token form
        expect(page.locator("#token")).to_be_focused()
        page.locator("#access summary").click()

        sign_in(page, "not-the-managers-token")
        expect(page.locator("#token-state")).to_contain_text("Refused (403)", timeout=WAIT_MS)
        expect(page.locator("body")).to_have_attribute("data-access", "refused")
        expect(hints.first).to_contain_text("not this dashboard's")
        assert all_disabled(True)
        (same,) = [a for a in served.api("/api/stores/north/alerts")["alerts"]
                   if a["id"] == alert["id"]]  # fmt: skip
        assert same["acked_by"] is None  # nothing changed

        sign_in(page, TOKEN)
        expect(page.locator("#token-state")).to_have_text("Token accepted: changes are allowed.")
        expect(page.locator("body")).to_have_attribute("data-access", "ok")
        for hint in hints.all():
            expect(hint).to_be_hidden()
        assert all_disabled(False)
        item.locator(".ack").click()
        expect(status).to_have_text("Acknowledged.", timeout=WAIT_MS)
        expect(item.locator(".done")).to_have_text("Acknowledged by maria", timeout=WAIT_MS)
        expect(item.locator(".ack")).to_be_hidden()
        cli = subprocess.run(
            [str(KIOSK_HOST), "alerts", "list", "--store", "north", "--json", "--db",
             str(served.db)], capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        (acked,) = [a for a in json.loads(cli.stdout) if a["id"] == alert["id"]]
        assert acked["acked_by"] == "maria"
        assert t.errors == []


def test_a_case_is_fixed_by_a_name_from_the_roster_and_then_waits_for_the_customer(
    served: Served, browser: Browser
) -> None:
    case = next(c for c in served.api("/api/stores/north/cases")["cases"]
                if c["state"] == "open" and not c["overdue"])  # fmt: skip
    with tab(browser) as t:
        page = t.page
        open_store(page, served, "north")
        sign_in(page, TOKEN)
        row = find_case(page, case["code"])
        picker = row.locator("select.staff")
        expect(picker).to_be_enabled(timeout=WAIT_MS)
        options = picker.locator("option").evaluate_all(
            "os => os.map((o) => [o.value, o.textContent])"
        )
        assert options[1:-1] == [list(p) for p in ROSTER]  # names shown, ids sent
        assert options[0][0] == "" and options[-1][0] == "*"  # nobody yet; someone else
        expect(row.locator("input.staff-id")).to_be_hidden()

        row.locator(".do-fix").click()  # nobody chosen: nothing is sent
        expect(row.locator(".result")).to_have_text("Choose who fixed it first.")
        picker.select_option(label="Ben Okafor")
        row.locator("input.note").fill("new cup, on the house")
        row.locator(".do-fix").click()
        expect(row.locator(".result")).to_have_text(
            "Marked fixed by Ben Okafor: now waiting for the customer's verdict on the kiosk.",
            timeout=WAIT_MS,
        )
        expect(row.locator(".state")).to_have_text("fixed", timeout=WAIT_MS)  # the live update
        expect(row.locator(".verdict")).to_have_text(
            "Fixed: now waiting for the customer's verdict on the kiosk."
        )
        expect(row.locator("form.fix")).to_be_hidden()
        expect(row.locator(".fixed-by")).to_contain_text("Ben Okafor: new cup, on the house")
        (fixed,) = [c for c in served.api("/api/stores/north/cases")["cases"]
                    if c["code"] == case["code"]]  # fmt: skip
        assert (fixed["state"], fixed["fixed_by"]) == ("fixed", "ben")

        # someone not on the roster: their id is typed, in any case
        other = next(c for c in served.api("/api/stores/north/cases")["cases"]
                     if c["state"] == "open" and not c["overdue"])  # fmt: skip
        row = find_case(page, other["code"])
        row.locator("select.staff").select_option("*")
        expect(row.locator("input.staff-id")).to_be_focused()
        row.locator("input.staff-id").fill("Eli")
        row.locator(".do-fix").click()
        expect(row.locator(".state")).to_have_text("fixed", timeout=WAIT_MS)
        (typed,) = [c for c in served.api("/api/stores/north/cases")["cases"]
                    if c["code"] == other["code"]]  # fmt: skip
        assert typed["fixed_by"] == "eli"
        assert t.errors == []


def test_a_code_is_found_in_any_case(served: Served, browser: Browser) -> None:
    listed = served.api("/api/stores/north/cases")["cases"]
    code = listed[-1]["code"]
    with tab(browser) as t:
        page = t.page
        open_store(page, served, "north")
        rows = page.locator("#cases tbody tr")
        expect(rows).to_have_count(len(listed), timeout=WAIT_MS)
        page.locator("#find-code").press_sequentially(code.lower())
        expect(page.locator("#find-code")).to_have_value(code)
        expect(page.locator("#cases tbody tr:visible")).to_have_count(1)
        expect(case_row(page, code)).to_have_class(re.compile(r"\bfound\b"))
        expect(page.locator("#find-note")).to_have_text(f"1 case with a code starting {code}.")
        page.locator("#find-code").fill("zz")
        expect(page.locator("#cases tbody tr:visible")).to_have_count(0)
        expect(page.locator("#find-note")).to_contain_text("No listed case")
        page.locator("#find-code").fill("")
        shown = page.locator("#cases tbody tr:visible")
        expect(shown).to_have_count(min(len(listed), 12))  # the first rows, then "Show all"
        assert len(listed) > 12
        page.locator("#cases-more").click()
        expect(shown).to_have_count(len(listed))
        assert t.errors == []


def overdue_text(seconds: int) -> str:
    """How the page words a time overdue (Kiosk.span in common.js)."""
    m, h = seconds // 60, seconds // 3600
    if seconds < 60:
        return f"{seconds} s"
    if m < 60:
        return f"{m} min"
    if h < 48:
        return f"{h} h {m % 60} min" if m % 60 else f"{h} h"
    return f"{h // 24} days {h % 24} h" if h % 24 else f"{h // 24} days"


def test_overdue_cases_stay_listed_first_in_red_with_their_age(
    served: Served, browser: Browser
) -> None:
    listed = served.api("/api/stores/north/cases")["cases"]
    overdue = sorted((c for c in listed if c["overdue"]), key=lambda c: c["deadline"])
    assert {c["state"] for c in overdue} >= {"breached"}, "the fill leaves breached cases"
    with tab(browser) as t:
        page = t.page
        open_store(page, served, "north")
        rows = page.locator("#cases tbody tr")
        expect(rows).to_have_count(len(listed), timeout=WAIT_MS)
        keys = rows.evaluate_all("rs => rs.map((r) => [r.dataset.key, r.dataset.overdue])")
        assert keys[: len(overdue)] == [[c["code"], "yes"] for c in overdue]  # first, oldest first
        assert all(flag == "no" for _, flag in keys[len(overdue) :])
        expect(page.locator("#cases-empty")).to_be_hidden()
        expect(page.locator("#cases-note")).to_contain_text(f"{len(overdue)} overdue")

        first = case_row(page, overdue[0]["code"])
        countdown = first.locator(".countdown")
        expect(countdown).to_have_text(re.compile(r"^overdue by \d+ (s|min|h|days)"))
        assert countdown.evaluate("(n) => getComputedStyle(n).color") == RED
        assert first.locator(".code").evaluate("(n) => getComputedStyle(n).color") == RED
        # the age is the page's own clock against the case's deadline and rating time
        shown = countdown.evaluate(
            "(n) => [n.textContent, -Number(n.dataset.left), n.nextElementSibling.textContent,"
            " Number(n.dataset.opened) - Number(n.dataset.deadline)]"
        )
        text, late_s, age, opened_minus_deadline = shown
        assert text == f"overdue by {overdue_text(late_s)}"
        opened_s = late_s - opened_minus_deadline
        assert opened_s > late_s and age.startswith("opened ") and age.endswith(" ago")
        if 3600 <= opened_s < 172800:
            assert age == f"opened {opened_s // 3600} h ago"

        # a late fix, by a name from the roster
        sign_in(page, TOKEN)
        late = next(c for c in overdue if c["state"] == "breached")
        row = find_case(page, late["code"])
        expect(row.locator(".do-fix")).to_have_text("Mark fixed (late)")
        expect(row.locator(".do-fix")).to_be_enabled(timeout=WAIT_MS)
        row.locator("select.staff").select_option(label="Ana")
        row.locator(".do-fix").click()
        expect(row.locator(".badge.late")).to_have_text("fixed late", timeout=WAIT_MS)
        expect(row).to_have_attribute("data-overdue", "yes")  # listed until someone closes it
        (fixed,) = [c for c in served.api("/api/stores/north/cases")["cases"]
                    if c["code"] == late["code"]]  # fmt: skip
        assert (fixed["fixed_by"], fixed["late"]) == ("ana", True)

        # closing takes it off the list
        row.locator("details.close summary").click()
        row.locator(".close-note").fill("called the customer, refunded")
        row.locator(".do-close").click()
        expect(case_row(page, late["code"])).to_have_count(0, timeout=WAIT_MS)
        assert late["code"] not in [
            c["code"] for c in served.api("/api/stores/north/cases")["cases"]
        ]
        assert t.errors == []


def test_kiosks_offline_or_refused_are_not_shown_green(served: Served, browser: Browser) -> None:
    # till-8 and till-9 connect (online), then the broker refuses till-8 (as its log tells the
    # aggregator); till-3's last will said offline
    online = {"v": 1, "state": "online", "fw": "1.4.2", "board": "esp32-devkitc",
              "ts": int(time.time()), "up_ms": 4000, "config_error": None}  # fmt: skip
    status = json.dumps(online).encode()
    publish_to(served, [(f"kiosk/v1/north/{d}/status", status) for d in ("till-8", "till-9")])

    def listed() -> set[str]:
        return {d["device"] for d in served.api("/api/stores/north/devices")["devices"]}

    wait_until(lambda: {"till-8", "till-9"} <= listed(), 30, "till-8 and till-9 stored")
    storage = Storage(served.db)
    try:
        refusal = DeviceStatus("north", "till-8", {"state": REFUSED}, int(time.time()) + 1, False)
        failed = {"id": "r1", "version": "0.2.0", "state": "ota_failed", "want": None,
                  "reason": "not online after 2 boots", "progress": [20, 20]}  # fmt: skip
        rolled_back = DeviceStatus("north", "till-9", {**online, "ota": failed}, int(time.time()),
                                   False)  # fmt: skip
        storage.write_batch([], [], [refusal, rolled_back])
    finally:
        storage.close()
    devices = served.api("/api/stores/north/devices")["devices"]
    assert {d["health"] for d in devices} == {"online", "offline", "refused"}
    with tab(browser) as t:
        page = t.page
        open_store(page, served, "north")
        expect(page.locator("#devices tbody tr")).to_have_count(len(devices), timeout=WAIT_MS)
        for d in devices:
            row = page.locator(f'#devices tr[data-key="{d["device"]}"]')
            badge = row.locator(".badge.health")
            expect(badge).to_have_text(d["health"])
            r, g, b = map(int, re.findall(r"\d+", badge.evaluate(
                "(n) => getComputedStyle(n).backgroundColor"))[:3])  # fmt: skip
            greenish = g > max(r, b) + 8  # a green hue, pale or not
            assert greenish == (d["health"] == "online"), (d["device"], d["health"], (r, g, b))
            if d["health"] != "online" and d["late_s"]:
                expect(row.locator(".late-by")).to_contain_text("late")
            # the update column: empty without one, a failed one in the problem colour
            expect(row.locator(".update")).to_have_text(d["update"] or "")
            assert ("bad" in row.locator(".update").get_attribute("class").split()) == (
                d["device"] == "till-9"
            )
        assert d["update"] == "ota_failed: not online after 2 boots"  # till-9, listed last
        assert t.errors == []


def test_the_kiosk_tables_columns_align(served: Served, browser: Browser) -> None:
    with tab(browser) as t:
        page = t.page
        open_store(page, served, "north")
        expect(page.locator("#devices tbody tr").first).to_be_visible(timeout=WAIT_MS)
        # each cell: a table cell, where it starts and how wide, where its text starts, and
        # its top and bottom (one line per row)
        columns = page.locator("#devices").evaluate(
            """(table) => {
                const text = (n) => {
                    if (!n.textContent) return null; // an empty update cell: no text to place
                    const range = document.createRange();
                    range.selectNodeContents(n);
                    return range.getBoundingClientRect().left;
                };
                const box = (n) => {
                    const r = n.getBoundingClientRect();
                    return [getComputedStyle(n).display, r.left, r.width, text(n), r.top, r.bottom];
                };
                const head = Array.from(table.tHead.rows[0].cells, box);
                const rows = Array.from(table.tBodies[0].rows, (r) => Array.from(r.cells, box));
                return { head, rows };
            }"""
        )
        head = columns["head"]
        assert len(head) == 11 and columns["rows"]
        for cells in columns["rows"]:
            assert len(cells) == len(head)
            assert {c[0] for c in cells} == {"table-cell"}, cells
            for cell, heading in zip(cells, head, strict=True):
                left, width = (abs(cell[i] - heading[i]) for i in (1, 2))
                text = 0 if cell[3] is None else abs(cell[3] - heading[3])
                assert left < 1 and width < 1 and text < 1, (cell, heading)
            assert max(c[4] for c in cells) - min(c[4] for c in cells) < 1, cells  # one top
            assert max(c[5] for c in cells) - min(c[5] for c in cells) < 1, cells  # one bottom
        assert t.errors == []


CLIPPED = """(card) => {
    // Every alert shown lies whole inside the panel, and no box between them clips or scrolls.
    const inside = (a, b) => a.top >= b.top - 0.5 && a.bottom <= b.bottom + 0.5
        && a.left >= b.left - 0.5 && a.right <= b.right + 0.5;
    const outer = card.getBoundingClientRect();
    const bad = [];
    for (const item of card.querySelectorAll(".alert")) {
        if (item.hidden) continue;
        if (!inside(item.getBoundingClientRect(), outer)) bad.push(item.dataset.key);
        for (let n = item.parentElement; n && n !== card.parentElement; n = n.parentElement) {
            if (n.scrollHeight > n.clientHeight + 1) bad.push(`${n.id || n.className} clips`);
        }
    }
    return bad;
}"""


def test_alert_cards_are_never_cut_in_half(served: Served, browser: Browser) -> None:
    alerts = served.api("/api/stores/north/alerts")["alerts"]
    assert len(alerts) > 6  # more than the panel shows at first
    with tab(browser) as t:
        page = t.page
        open_store(page, served, "north")
        card = page.locator("#alerts-card")
        shown = page.locator("#alerts > li:visible")
        expect(shown).to_have_count(6, timeout=WAIT_MS)
        assert card.evaluate(CLIPPED) == []
        more = page.locator("#alerts-more")
        expect(more).to_have_text(f"Show all {len(alerts)} alerts")
        more.click()
        expect(shown).to_have_count(len(alerts))
        assert card.evaluate(CLIPPED) == []
        more.click()
        expect(shown).to_have_count(6)
        assert t.errors == []


def test_the_store_page_names_next_weeks_riskiest_hours(served: Served, browser: Browser) -> None:
    with tab(browser, *PHONE) as t:
        page = t.page
        open_store(page, served, "north")
        top = served.api("/api/stores/north/risk")["top"]
        assert len(top) == 3
        items = page.locator("#risk li")
        expect(items).to_have_count(3, timeout=WAIT_MS)
        expect(items).to_have_text([t["reason"] for t in top])
        assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")
        assert t.errors == []


def test_the_store_page_fits_a_phone(served: Served, browser: Browser) -> None:
    with tab(browser, *PHONE) as t:
        page = t.page
        open_store(page, served, "north")
        expect(page.locator("#heatmap rect.cell")).to_have_count(7 * 24, timeout=WAIT_MS)
        expect(page.locator("#devices tbody tr").first).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#cases tbody tr").first).to_be_visible(timeout=WAIT_MS)
        assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")
        # the heatmap keeps readable cells and scrolls sideways inside its own box
        box = page.locator("#heatmap-box").evaluate(
            """(box) => ({ overflow: getComputedStyle(box).overflowX, scroll: box.scrollWidth,
                client: box.clientWidth, right: box.getBoundingClientRect().right,
                cell: box.querySelector("rect.cell").getBoundingClientRect().width })"""
        )
        assert box["overflow"] in ("auto", "scroll") and box["scroll"] > box["client"]
        assert box["right"] <= PHONE[0] and box["cell"] >= 18
        # the tables fold into one card per row: every cell within the screen, with its heading
        for table in ("#cases", "#devices"):
            cells = page.locator(f"{table} tbody td").evaluate_all(
                """(tds) => tds.filter((td) => td.offsetParent).map((td) =>
                    [td.getBoundingClientRect().right, td.dataset.label])"""
            )
            assert cells and all(right <= PHONE[0] for right, _ in cells), table
            assert all(label is not None for _, label in cells)
        # the token form opens within the screen too
        page.locator("#access summary").click()
        form = page.locator("#token-form").bounding_box()
        assert form is not None and form["x"] >= 0 and form["x"] + form["width"] <= PHONE[0]
        page.locator("#access summary").click()
        PICTURES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(PICTURES / "store-phone.png"), full_page=True)
        assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")
        assert t.errors == []
