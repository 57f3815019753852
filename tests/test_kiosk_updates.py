"""What a kiosk's status says of its firmware update, kept and shown: `takes` and the `ota`
member stored as the latest status says them on both back-ends, ingested through the
contract, and listed by the dashboard's API and `kiosk-host devices` with the update in words."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from kiosk_host.aggregator.engine import Engine
from kiosk_host.aggregator.views import update_text
from kiosk_host.dashboard.server import serve_dashboard
from kiosk_host.rules.stores import parse_stores
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.sqlite import MIGRATIONS, DeviceStatus, Storage
from tests.cli_run import run_cli
from tests.test_dashboard_api import STORES_TOML, store_messages

NOW = 1_763_900_000
VERSION = "0.1.0+1a2b3c4d"
ONLINE = {"v": 1, "state": "online", "fw": "0.1.0", "board": "esp32-devkitc", "ts": NOW,
          "up_ms": 5000, "config_error": None}  # fmt: skip


def ota(state: str, **over: Any) -> dict[str, Any]:
    """A status's `ota` member in `state`, with what that state carries."""
    member = {"id": "r18f2a9c", "version": VERSION, "state": state, "want": None,
              "reason": None, "progress": [20, 20]}  # fmt: skip
    return {**member, **over}


# Each kiosk of the store page: its update, and how the update column words it.
UPDATES: dict[str, tuple[dict[str, Any] | None, str | None]] = {
    "till-1": (ota("receiving", want=[0, 9], progress=[9, 20]), f"{VERSION} 45 %"),
    "till-2": (ota("staged"), f"{VERSION} staged"),
    "till-3": (ota("done"), f"{VERSION} done"),
    "till-4": (ota("ota_failed", reason="crashed: ImportError: no module named 'x'",
                   progress=[20, 20]), "ota_failed: crashed: ImportError: no module named 'x'"),
    "till-5": (ota("refused", reason="chunk 0/3: bad signature", want=[0, 3], progress=[3, 20]),
               "refused: chunk 0/3: bad signature"),
    "till-6": (None, None),
}  # fmt: skip


def status(member: dict[str, Any] | None, takes: str | None = "mpy", **over: Any) -> bytes:
    """An online status as the kiosk publishes it, with `takes` and `ota` when given."""
    extra = {k: v for k, v in (("takes", takes), ("ota", member)) if v is not None}
    return json.dumps({**ONLINE, **extra, **over}).encode()


def row(storage: Any, device: str) -> dict[str, Any]:
    (found,) = [d for d in storage.devices("north") if d["device"] == device]
    return found


def test_the_latest_status_says_what_is_stored_of_an_update(store_url: str) -> None:
    s = open_storage(store_url)
    try:

        def said(payload: dict[str, Any], at: int) -> dict[str, Any]:
            s.write_batch([], [], [DeviceStatus("north", "till-1", payload, at, False)])
            return row(s, "till-1")

        staged = ota("staged")
        first = said({**ONLINE, "takes": "py", "ota": staged}, NOW)
        assert (first["takes"], first["ota"], first["fw"]) == ("py", staged, "0.1.0")
        receiving = ota("receiving", want=[1, 0], progress=[4, 7])
        assert said({**ONLINE, "takes": "py", "ota": receiving}, NOW + 1)["ota"] == receiving
        # the last will says nothing of the kiosk's firmware: what it last said stays
        will = said({"v": 1, "state": "offline"}, NOW + 2)
        assert (will["state"], will["takes"], will["ota"]) == ("offline", "py", receiving)
        # older firmware says neither: nothing is kept of the update
        old = said(dict(ONLINE), NOW + 3)
        assert (old["state"], old["takes"], old["ota"]) == ("online", None, None)
        # a row its telemetry made before any status has neither
        telemetry = {"v": 1, "ts": NOW, "up_ms": 1, "heap_free": 1, "rssi": None, "outbox": 0,
                     "dropped": 0, "suppressed": 0, "config_error": None}  # fmt: skip
        s.write_batch([], [], [DeviceStatus("north", "till-2", telemetry, NOW, True)])
        assert (row(s, "till-2")["takes"], row(s, "till-2")["ota"]) == (None, None)
    finally:
        s.close()


def test_a_database_of_the_previous_schema_gains_the_update_columns(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.db"
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:-1], start=1):
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute("INSERT INTO devices (store, device, state, fw) VALUES ('north', 'till-1',"
               " 'online', '0.1.0')")  # fmt: skip
    db.close()
    s = Storage(path)
    try:
        assert s.version() == len(MIGRATIONS)
        kept = row(s, "till-1")
        assert (kept["fw"], kept["takes"], kept["ota"]) == ("0.1.0", None, None)
        done = DeviceStatus("north", "till-1", {**ONLINE, "ota": ota("done")}, NOW, False)
        s.write_batch([], [], [done])
        assert row(s, "till-1")["ota"] == ota("done")
    finally:
        s.close()


def test_statuses_with_an_update_are_ingested_and_shown(store_url: str, tmp_path: Path) -> None:
    stores = parse_stores(STORES_TOML)
    s = open_storage(store_url)
    try:
        messages = [(f"kiosk/v1/north/{device}/status", status(member))
                    for device, (member, _) in UPDATES.items()]  # fmt: skip
        store_messages(s, Engine(stores, now=lambda: NOW), messages, NOW)
        assert s.dead_letters() == []  # every member passed the contract
        assert {d["device"]: d["ota"] for d in s.devices("north")} == {
            device: member for device, (member, _) in UPDATES.items()
        }
    finally:
        s.close()
    server = serve_dashboard("127.0.0.1:0", store_url, stores, None, now=lambda: NOW + 10)
    try:
        r = httpx.get(f"{server.url}/api/stores/north/devices", timeout=30)
        assert r.status_code == 200, r.text
        shown = {d["device"]: d for d in r.json()["devices"]}
    finally:
        server.stop()
    assert set(shown) == set(UPDATES)
    for device, (member, words) in UPDATES.items():
        d = shown[device]
        assert (d["ota"], d["takes"], d["update"]) == (member, "mpy", words), device
    stores_file = tmp_path / "stores.toml"
    stores_file.write_text(STORES_TOML)
    out = run_cli(["devices", "--store", "north", "--db", store_url, "--stores",
                   str(stores_file), "--devices-dir", str(tmp_path / "none")])  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = {line.split(":", 1)[0]: line for line in out.stdout.splitlines()}
    for device, (_, words) in UPDATES.items():
        line = lines[f"north/{device}"]
        assert (f"; update {words}" in line) == (words is not None), line
        assert line.endswith(f"; update {words}") or words is None, line


def test_the_update_in_words_rounds_down_and_names_any_state() -> None:
    assert update_text(None) is None
    assert update_text(ota("receiving", progress=[19, 20])) == f"{VERSION} 95 %"
    assert update_text(ota("receiving", progress=[0, 0])) == f"{VERSION} 0 %"
    assert update_text(ota("receiving", progress=None)) == f"{VERSION} receiving"
    assert update_text(ota("refused", reason=None)) == "refused"
