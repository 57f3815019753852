"""End to end: a virtual kiosk, mosquitto, the aggregator and the CLI, as a store would run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kiosk_host.aggregator.receiver import Ingest
from kiosk_host.wire.contract import Contract, Message
from tests.broker import Mosquitto
from tests.virtual_kiosks import KIOSK_HOST, VirtualKiosk, Watcher, wait_until

pytestmark = pytest.mark.e2e  # separate processes end to end: make test runs these


def cli(*args: str) -> Any:
    out = subprocess.run(
        [str(KIOSK_HOST), *args, "--json"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_low_rating_becomes_a_case_that_staff_recover_and_get_credit_for(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    db = str(tmp_path / "kiosk.db")
    ingest = Ingest(mosquitto.url, Path(db), "agg-e2e")
    ingest.start()
    watcher = Watcher(mosquitto.url, "kiosk/v1/e2e/#", "watch-e2e")
    kiosk = VirtualKiosk(mosquitto.url, tmp_path / "kiosk", store="e2e")
    try:
        kiosk.wait_screen("idle")
        kiosk.send("press 2", "press 4")  # a breakdown, and yes to "Let us make it right?"
        kiosk.wait_screen("code")
        code = kiosk.last()[1].split(" | ")[1]

        def case() -> dict[str, Any]:
            found = [
                c for c in cli("cases", "list", "--store", "e2e", "--db", db) if c["code"] == code
            ]
            return found[0] if found else {}

        wait_until(lambda: case().get("state") == "open", 20, f"case {code} open")

        def listed() -> bool:
            retained = watcher.on("/e2e/cases")
            cases = json.loads(retained[-1][1])["cases"] if retained else []
            return any(c["code"] == code for c in cases)

        wait_until(listed, 10, "the retained case list for kiosks and managers")
        fix = ("cases", "fix", code, "--store", "e2e", "--staff", "ana", "--note", "new coffee")
        fixed = cli(*fix, "--db", db)
        assert (fixed["state"], fixed["fixed_by"]) == ("fixed", "ana")

        def listed_as_fixed() -> bool:
            cases = json.loads(watcher.on("/e2e/cases")[-1][1])["cases"]
            return any(c["code"] == code and c["state"] == "fixed" for c in cases)

        wait_until(listed_as_fixed, 10, "the retained case list to show the fix")
        cli("cases", "confirm-on", code, "--store", "e2e", "--device", "till-1",
            "--broker", mosquitto.url, "--db", db)  # fmt: skip
        kiosk.wait_screen("confirm")
        assert kiosk.last()[1].startswith(f"Code {code}: did we make it right?")
        kiosk.send("press 4")  # Yes, wow!
        wait_until(lambda: case().get("state") == "wow", 20, f"case {code} recovered")

        def figures() -> dict[str, Any]:
            retained = watcher.on("/e2e/summary")
            return json.loads(retained[-1][1]) if retained else {}

        wait_until(lambda: figures().get("recovered_in_time") == 1, 10, "the store's summary")
        summary = watcher.on("/e2e/summary")[-1]
        assert isinstance(Contract.load().validate(summary[0], summary[1]), Message)
        assert (figures()["ratings"], figures()["breakdowns"], figures()["open_cases"]) == (1, 1, 0)
    finally:
        kiosk.kill()
        watcher.close()
        ingest.stop()
    for topic, payload, _ in watcher.messages:  # summary, cases, alerts, recognition
        assert isinstance(Contract.load().validate(topic, payload), Message), topic
    assert {t.rsplit("/", 1)[1] for t, _, _ in watcher.messages} >= {
        "summary",
        "cases",
        "alerts",
        "recognition",
    }
    alerts = cli("alerts", "list", "--store", "e2e", "--db", db)
    (opened,) = [a for a in alerts if a["type"] == "case_opened"]
    assert opened["case"] == code
    subprocess.run([str(KIOSK_HOST), "alerts", "ack", opened["id"], "--by", "maria", "--db", db],
                   check=True, timeout=60)  # fmt: skip
    assert cli("alerts", "list", "--store", "e2e", "--db", db)[0]["acked_by"] == "maria"
    (today,) = cli("report", "--store", "e2e", "--period", "day", "--db", db)
    assert (today["ratings"], today["breakdowns"], today["counts"]) == (1, 1, [0, 1, 0, 0])
    board = cli("recognition", "--store", "e2e", "--period", "week", "--db", db)
    (ana,) = [p for p in board["staff"] if p["staff"] == "ana"]
    assert ana["wow_in_time"] == 1
    assert any("Wow" in reason for reason in ana["reasons"])
