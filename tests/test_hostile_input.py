"""Hostile input, one attempt a row: what a kiosk's account, a browser without the managers'
token or an operator's slip can send, and what the host does with each.

Messages go through the real ingest path below the MQTT receiver (the writer process's
`Writer` on a real SQLite file); dashboard attempts through the real app on a loopback port;
operator mistakes through the installed `kiosk-host` command.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk_host.aggregator.writer import Writer
from kiosk_host.dashboard.server import serve_dashboard
from kiosk_host.rules.stores import Stores
from kiosk_host.shipped import MQTT_SCHEMAS
from kiosk_host.storage.sqlite import EventRow, Storage
from kiosk_host.wire.contract import Contract, Message, canonical
from tests.virtual_kiosks import KIOSK_HOST

ARRIVED = 1763900000
TOPIC = "kiosk/v1/s1/till-1/event"
TOKEN = "managers-token-0123456789"


def rating(seq: int = 1, **changes: Any) -> dict[str, Any]:
    event = {
        "v": 1, "kind": "rating", "store": "s1", "device": "till-1", "seq": seq,
        "ts": ARRIVED + seq, "up_ms": seq * 1000, "score": 4, "scale": 4,
        "station": "till-1", "staff": None,
    }  # fmt: skip
    return {**event, **changes}


def text(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def twice(key: str, first: Any, event: dict[str, Any]) -> bytes:
    """`event` with `key` given twice: `first`, then the event's own value."""
    return (
        b"{"
        + json.dumps(key).encode()
        + b":"
        + json.dumps(first).encode()
        + b","
        + (text(event)[1:])
    )


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    what: str
    messages: tuple[tuple[str, bytes], ...]
    dead_rules: tuple[str, ...] = ()  # each message refused, with this rule
    stored: int = 0  # events stored, each once


A = Attempt
MESSAGES = [
    A("bad JSON", ((TOPIC, b'{"v":1,"kind":'),), ("json",)),
    A(
        "bad UTF-8",
        ((TOPIC, text(rating()).replace(b'"station": "till-1"', b'"station": "till-\xff"')),),
        ("json",),
    ),
    A("NaN", ((TOPIC, text(rating()).replace(b'"score": 4', b'"score": NaN')),), ("json",)),
    A(
        "Infinity",
        ((TOPIC, text(rating()).replace(b'"score": 4', b'"score": -Infinity')),),
        ("json",),
    ),
    A("1e400", ((TOPIC, text(rating()).replace(b'"up_ms": 1000', b'"up_ms": 1e400')),), ("json",)),
    A("a huge integer", ((TOPIC, text(rating(seq=10**100))),), ("maximum",)),
    A(
        "an exponent past 2**53",
        ((TOPIC, text(rating()).replace(b'"up_ms": 1000', b'"up_ms": 1e308')),),
        ("maximum",),
    ),
    A(
        "a lone surrogate",
        ((TOPIC, text(rating()).replace(b'"staff": null', b'"staff": "\\ud800"')),),
        ("json",),
    ),
    A("an array, not an object", ((TOPIC, b"[1, 2]"),), ("object",)),
    A(
        "a staff given twice (number, then null)",
        ((TOPIC, twice("staff", 5, rating())),),
        ("duplicate",),
    ),
    A("a score given twice, both valid", ((TOPIC, twice("score", 1, rating())),), ("duplicate",)),
    A("a store given twice", ((TOPIC, twice("store", "s2", rating())),), ("duplicate",)),
    A("another store's identity", ((TOPIC, text(rating(store="s2"))),), ("identity",)),
    A("another kiosk's identity", ((TOPIC, text(rating(device="till-2"))),), ("identity",)),
    A("a topic that is no identifier", (("kiosk/v1/S1/till-1/event", text(rating())),), ("topic",)),
    A("seq 0", ((TOPIC, text(rating(seq=0))),), ("minimum",)),
    A("seq -1", ((TOPIC, text(rating(seq=-1))),), ("minimum",)),
    A("seq past 2**32", ((TOPIC, text(rating(seq=2**32))),), ("maximum",)),
    A(
        "a formula as the station",
        ((TOPIC, text(rating(station='=HYPERLINK("x")'))),),
        ("pattern",),
    ),
    A("a formula as the staff", ((TOPIC, text(rating(staff="@SUM(A1)"))),), ("pattern",)),
    A("a score that is a string", ((TOPIC, text(rating(score="4"))),), ("type",)),
    A("an oversized payload", ((TOPIC, text(rating(pad="x" * 2000))),), ("oversize",)),
    A("4.0 for a score: stored as 4", ((TOPIC, text(rating(score=4.0))),), stored=1),
    A("a replay: stored once", ((TOPIC, text(rating())), (TOPIC, text(rating()))), stored=1),
    A(
        "spaces and key order: stored once",
        ((TOPIC, text(rating())), (TOPIC, json.dumps(rating(), indent=3, sort_keys=True).encode())),
        stored=1,
    ),
]


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    storage = Storage(tmp_path / "hostile.db")
    try:
        yield Writer(storage)
    finally:
        storage.close()


@pytest.mark.parametrize("attempt", MESSAGES, ids=lambda a: a.what)
def test_a_hostile_message_is_dead_lettered_or_stored_once(
    writer: Writer, attempt: Attempt
) -> None:
    storage = writer.storage
    reply = writer.handle([(t, p, ARRIVED) for t, p in attempt.messages])
    assert reply.events == attempt.stored
    letters = storage.dead_letters()
    assert sorted(d.rule for d in letters) == sorted(attempt.dead_rules), letters
    assert all(d.reason for d in letters)
    for d, (_, payload) in zip(reversed(letters), attempt.messages, strict=False):
        assert d.payload == payload[:2048]  # the bytes as they came, to look at later
    rows = storage.db.execute("SELECT payload FROM events").fetchall()
    assert len(rows) == attempt.stored
    for (payload,) in rows:  # what is stored is what was checked, in one spelling
        assert payload == canonical(json.loads(payload))
        assert json.loads(payload)["score"] == 4 and isinstance(json.loads(payload)["score"], int)
    writer.tick(ARRIVED)  # the views of what was stored are made without a failure


def test_a_duplicate_key_no_longer_stops_ingest_nor_the_recognition_board(
    writer: Writer,
) -> None:
    """The attack of record: {"staff":5, ...a valid rating...} passed, was stored with staff 5,
    and the writer process died in the recognition sort."""
    storage = writer.storage
    now = ARRIVED + 100
    good = [(TOPIC, text(rating(seq, staff="ana")), now) for seq in (2, 3)]
    reply = writer.write([(TOPIC, twice("staff", 5, rating(1)), now), *good])
    assert (reply.events, reply.dead) == (2, 1)
    staff = storage.db.execute("SELECT DISTINCT json_extract(payload, '$.staff') FROM events")
    assert [r[0] for r in staff] == ["ana"]
    published = dict((t.rsplit("/", 1)[1], p) for t, p, _ in writer.tick(now))
    assert json.loads(published["recognition"])["store"] == "s1"


def legacy_row(storage: Storage, seq: int, payload: str, at: int) -> None:
    """A rating stored by an older host, which kept payloads as they came."""
    storage.db.execute(
        "INSERT INTO events (store, device, seq, kind, at, device_ts, arrived, time_flagged,"
        " payload, score, outside) VALUES ('s1', 'till-1', ?, 'rating', ?, ?, ?, 0, ?, 4, 0)",
        (seq, at, at, at, payload),
    )


def test_a_row_a_view_cannot_read_is_skipped_and_ingest_goes_on(writer: Writer) -> None:
    storage = writer.storage
    now = int(time.time())
    bad = '{"staff":5,"v":1,"kind":"rating","store":"s1","device":"till-1","seq":1,' + (
        f'"ts":{now},"up_ms":0,"score":4,"scale":"four","station":7,"staff":null}}'
    )
    legacy_row(storage, 1, bad, now - 60)
    legacy_row(storage, 2, bad.replace('"scale":"four"', '"scale":4'), now - 50)
    reply = writer.write([(TOPIC, text(rating(3, ts=now - 10)), now)])
    assert reply.events == 1
    views = {t.rsplit("/", 1)[1]: json.loads(p) for t, p, _ in writer.tick(now)}
    assert {"cases", "summary", "recognition"} <= set(views)
    reply = writer.handle([(TOPIC, text(rating(4, ts=now - 5)), now)])
    assert reply.events == 1 and storage.event_count() == 4


def test_a_view_that_fails_is_logged_and_the_others_are_published(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's guard itself: whatever a view raises (here: a defect put in on purpose),
    the other views are sent and the next batch is stored."""
    from kiosk_host.aggregator import writer as module

    def broken(*args: object) -> dict[str, Any]:
        raise TypeError("'<' not supported between instances of 'int' and 'str'")

    monkeypatch.setattr(module, "recognition", broken)
    writer.write([(TOPIC, text(rating(1)), ARRIVED)])
    names = [t.rsplit("/", 1)[1] for t, _, _ in writer.tick(ARRIVED)]
    assert names == ["cases", "summary"]
    assert writer.handle([(TOPIC, text(rating(2)), ARRIVED)]).events == 1


def test_ratings_of_one_second_are_the_last_n_in_the_order_given(writer: Writer) -> None:
    """40 ratings in one second, 1, 1, 1, 4 over and over (an outbox replay without a clock):
    no run of top ratings, so no praise beside the surge."""
    ts = int(time.time()) - 30
    batch = [
        (TOPIC, text(rating(seq, ts=None, score=4 if seq % 4 == 0 else 1)), ts)
        for seq in range(1, 41)
    ]
    writer.handle(batch)
    assert [s for _, s in writer.storage.last_scores("s1", 8)] == [1, 1, 1, 4] * 2
    writer.tick(ts)
    kinds = [a["type"] for a in writer.storage.alerts("s1")]
    assert "praise" not in kinds and "negative_surge" in kinds


# -- the dashboard ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("hostile-dashboard") / "kiosk.db"
    storage = Storage(db)
    legacy_row(storage, 1, json.dumps(rating(1, station='=HYPERLINK("http://x")',
                                             staff="@SUM(A1)")), int(time.time()) - 60)  # fmt: skip
    storage.close()
    server = serve_dashboard("127.0.0.1:0", db, Stores({}), TOKEN)
    try:
        yield server.url
    finally:
        server.stop()


ALERT = "/api/stores/s1/alerts/a1/comment"
FIX = "/api/stores/s1/cases/A234/fix"
WRITES = [
    ("the token in the query string", "post", f"{ALERT}?token={TOKEN}", {"json": {"text": "x"}}),
    ("the token in a cookie", "post", ALERT, {"json": {"text": "x"}, "cookies": {"token": TOKEN}}),
    ("a form post with the token", "post", ALERT, {"data": {"text": "x", "token": TOKEN}}),
    ("the token as Basic", "post", ALERT, {"json": {"text": "x"}, "auth": ("token", TOKEN)}),
    ("no token at all", "post", FIX, {"json": {"staff": "ana"}}),
    (
        "a case fix, token in the query",
        "post",
        f"{FIX}?access_token={TOKEN}",
        {"json": {"staff": "ana"}},
    ),
]


@pytest.mark.parametrize(("what", "method", "path", "how"), WRITES, ids=[w[0] for w in WRITES])
def test_a_dashboard_write_without_the_bearer_token_is_refused(
    dashboard: str, what: str, method: str, path: str, how: dict[str, Any]
) -> None:
    with httpx.Client(base_url=dashboard, timeout=30, cookies=how.pop("cookies", None)) as c:
        r = c.request(method.upper(), path, **how)
    assert r.status_code == 401, (what, r.status_code, r.text)


READS = [
    ("from after to", "ratings.csv?from=2026-01-02&to=2026-01-01", 400),
    ("from=9999-12-30", "ratings.csv?from=9999-12-30", 400),
    ("to=9999-12-31", "ratings.csv?from=9999-12-30&to=9999-12-31", 400),
    ("the cases, past the last day", "cases.csv?from=9999-12-31&to=9999-12-31", 400),
    ("not a day", "ratings.csv?from=yesterday", 400),
    ("a header in the day", "ratings.csv?from=2026-01-01%0d%0aX-Evil:%201", 400),
    ("no such export", "secrets.csv", 404),
]


@pytest.mark.parametrize(("what", "path", "status"), READS, ids=[r[0] for r in READS])
def test_a_bad_csv_request_is_refused_with_its_status(
    dashboard: str, what: str, path: str, status: int
) -> None:
    r = httpx.get(f"{dashboard}/api/stores/s1/{path}", timeout=30)
    assert r.status_code == status, (what, r.status_code, r.text)


def test_formula_text_in_a_csv_is_never_run_by_a_spreadsheet(dashboard: str) -> None:
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 60))
    r = httpx.get(f"{dashboard}/api/stores/s1/ratings.csv?from={day}&to={day}", timeout=30)
    assert r.status_code == 200
    cells = [c for line in r.text.splitlines()[1:] for c in line.split(",")]
    assert "'@SUM(A1)" in cells and any(c.startswith("\"'=HYPERLINK") for c in cells), cells
    assert not any(c.lstrip('"')[:1] in ("=", "+", "@") for c in cells), cells


# -- operator mistakes --------------------------------------------------------------------------


def kiosk_host(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KIOSK_HOST), *argv], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture(scope="module")
def made_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("operator") / "kiosk.db"
    storage = Storage(db)
    storage.write_batch([EventRow("s1", "till-1", 1, "rating", ARRIVED, ARRIVED, ARRIVED, False,
                                  rating(), canonical(rating()))])  # fmt: skip
    storage.close()
    return db


MISTAKES = [
    ("deadletter --limit -5", ["deadletter", "--limit", "-5"], "at least 1"),
    ("deadletter --limit 0", ["deadletter", "--limit", "0"], "at least 1"),
    ("an empty comment", ["alerts", "comment", "a1", " "], "empty comment"),
    ("a 100,000-character comment", ["alerts", "comment", "a1", "x" * 100_000], "at most 500"),
    ("report --store nosuch", ["report", "--store", "nosuch"], "known: s1"),
    ("recognition --store nosuch", ["recognition", "--store", "nosuch"], "known: s1"),
    (
        "virtual-kiosk --board nosuch",
        [
            "virtual-kiosk",
            "--board",
            "nosuch",
            "--store",
            "s1",
            "--device",
            "d",
            "--broker",
            "mqtt://127.0.0.1:1",
        ],
        "no such board",
    ),
    ("serve --broker notaurl", ["serve", "--broker", "notaurl"], "not a broker address"),
    ("serve --broker http://", ["serve", "--broker", "http://example.com"], "not a broker"),
    ("serve, a bad port", ["serve", "--broker", "mqtt://h:99999"], "not a broker address"),
    (
        "a missing --password-file",
        ["serve", "--broker", "mqtt://u@127.0.0.1:1", "--password-file", "/nonexistent/p"],
        "No such file",
    ),
    ("backup to a file that exists", ["backup", "--to", "{db}"], "already exists"),
    ("restore from no file", ["restore", "--from", "/nonexistent/b.db"], "no such backup"),
    ("restore over a database without --force", ["restore", "--from", "{db}"], "--force"),
]


@pytest.mark.parametrize(("what", "argv", "says"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_an_operator_mistake_is_one_line_and_exit_2(
    made_db: Path, what: str, argv: list[str], says: str
) -> None:
    argv = [a.replace("{db}", str(made_db)) for a in argv]
    needs_db = argv[0] not in ("virtual-kiosk",)
    done = kiosk_host(*argv, *(["--db", str(made_db)] if needs_db else []))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (what, done.stdout, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("kiosk-host"), (what, done.stderr)
    assert says in lines[0], (what, lines)


def test_a_read_command_on_a_mistyped_path_makes_no_database(tmp_path: Path) -> None:
    db = tmp_path / "kiosk-typo.db"
    done = kiosk_host("report", "--store", "s1", "--db", str(db))
    assert done.returncode == 2 and "no such database" in done.stderr
    assert not db.exists() and list(tmp_path.iterdir()) == []


# -- any message, however formed ----------------------------------------------------------------

FIELDS = sorted({*rating(), "kind", "state", "fw", "board", "heap_free", "rating_seq", "code",
                 "accepted", "case", "outcome", "staff", "rssi", "outbox"})  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False), st.text(max_size=12),
    st.sampled_from(["s1", "till-1", "rating", "online", "offline", "follow_up", "ana", "A234",
                     "=1+1", "@SUM(A1)", "\u0000", "wow", 4, 1, 0, -1, 2**32, 4.0, 1e300]),
)  # fmt: skip
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.sampled_from(FIELDS), SCALARS, max_size=3))  # fmt: skip
TOPICS = st.sampled_from([
    "kiosk/v1/s1/till-1/event", "kiosk/v1/s1/till-1/status", "kiosk/v1/s1/till-1/telemetry",
    "kiosk/v1/s2/till-2/event", "kiosk/v1/s1/summary", "kiosk/v1/s1/till-1/config",
])  # fmt: skip


def _shapes() -> list[tuple[str, dict[str, Any]]]:
    """Every valid payload of the contract's examples for what kiosks send, as kiosk s1/till-1's."""
    out = []
    for path in sorted((MQTT_SCHEMAS / "examples").glob("*.json")):
        example = json.loads(path.read_text())
        channel = path.stem.split("-")[0]  # event-rating, status-will, telemetry
        if channel not in ("event", "status", "telemetry") or path.stem == "host-status":
            continue
        for valid in example["valid"]:
            payload = valid["payload"]
            out += [(channel, {**payload, **{k: v for k, v in OURS.items() if k in payload}})]
    return out


OURS = {"store": "s1", "device": "till-1"}
SHAPES = _shapes()


@st.composite
def hostile(draw: st.DrawFn) -> tuple[str, bytes]:
    """A message that looks like the contract's: a valid rating, status or telemetry with
    fields replaced, dropped or given twice, with any type, written out by hand so that a key
    can appear twice; or bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(TOPICS), draw(st.binary(max_size=200))
    channel, base = draw(st.sampled_from(SHAPES))
    if channel == "event":
        base = dict(base, seq=draw(st.integers(1, 2**32 - 1)))
    # mostly its own topic; now and then another's, or one the host publishes itself
    topic = draw(st.sampled_from([f"kiosk/v1/s1/till-1/{channel}"] * 4) | TOPICS)
    pairs = list(base.items())
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        how = draw(st.sampled_from([0, 0, 0, 1, 2]))  # replace, give twice, drop
        i = draw(st.integers(0, len(pairs) - 1))
        if how == 0:
            pairs[i] = (pairs[i][0], draw(VALUES))
        elif how == 1:
            pairs.insert(draw(st.integers(0, len(pairs))), (pairs[i][0], draw(VALUES)))
        elif len(pairs) > 1:
            pairs.pop(i)
    body = ",".join(json.dumps(k) + ":" + json.dumps(v) for k, v in pairs)
    return topic, ("{" + body + "}").encode()


@dataclass
class Ingest:
    writer: Writer
    seen: int = 0
    stored: int = 0  # messages stored as new events
    dead: int = 0  # messages dead-lettered


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    storage = Storage(tmp_path_factory.mktemp("hypothesis") / "ingest.db")
    try:
        yield Ingest(Writer(storage))
    finally:
        storage.close()


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(message=hostile())
def test_no_message_however_formed_stops_ingest(ingest: Ingest, message: tuple[str, bytes]) -> None:
    """Every message is stored canonically, set aside with a rule, or is nothing to keep; the
    writer goes on storing and ticking after each one."""
    writer, storage = ingest.writer, ingest.writer.storage
    topic, payload = message
    letters = storage.dead_letter_count()
    events = storage.event_count()
    reply = writer.handle([(topic, payload, ARRIVED)])
    checked = Contract.load().validate(topic, payload)
    if isinstance(checked, Message) and checked.channel == "event":
        p = checked.payload
        row = storage.db.execute(
            "SELECT payload, score FROM events WHERE store = ? AND device = ? AND seq = ?",
            (checked.params["store"], checked.params["device"], p["seq"]),
        ).fetchone()
        assert row is not None
        if reply.dead:  # its seq is stored with other content (the kiosk's count went back),
            # or it is stored and breaks a rule of the cases (a verdict for no known case)
            (last,) = storage.dead_letters(1)
            assert last.rule in ("regression", "case"), last
            assert last.rule == "case" or json.loads(row[0]) != p
        if reply.events:  # new: stored as the validated object, in one spelling
            assert row[0] == checked.canonical()
            for key, value in p.items():
                found = storage.db.execute(
                    "SELECT json_extract(?, ?)", (row[0], f'$."{key}"')
                ).fetchone()[0]
                assert found == (value if not isinstance(value, bool) else int(value)) or (
                    isinstance(value, (dict, list)) and json.loads(found) == value
                )
    elif isinstance(checked, Message) or checked is None:
        assert reply.dead == 0
    else:
        assert reply.dead == 1 or checked.__class__.__name__ == "Cleared"
        if reply.dead:
            (last,) = storage.dead_letters(1)
            assert last.rule and last.reason and last.payload == payload[:2048]
    assert storage.dead_letter_count() - letters == reply.dead
    assert storage.event_count() - events == reply.events
    writer.tick(ARRIVED + ingest.seen)  # every view of what is stored is made without a stop
    ingest.seen += 1
    ingest.stored += reply.events
    ingest.dead += reply.dead


def test_the_database_written_by_the_hypothesis_run_is_sound(ingest: Ingest) -> None:
    """After the run above: the file is sound, and the run stored and refused messages alike
    (a strategy that only made garbage would prove nothing)."""
    rows = ingest.writer.storage.db.execute("PRAGMA integrity_check").fetchall()
    assert rows == [("ok",)]
    assert ingest.seen >= 1000, "run with the test above"
    accepted = ingest.seen - ingest.dead  # stored, a duplicate, a status, or nothing to keep
    assert ingest.stored >= 20 and accepted >= 60 and ingest.dead >= 300, ingest
