"""Several aggregators sharing the stream on one PostgreSQL: one leads, every one stores once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kiosk_host.aggregator.receiver import HOST_STATUS
from kiosk_host.aggregator.views import case_list, recognition, report, summary
from kiosk_host.aggregator.writer import NO_STORES, Raw, Writer
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.postgres_leader import LEADER_KEY, Advisory
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import DeadLetter, EventRow, Storage
from kiosk_host.wire import topics
from tests.broker import Mosquitto
from tests.cli_run import run_cli
from tests.fleet_rig import Client
from tests.test_event_order import case_code
from tests.test_security import STORE, Fleet, fleet
from tests.virtual_kiosks import KIOSK_HOST, Watcher, wait_until

__all__ = ["fleet"]  # the module-scoped broker with provisioned kiosks, from test_security
TAKE_OVER_S = 5.0  # a follower leads this soon after the leader's death, at the latest
# A leader of its own process: says "leading" once it holds the lock, then waits to be killed.
CONTENDER = """
import sys, time
from kiosk_host.storage.postgres_leader import Advisory
leader = Advisory(sys.argv[1], int(sys.argv[2]))
said = None
while True:
    now = "leading" if leader.leading() else "following"
    if now != said:
        print(now, flush=True)
        said = now
    time.sleep(0.05)
"""


class Contender:
    """A process contending for the lead of the group on `url`; what it said, line by line."""

    def __init__(self, url: str, key: int, out: Path) -> None:
        self.out = out
        with out.open("wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CONTENDER, url, str(key)],
                stdout=f,
                stderr=subprocess.DEVNULL,
            )

    def said(self) -> list[str]:
        return self.out.read_text().split()


@pytest.mark.e2e
def test_one_of_two_leads_and_the_other_takes_over_after_a_kill_9(
    postgres_url: str, tmp_path: Path
) -> None:
    first = Contender(postgres_url, LEADER_KEY, tmp_path / "first.out")
    second: Contender | None = None
    try:
        wait_until(lambda: first.said() == ["leading"], 20, "the first to lead")
        second = Contender(postgres_url, LEADER_KEY, tmp_path / "second.out")
        wait_until(lambda: second is not None and second.said() == ["following"], 20,
                   "the second to follow")  # fmt: skip
        time.sleep(2 * 1.0)  # two of its tries for the lock, while the first holds it
        assert second.said() == ["following"]
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        wait_until(lambda: second is not None and "leading" in second.said(), TAKE_OVER_S,
                   "the second to lead after the first's kill -9")  # fmt: skip
        assert second.said() == ["following", "leading"]
    finally:
        for c in (first, second):
            if c is not None and c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait(10)


@pytest.mark.e2e
def test_the_leader_hears_what_the_others_stored_and_tells_a_persons_change_apart(
    postgres_url: str,
) -> None:
    leader, follower = Advisory(postgres_url), Advisory(postgres_url)
    mine, theirs, person = (open_storage(postgres_url) for _ in range(3))
    try:
        assert leader.leading() and leader.took_over() and not leader.took_over()
        assert not follower.leading()
        for _ in range(4):  # the changes so far, settled
            assert not leader.outside(mine.outside_changes())
        # the follower stores (a write transaction each), and says so after each commit
        for store in ("north", "south"):
            theirs.write_batch(())
            follower.stored([store], [store] if store == "north" else [], 1)
        for _ in range(4):  # a tick apart, as the leader asks
            time.sleep(Writer.TICK_S)
            assert not leader.outside(mine.outside_changes())
        assert leader.heard() == ({"north", "south"}, {"north"})
        assert leader.heard() == (set(), set())
        with person.transaction():  # a person's change (the CLI's): nobody tells of it
            pass
        seen = []
        for _ in range(4):
            time.sleep(Writer.TICK_S)
            seen.append(leader.outside(mine.outside_changes()))
        assert seen.count(True) == 1
    finally:
        for s in (mine, theirs, person):
            s.close()
        leader.close()
        follower.close()


def raw(device: str, seq: int, kind: str, at: int, **fields: Any) -> Raw:
    p = {"v": 1, "kind": kind, "store": "north", "device": device, "seq": seq, "ts": at,
         "up_ms": 1000, **fields}  # fmt: skip
    return (f"kiosk/v1/north/{device}/event", json.dumps(p).encode(), at + 5)


@pytest.mark.e2e
def test_a_rating_and_its_follow_up_stored_at_once_by_two_members_open_the_case_as_one_would(
    postgres_url: str,
) -> None:
    rated_at = int(time.time()) - 600
    rating = raw("till-1", 4, "rating", rated_at, score=1, scale=4, station="desk", staff=None)
    follow_up = raw("till-1", 5, "follow_up", rated_at + 12, rating_seq=4, accepted=True,
                    code=case_code("till-1", 4))  # fmt: skip
    east, west = Writer(open_storage(postgres_url)), Writer(open_storage(postgres_url))
    looked, go = threading.Event(), threading.Event()
    rated = east.engine.rated

    def rated_then_wait(storage: Store, ratings: list[EventRow]) -> list[DeadLetter]:
        dead: list[DeadLetter] = rated(storage, ratings)  # it found no case for the rating
        looked.set()
        go.wait(10)  # its transaction stays open while west stores the follow-up
        return dead

    east.engine.rated = rated_then_wait
    first = threading.Thread(target=east.handle, args=([rating],))
    first.start()
    second = threading.Thread(target=west.handle, args=([follow_up],))
    try:
        assert looked.wait(10)
        second.start()
        second.join(2)  # west waits for east's commit, or (unheld) stores at once
    finally:
        go.set()
        first.join(10)
        second.join(10)
    (case,) = east.storage.cases("north")
    assert (case.opened_at, case.station) == (rated_at, "desk")  # the rating's, not the kiosk's
    east.storage.close()
    west.storage.close()


def test_share_on_a_sqlite_database_is_refused_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    run = run_cli(
        ["serve", "--broker", "mqtt://127.0.0.1:1", "--db", str(db), "--share", "east",
         "--broker-dir", ""]
    )  # fmt: skip
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert "--share east" in line and "PostgreSQL" in line and "SQLite" in line
    assert not db.exists()  # refused before anything was made


def test_the_shipped_acl_lets_aggregator_accounts_share_the_stream_and_no_kiosk_read_it(
    fleet: Fleet, closing: Callable[[Client], Client]
) -> None:
    stream = "$share/acl-chain/kiosk/v1/#"
    first = closing(fleet.client("kiosk-host", "share-first"))
    second = closing(fleet.client("watch", "share-second"))  # an aggregator account of its own
    assert first.subscribe(stream) == [1] and second.subscribe(stream) == [1]
    till = closing(fleet.client("till-1", "share-till"))
    topic = f"kiosk/v1/{STORE}/till-1/telemetry"
    sent = [json.dumps({"n": n}).encode() for n in range(20)]
    for payload in sent:
        till.publish(topic, payload)
    wait_until(lambda: len(first.on(topic)) + len(second.on(topic)) >= len(sent), 10, "all")
    assert sorted(first.on(topic) + second.on(topic)) == sorted(sent)  # each to one of them
    assert first.on(topic) and second.on(topic)  # the broker takes turns
    # A kiosk's account that joins the group is handed nothing of the stream.
    kiosk = closing(fleet.client("till-2", "share-kiosk"))
    kiosk.subscribe(stream)
    more = [json.dumps({"n": n}).encode() for n in range(20, 30)]
    for payload in more:
        till.publish(topic, payload)
    kiosk.subscribe(f"kiosk/v1/{STORE}/till-2/cmd")  # answered after what came before it
    wait_until(lambda: len(first.on(topic)) + len(second.on(topic)) > len(sent), 10, "more")
    assert kiosk.on(topic) == []


# --- the acceptance run ---------------------------------------------------------------------

STORES, PER_STORE, EVENTS, RATE = 100, 3, 20_000, 500
VIEWS = ("summary", "cases", "recognition")


class Aggregator:
    """`kiosk-host serve --share` in a process group of its own (receiver and writer), so that
    a kill -9 takes both at once, as a crash of the machine's service would."""

    def __init__(self, broker: str, db: str, name: str, log: Path) -> None:
        self.args = [str(KIOSK_HOST), "serve", "--broker", broker, "--db", db,
                     "--share", "chain", "--client-id", name, "--broker-dir", ""]  # fmt: skip
        self.log = log
        self.proc = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen(self.args, stderr=f, start_new_session=True)
        return self.proc

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def online(watcher: Watcher, name: str) -> bool:
    states = [json.loads(p) for _, p, _ in watcher.messages]
    return any(s["host"] == name and s["state"] == "online" for s in states)


def snapshot(storage: Store, stores: list[str], now: int) -> dict[str, Any]:
    """The cases and the figures of every store at `now`."""
    out: dict[str, Any] = {}
    for store in stores:
        cfg = NO_STORES.get(store)
        cases = sorted(storage.cases(store), key=lambda c: (c.device, c.rating_seq))
        out[store] = {
            "cases": [(c.code, c.state, c.opened_at, c.deadline, c.verdict) for c in cases],
            "summary": summary(storage, cfg, store, now),
            "case_list": case_list(storage, store, now),
            "report": report(storage, cfg, store, now, 2),
            "recognition": recognition(storage, cfg, store, now),
            "events": storage.event_count(store),
        }
    return out


def without_ts(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "ts"}


@pytest.mark.slow  # a load run: 20,000 events from 300 kiosks, two aggregators, a kill -9
@pytest.mark.e2e
def test_two_aggregators_share_the_stream_through_a_kill_9_and_send_each_view_once(
    fresh_mosquitto: Mosquitto, postgres_url: str, tmp_path: Path
) -> None:
    broker = fresh_mosquitto
    status = Watcher(broker.url, HOST_STATUS, "watch-status")
    # The watcher's own subscription (not shared): every event, for the run in one process,
    # and every view and alert the group publishes.
    watcher = Client(broker.port, "watch-chain")
    names = [f"kiosk/v1/+/{v}" for v in (*VIEWS, "alerts")]
    watcher.subscribe("kiosk/v1/+/+/event", *names)
    storage = open_storage(postgres_url)
    east = Aggregator(broker.url, postgres_url, "agg-east", tmp_path / "east.log")
    west: Aggregator | None = None
    loadgen: subprocess.Popen[str] | None = None
    try:
        wait_until(lambda: online(status, "agg-east"), 30, "agg-east online")
        with psycopg.connect(postgres_url, autocommit=True) as c:  # east leads: it came first
            held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            wait_until(lambda: c.execute(held).fetchone() == (1,), 10, "east to lead")
        west = Aggregator(broker.url, postgres_url, "agg-west", tmp_path / "west.log")
        wait_until(lambda: online(status, "agg-west"), 30, "agg-west online")
        loadgen = subprocess.Popen(
            [str(KIOSK_HOST), "loadgen", "--broker", broker.url, "--stores", str(STORES),
             "--kiosks-per-store", str(PER_STORE), "--rate", str(RATE),
             "--duration", str(EVENTS / RATE), "--seed", "11", "--prefix", "chain", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(lambda: storage.event_count() >= EVENTS // 3, 120, "a third stored")
        east.kill()  # the leader, mid-stream
        wait_until(lambda: online(status, "agg-west") and storage.event_count() > EVENTS // 2,
                   120, "west going on alone")  # fmt: skip
        east.start()  # its session kept what the broker handed it meanwhile
        out, err = loadgen.communicate(timeout=300)
        assert loadgen.returncode == 0, err
        sent = json.loads(out)
        assert sent["acked"] == EVENTS and sent["failed"] == 0
        wait_until(lambda: storage.event_count() >= EVENTS, 180, "every event stored")

        def quiet() -> int:
            before = len(watcher.messages)
            time.sleep(3 * Writer.TICK_S)  # three ticks without a view: all is sent
            return len(watcher.messages) - before

        wait_until(lambda: quiet() == 0, 120, "the views to settle")
    finally:
        if loadgen is not None and loadgen.poll() is None:
            loadgen.kill()
            loadgen.communicate()
        for a in (west, east):
            if a is not None:
                a.stop()
        watcher.close()
        status.close()
    logs = (tmp_path / "east.log").read_text() + (tmp_path / "west.log").read_text()

    # 20,000 stored, each once: each kiosk's seqs, one after the other, as the report says
    assert storage.event_count() == EVENTS, logs[-3000:]
    for kiosk, k in sent["kiosks"].items():
        store, device = kiosk.split("/")
        assert storage.seqs(store, device) == list(range(k["first_seq"], k["last_seq"] + 1))
    assert storage.dead_letter_count() == 0

    # The cases and figures equal those of the same events stored in one process, in SQLite.
    with watcher._lock:
        messages = list(watcher.messages)
    raws: list[Raw] = []
    for topic, payload, _ in messages:
        if topic.endswith("/event"):
            raws.append((topic, payload, json.loads(payload)["ts"]))
    assert len(raws) == EVENTS
    calm = Storage(tmp_path / "calm.db")
    writer = Writer(calm, NO_STORES)
    for i in range(0, len(raws), 200):
        writer.handle(raws[i : i + 200])
    now = int(time.time())
    stores = sorted(sent["stores"])
    assert len(stores) == STORES
    shared, alone = snapshot(storage, stores, now), snapshot(calm, stores, now)
    for store in stores:
        for key, value in alone[store].items():
            assert shared[store][key] == value, (store, key)
    calm.close()

    # The views: one publisher per tick (never two in one second), each alert once, and the
    # last of each view what the database holds now.
    seen: Counter[tuple[str, int]] = Counter()
    last: dict[str, dict[str, Any]] = {}
    alerts: Counter[str] = Counter()
    for topic, payload, _ in messages:
        found = topics.parse(topic)
        if found is None or found[0] == "event":
            continue
        view = json.loads(payload)
        if found[0] == "alerts":
            alerts[view["id"]] += 1
            continue
        seen[topic, view["ts"]] += 1
        last[topic] = view
    assert seen and max(seen.values()) == 1, [k for k, n in seen.items() if n > 1][:5]
    assert not alerts or max(alerts.values()) == 1
    for store in stores:
        cfg = NO_STORES.get(store)
        view = last[topics.topic("summary", store=store)]
        assert without_ts(view) == without_ts(summary(storage, cfg, store, view["ts"]))
        cases = last[topics.topic("cases", store=store)]
        assert without_ts(cases) == without_ts(case_list(storage, store, cases["ts"]))
    storage.close()
