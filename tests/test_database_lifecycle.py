"""The database from start to restore: checked when opened, refused when newer or damaged,
backed up while `serve` writes to it, put back only when nothing serves it; and `serve` itself
stopping cleanly, saying why it cannot go on, and keeping its broker password out of `ps`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.storage import sqlite as storage_module
from kiosk_host.storage.sqlite import EventRow, Storage, StorageError
from kiosk_host.wire.contract import canonical
from tests.broker import Mosquitto
from tests.test_host_ingest import rating
from tests.virtual_kiosks import KIOSK_HOST, aggregator_online, wait_until

SECRET = "s3cret-broker-password-in-the-environment"


def kiosk_host(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KIOSK_HOST), *argv], capture_output=True, text=True, timeout=60)


def filled(db: Path, n: int) -> Path:
    storage = Storage(db)
    rows = []
    for seq in range(1, n + 1):
        p = json.loads(rating("s1", "till-1", seq, 1 + seq % 4))
        p["ts"] = int(time.time()) - 3600 + seq % 3000
        rows.append(EventRow("s1", "till-1", seq, "rating", p["ts"], p["ts"], p["ts"], False, p,
                             canonical(p)))  # fmt: skip
    storage.write_batch(rows)
    storage.close()
    return db


# -- checked when opened ------------------------------------------------------------------------


def test_a_database_of_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = filled(tmp_path / "kiosk.db", 10)
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA user_version = 99")
        c.execute("PRAGMA journal_mode = DELETE")  # all in the one file, to compare
    before = db.read_bytes()
    for argv in (["report", "--store", "s1"], ["serve", "--broker", "mqtt://127.0.0.1:1"]):
        done = kiosk_host(*argv, "--db", str(db))
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert "schema version 99 is newer" in line and "kiosk-host" in line
    assert db.read_bytes() == before  # not migrated, not written


def test_a_newer_schema_names_the_release_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = filled(tmp_path / "kiosk.db", 1)
    known = len(storage_module.MIGRATIONS)
    with sqlite3.connect(db) as c:
        c.execute(f"PRAGMA user_version = {known + 1}")
    monkeypatch.setitem(storage_module.SCHEMA_RELEASES, known + 1, "9.9.0")
    with pytest.raises(StorageError, match=r"it needs kiosk-host 9\.9\.0 or later"):
        Storage(db)


def test_every_schema_version_names_the_release_that_made_it() -> None:
    assert set(storage_module.SCHEMA_RELEASES) >= set(range(1, len(storage_module.MIGRATIONS) + 1))


def damage(db: Path) -> None:
    """Overwrite pages in the middle of the file, as a failing disk or a torn copy would."""
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.seek(size // 3 // 4096 * 4096)
        f.write(b"\xa5" * (size // 3))


def test_a_damaged_database_is_refused_with_how_to_restore(tmp_path: Path) -> None:
    db = filled(tmp_path / "kiosk.db", 6000)
    damage(db)
    for argv in (["report", "--store", "s1"], ["check"], ["backup", "--to", f"{db}.copy"]):
        done = kiosk_host(*argv, "--db", str(db))
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        (line,) = done.stderr.strip().splitlines()
        assert "damaged" in line and f"kiosk-host restore --from BACKUP --db {db}" in line, line
        assert "0 ratings" not in done.stdout


def test_quick_check_is_cheap_enough_for_every_command(tmp_path: Path) -> None:
    """Not timed (no wall-clock assertions): the check reads each page once, so it is run at
    every command; `check` runs the full integrity check. On this machine a database of a
    million events (tests/bench/store_views.py) takes 0.3 s quick, 2.5 s in full."""
    db = filled(tmp_path / "kiosk.db", 100)
    done = kiosk_host("check", "--db", str(db))
    assert done.returncode == 0 and "is sound" in done.stdout


# -- serve, with a broker -----------------------------------------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[str]
    db: Path
    lines: list[str] = field(default_factory=list)

    def read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def start_serve(broker: Mosquitto, db: Path, account: str) -> Served:
    url = f"mqtt://{account}@{broker.host}:{broker.port}"  # the password: only in the env
    env = {**os.environ, "KIOSK_BROKER_PASSWORD": SECRET}
    started = int(time.time())
    proc = subprocess.Popen(
        [str(KIOSK_HOST), "serve", "--broker", url, "--db", str(db)],
        stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    served = Served(proc, db)
    threading.Thread(target=served.read_stderr, daemon=True).start()
    wait_until(lambda: served.said("serving") or proc.poll() is not None, 30, "serve started")
    assert proc.poll() is None, served.lines
    aggregator_online(broker.url, started)
    return served


def stop_serve(served: Served) -> int:
    """SIGTERM to serve's whole process group, as a service manager sends it: the writer
    process gets it too, and must leave the stopping to the receiver."""
    if served.proc.poll() is None:
        os.killpg(served.proc.pid, signal.SIGTERM)
    return served.proc.wait(30)


class Feeder:
    """A kiosk's stream: ratings of s1/till-1 published at QoS 1, seq 1, 2, 3, ... until
    stopped."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="feeder")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        while not self.stopping.is_set():
            seq = self.sent + 1
            info = self.client.publish("kiosk/v1/s1/till-1/event", rating("s1", "till-1", seq), 1)
            info.wait_for_publish(10)
            self.sent = seq

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)
        self.client.disconnect()
        self.client.loop_stop()


def stored_seqs(db: Path) -> set[int]:
    with sqlite3.connect(db) as c:
        return {r[0] for r in c.execute("SELECT seq FROM events WHERE store = 's1'")}


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.fixture
def served(fresh_mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Served]:
    s = start_serve(fresh_mosquitto, tmp_path / "live.db", "agg-lifecycle")
    try:
        yield s
    finally:
        stop_serve(s)


@pytest.mark.slow  # serve, a stream of events, a backup and a restore
def test_a_backup_taken_during_ingest_restores_every_event_stored_before_it(
    fresh_mosquitto: Mosquitto, served: Served, tmp_path: Path
) -> None:
    feeder = Feeder(fresh_mosquitto)
    try:
        wait_until(lambda: len(stored_seqs(served.db)) >= 500, 60, "500 events stored")
        before = stored_seqs(served.db)  # committed, hence all that was acknowledged by now
        backup = tmp_path / "backup.db"
        done = kiosk_host("backup", "--db", str(served.db), "--to", str(backup))
        assert done.returncode == 0, done.stderr
        sent_at_backup = feeder.sent
        wait_until(lambda: len(stored_seqs(served.db)) > sent_at_backup, 60, "ingest going on")
        # while serve runs, the live database is not replaced
        refused = kiosk_host("restore", "--from", str(backup), "--db", str(served.db), "--force")
        assert refused.returncode == 2 and "serve or restore is using it" in refused.stderr
    finally:
        feeder.stop()
    assert stop_serve(served) == 0 and served.said("kiosk-host: stopped"), served.lines
    live = stored_seqs(served.db)
    done = kiosk_host("restore", "--from", str(backup), "--db", str(served.db), "--force")
    assert done.returncode == 0, done.stderr
    restored = stored_seqs(served.db)
    assert before <= restored <= live
    assert restored == set(range(1, len(restored) + 1))  # a prefix of the stream: consistent
    assert kiosk_host("check", "--db", str(served.db)).returncode == 0


def test_sigterm_stops_serve_cleanly_and_no_command_line_shows_the_password(
    served: Served,
) -> None:
    children = Path(f"/proc/{served.proc.pid}/task/{served.proc.pid}/children")
    wait_until(lambda: children.read_text().split() != [], 10, "the writer process")
    (writer,) = children.read_text().split()
    for pid in (served.proc.pid, int(writer)):
        line = cmdline(pid)
        assert "kiosk" in line and SECRET not in line, line
    assert stop_serve(served) == 0
    assert served.lines[-1] == "kiosk-host: stopped", served.lines
    assert not any("Error" in line or "Traceback" in line for line in served.lines)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB file system (a tmpfs; `make test` runs as root) to fill."""
    where = tmp_path / "small"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_a_full_disk_stops_serve_with_the_cause(
    fresh_mosquitto: Mosquitto, small_disk: Path
) -> None:
    served = start_serve(fresh_mosquitto, small_disk / "kiosk.db", "agg-full")
    feeder = Feeder(fresh_mosquitto)
    try:
        assert served.proc.wait(120) == 2, served.lines
    finally:
        feeder.stop()
        stop_serve(served)
    last = served.lines[-1]
    assert "the disk is full" in last and str(small_disk / "kiosk.db") in last, served.lines
    assert not any(w in "\n".join(served.lines) for w in ("EOFError", "Traceback")), served.lines
