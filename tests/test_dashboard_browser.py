"""The dashboard in Chromium while `kiosk-host serve --http` ingests from mosquitto.

The pages render, a kiosk's event appears without a reload, a case counts down, and an alert
is acknowledged with the managers' token and refused without it. Saves the pages' pictures in
build/docs/dashboard/ (`make docs` copies them into docs/dashboard/).
"""

from __future__ import annotations

import json
import math
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
from tests.broker import Mosquitto, free_port
from tests.browser import chromium, tab
from tests.test_dashboard_api import FILLED, STORES_TOML, TOKEN, fill
from tests.test_host_ingest import case_code, publisher, rating
from tests.virtual_kiosks import KIOSK_HOST, Watcher, wait_until

pytestmark = pytest.mark.browser  # Chromium: make test runs these, make check does not

PICTURES = ROOT / "build" / "docs" / "dashboard"  # not docs/: `make docs` refreshes that
WAIT_MS = 30_000


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
    (tmp / "stores.toml").write_text(STORES_TOML)
    (tmp / "token").write_text(TOKEN + "\n")
    db = tmp / "kiosk.db"
    fill(db, load_stores(tmp / "stores.toml"), int(time.time()))
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
    pub = publisher(served.broker, f"dashboard-kiosk-{time.monotonic_ns()}")
    try:
        for payload in events:
            device = json.loads(payload)["device"]
            pub.publish(f"kiosk/v1/north/{device}/event", payload, qos=1).wait_for_publish(10)
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


def test_the_overview_shows_each_stores_day(served: Served, browser: Browser) -> None:
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
        PICTURES.mkdir(parents=True, exist_ok=True)
        t.page.screenshot(path=str(PICTURES / "overview.png"), full_page=True)
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
        PICTURES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(PICTURES / "store.png"), full_page=True)
        assert t.errors == []


def test_acknowledging_an_alert_needs_the_managers_token(served: Served, browser: Browser) -> None:
    alert = next(a for a in served.api("/api/stores/north/alerts")["alerts"] if not a["acked_by"])
    with tab(browser) as t:
        page = t.page
        open_store(page, served, "north")
        item = page.locator(f'#alerts li[data-key="{alert["id"]}"]')
        status = item.locator(".result")

        def access(token: str) -> None:
            page.locator("#access summary").click()
            page.fill("#token", token)
            page.fill("#who", "maria")
            page.click("#token-save")
            page.locator("#access summary").click()

        access("")
        item.locator(".ack").click()
        expect(status).to_contain_text("Refused (401)", timeout=WAIT_MS)
        access("not-the-managers-token")
        expect(page.locator("#token-state")).to_contain_text("Refused (403)", timeout=WAIT_MS)
        item.locator(".ack").click()
        expect(status).to_contain_text("Refused (403)", timeout=WAIT_MS)
        (same,) = [a for a in served.api("/api/stores/north/alerts")["alerts"]
                   if a["id"] == alert["id"]]  # fmt: skip
        assert same["acked_by"] is None  # nothing changed

        access(TOKEN)
        expect(page.locator("#token-state")).to_have_text("Token accepted: changes are allowed.")
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
