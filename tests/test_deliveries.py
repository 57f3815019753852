"""Alerts to people: each alert becomes one delivery per recipient in the store's routing,
sent by e-mail (a real SMTP server) and webhook (a real HTTP server) in the store's language,
held through quiet hours unless critical, retried until the receiver is back, and sent once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as paho
import pytest
from freezegun import freeze_time
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.aggregator.leader import Alone, leader_for
from kiosk_host.aggregator.sender import Channels, Sender
from kiosk_host.aggregator.writer import Raw, Writer
from kiosk_host.dashboard.server import serve_dashboard
from kiosk_host.notify.email import Mailer
from kiosk_host.notify.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify
from kiosk_host.rules.routing import quiet_end, retry_in, routes
from kiosk_host.rules.stores import Stores, parse_stores
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.protocol import Store
from tests.broker import Mosquitto
from tests.cli_run import run_cli
from tests.receivers import SmtpSink, WebhookReceiver
from tests.test_event_order import case_code
from tests.virtual_kiosks import KIOSK_HOST, aggregator_online, wait_until

S = "store-12"
BERLIN = ZoneInfo("Europe/Berlin")
SECRET = "s3cret-for-the-hook"
AFTERNOON = int(datetime(2026, 11, 24, 14, 0, tzinfo=BERLIN).timestamp())  # a Tuesday
EVENING = int(datetime(2026, 11, 24, 22, 0, tzinfo=BERLIN).timestamp())  # quiet hours


def stores_for(hook: WebhookReceiver) -> Stores:
    return parse_stores(
        f'[stores.{S}]\ntz = "Europe/Berlin"\nlanguage = "de"\n'
        f'[[stores.{S}.notify]]\nto = "mailto:manager@store12.example"\n'
        f'quiet = "21:00-07:00"\ndigests = []\n'
        f'[[stores.{S}.notify]]\nto = "{hook.url}"\nsecret_env = "HOOK_SECRET"\n'
    )


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[SmtpSink, WebhookReceiver]]:
    """A mail server and a webhook receiver for the module's tests (stopping aiosmtpd takes
    half a second): each test finds them empty and answering 200."""
    s, h = SmtpSink().start(), WebhookReceiver().start()
    yield s, h
    s.stop()
    h.stop()


@pytest.fixture
def sink(receivers: tuple[SmtpSink, WebhookReceiver]) -> SmtpSink:
    receivers[0].inbox.clear()
    return receivers[0]


@pytest.fixture
def hook(receivers: tuple[SmtpSink, WebhookReceiver]) -> WebhookReceiver:
    receivers[1].posted.clear()
    receivers[1].status = 200
    return receivers[1]


def event(device: str, seq: int, kind: str, at: int, **fields: object) -> Raw:
    p = {"v": 1, "kind": kind, "store": S, "device": device, "seq": seq, "ts": at,
         "up_ms": 1000, **fields}  # fmt: skip
    return (f"kiosk/v1/{S}/{device}/event", json.dumps(p).encode(), at + 1)


def breakdown(seq: int, at: int) -> list[Raw]:
    """A low rating and its accepted follow-up: a case opens."""
    code = case_code("till-1", seq)
    return [
        event("till-1", seq, "rating", at, score=1, scale=4, station="till-1", staff=None),
        event("till-1", seq + 1, "follow_up", at + 10, rating_seq=seq, accepted=True, code=code),
    ]


def sender(storage: Store, stores: Stores, sink: SmtpSink, now: list[int]) -> Sender:
    mailer = Mailer(sink.url, None, "Kiosk alerts <alerts@chain.example>")
    channels = Channels(mailer, "https://dash.example/", environ={"HOOK_SECRET": SECRET})
    return Sender(storage, stores, channels, Alone(), now=lambda: now[0])


def store(w: Writer, at: int, batch: list[Raw]) -> None:
    with freeze_time(datetime.fromtimestamp(at, UTC)):
        w.handle(batch)


def test_a_case_reaches_the_inbox_and_the_webhook_in_the_stores_language(
    store_url: str, sink: SmtpSink, hook: WebhookReceiver
) -> None:
    stores = stores_for(hook)
    storage = open_storage(store_url)
    now = [AFTERNOON + 12]
    store(Writer(storage, stores), now[0], breakdown(4, AFTERNOON))
    assert sender(storage, stores, sink, now).once() == 2
    code = case_code("till-1", 4)
    (mail,) = sink.inbox
    assert code in str(mail["Subject"]) and mail["Content-Language"] == "de"
    assert mail["To"] == "manager@store12.example"
    body = mail.get_body(("plain",))
    assert body is not None and code in body.get_content()
    (posted,) = hook.posted
    assert verify(SECRET.encode(), posted.headers[SIGNATURE_HEADER], posted.body, now[0])
    assert not verify(SECRET.encode(), posted.headers[SIGNATURE_HEADER], posted.body + b" ", now[0])
    sent = json.loads(posted.body)
    assert sent["type"] == "case_opened" and sent["case"] == code
    assert sent["message"]["language"] == "de"
    # the delivery ids are what the recipient dedupes by
    ids = {d.id for d in storage.deliveries(S)}
    assert posted.headers[IDEMPOTENCY_HEADER] in ids
    assert str(mail["Message-ID"]).strip("<>").split("@")[0] in ids
    assert {d.state for d in storage.deliveries(S)} == {"delivered"}
    # the alert itself, as published and listed, speaks the store's language too
    (alert,) = storage.alerts(S)
    assert alert["text"].startswith(f"Neuer Fall {code} an till-1: gutmachen bis Mi")
    storage.close()


def test_quiet_hours_hold_what_is_not_critical_and_never_a_breach(
    store_url: str, sink: SmtpSink, hook: WebhookReceiver
) -> None:
    stores = stores_for(hook)
    storage = open_storage(store_url)
    w = Writer(storage, stores)
    now = [EVENING + 12]
    store(w, now[0], breakdown(4, EVENING))  # 22:00: case_opened (info) in quiet hours
    s = sender(storage, stores, sink, now)
    s.once()
    assert sink.inbox == [] and len(hook.posted) == 1  # the webhook has no quiet hours
    seven = int(datetime(2026, 11, 25, 7, 0, tzinfo=BERLIN).timestamp())
    now[0] = seven - 1
    s.once()
    assert sink.inbox == []
    now[0] = seven
    s.once()
    assert len(sink.inbox) == 1  # held until the quiet hours end
    # 24 h later, 22:00 again: the case breaches in quiet hours, and the breach goes at once
    deadline = EVENING + 86_400
    store(w, deadline, [])
    now[0] = deadline + 1
    s.once()
    types = [json.loads(p.body)["type"] for p in hook.posted]
    assert "breached" in types
    assert len(sink.inbox) == 2  # the case at 07:00, the breach at 22:00
    storage.close()


def test_a_receiver_down_for_a_minute_and_a_restart_lose_nothing_and_repeat_nothing(
    store_url: str, tmp_path: Path
) -> None:
    sink, hook = SmtpSink(), WebhookReceiver()  # both down
    stores = stores_for(hook)
    storage = open_storage(store_url)
    w = Writer(storage, stores)
    for n in range(3):
        store(w, AFTERNOON + n * 60, breakdown(10 + 2 * n, AFTERNOON + n * 60))
    now = [AFTERNOON + 200]
    assert sender(storage, stores, sink, now).once() == 6  # 3 cases x 2 recipients: all fail
    assert {(d.state, d.attempts) for d in storage.deliveries(S)} == {("pending", 1)}
    assert all(d.last_error for d in storage.deliveries(S))
    storage.close()  # the aggregator stops ...
    storage = open_storage(store_url)  # ... and starts again
    s = sender(storage, stores, sink, now)
    now[0] += retry_in(1)
    assert s.once() == 6  # tried again, the receivers still down
    sink.start()
    hook.start()
    try:
        for _ in range(20):  # a minute on, and long after
            now[0] += 30
            s.once()
        assert {d.state for d in storage.deliveries(S)} == {"delivered"}
        keys = Counter(p.headers[IDEMPOTENCY_HEADER] for p in hook.posted)
        ids = Counter(str(m["Message-ID"]) for m in sink.inbox)
        assert len(keys) == len(ids) == 3 and set(keys.values()) == set(ids.values()) == {1}
    finally:
        sink.stop()
        hook.stop()
        storage.close()


def test_a_copy_sent_again_after_a_crash_carries_the_same_key(
    tmp_path: Path, sink: SmtpSink, hook: WebhookReceiver
) -> None:
    stores = stores_for(hook)
    storage = open_storage(str(tmp_path / "k.db"))
    store(Writer(storage, stores), AFTERNOON, breakdown(4, AFTERNOON))
    now = [AFTERNOON + 20]
    s = sender(storage, stores, sink, now)
    for d in storage.due_deliveries(now[0], 10):
        s._send(d)  # sent, then the process dies before it could say so
    sender(storage, stores, sink, now).once()  # the next one sends again
    assert len(hook.posted) == 2 and len(sink.inbox) == 2
    assert hook.posted[0].headers[IDEMPOTENCY_HEADER] == hook.posted[1].headers[IDEMPOTENCY_HEADER]
    assert sink.inbox[0]["Message-ID"] == sink.inbox[1]["Message-ID"]
    storage.close()


def test_a_refusal_for_good_is_marked_failed_with_its_reason(
    tmp_path: Path, sink: SmtpSink, hook: WebhookReceiver
) -> None:
    stores = stores_for(hook)
    hook.status = 400  # no try can mend it
    storage = open_storage(str(tmp_path / "k.db"))
    store(Writer(storage, stores), AFTERNOON, breakdown(4, AFTERNOON))
    now = [AFTERNOON + 20]
    sender(storage, stores, sink, now).once()
    states = {d.recipient: (d.state, d.last_error) for d in storage.deliveries(S)}
    assert states["mailto:manager@store12.example"] == ("delivered", None)
    state, why = states[hook.url]
    assert state == "failed" and why is not None and "400" in why
    db = str(tmp_path / "k.db")
    shown = run_cli(["alerts", "deliveries", "--store", S, "--db", db])
    said = shown.stdout
    assert shown.returncode == 0 and "FAILED after 1 try" in said and "delivered" in said
    listed = json.loads(
        run_cli(["alerts", "deliveries", "--store", S, "--db", db, "--json"]).stdout
    )
    assert {d["state"] for d in listed} == {"delivered", "failed"}
    storage.close()


def test_the_dashboard_and_the_cli_show_what_was_sent_without_a_webhooks_path(
    tmp_path: Path, sink: SmtpSink, hook: WebhookReceiver
) -> None:
    stores = stores_for(hook)
    db = str(tmp_path / "k.db")
    storage = open_storage(db)
    store(Writer(storage, stores), AFTERNOON, breakdown(4, AFTERNOON))
    hook.status = 503
    sender(storage, stores, sink, [AFTERNOON + 20]).once()
    storage.close()
    server = serve_dashboard("127.0.0.1:0", db, stores, None, now=lambda: AFTERNOON + 30)
    try:
        alerts = httpx.get(f"{server.url}/api/stores/{S}/alerts", timeout=30).json()["alerts"]
    finally:
        server.stop()
    (opened,) = alerts
    sent = {d["to"]: d for d in opened["deliveries"]}
    assert sent["manager@store12.example"]["state"] == "delivered"
    hooked = sent["http://127.0.0.1/…"]
    assert hooked["state"] == "pending" and "503" in hooked["last_error"]
    assert hooked["next_at"] == AFTERNOON + 20 + retry_in(1)
    listed = run_cli(["alerts", "list", "--store", S, "--db", db, "--json"]).stdout
    assert json.loads(listed)[0]["deliveries"] == opened["deliveries"]
    assert "/hook" not in listed and "/hook" not in json.dumps(alerts)


@pytest.mark.e2e
def test_with_two_aggregators_each_delivery_is_sent_once(
    postgres_url: str, sink: SmtpSink, hook: WebhookReceiver
) -> None:
    stores = stores_for(hook)
    storage = open_storage(postgres_url)
    store(Writer(storage, stores), AFTERNOON, breakdown(4, AFTERNOON))
    now = [AFTERNOON + 20]
    mailer = Mailer(sink.url, None, "alerts@chain.example")
    channels = Channels(mailer, None, environ={"HOOK_SECRET": SECRET})
    a, b = (
        Sender(open_storage(postgres_url), stores, channels, leader_for(postgres_url, "sender"),
               now=lambda: now[0])
        for _ in range(2)
    )  # fmt: skip
    try:
        for _ in range(3):
            a.once()
            b.once()
        assert len(hook.posted) == 1 and len(sink.inbox) == 1
    finally:
        for s in (a, b):
            s.leader.close()
            s.storage.close()
        storage.close()


# -- the routing rules ---------------------------------------------------------------------------


def test_quiet_hours_run_past_midnight_in_store_time() -> None:
    cfg = parse_stores(
        f'[stores.{S}]\ntz = "Europe/Berlin"\n[[stores.{S}.notify]]\n'
        'to = "mailto:m@x.example"\nquiet = "21:00-07:00"\n'
    ).get(S)
    (r,) = cfg.notify
    seven = int(datetime(2026, 11, 25, 7, 0, tzinfo=BERLIN).timestamp())
    assert quiet_end(cfg, r, EVENING) == seven
    assert quiet_end(cfg, r, seven - 3600) == seven  # 06:00, yesterday's span
    assert quiet_end(cfg, r, seven) is None and quiet_end(cfg, r, AFTERNOON) is None
    assert routes(cfg, "case_opened", "info", EVENING) == [(r, seven)]
    assert routes(cfg, "breached", "critical", EVENING) == [(r, EVENING)]
    # across the spring change, 07:00 is still 07:00 on the wall
    spring = int(datetime(2026, 3, 28, 22, 0, tzinfo=BERLIN).timestamp())
    end = datetime.fromtimestamp(quiet_end(cfg, r, spring) or 0, BERLIN)
    assert (end.day, end.hour, end.minute) == (29, 7, 0)


def test_only_the_kinds_a_recipient_asked_for() -> None:
    cfg = parse_stores(
        f'[stores.{S}]\n[[stores.{S}.notify]]\nto = "https://chat.example/hook"\n'
        'kinds = ["breached", "escalated"]\nformat = "slack"\n'
    ).get(S)
    assert routes(cfg, "case_opened", "info", AFTERNOON) == []
    assert [r.format for r, _ in routes(cfg, "escalated", "critical", AFTERNOON)] == ["slack"]


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ('to = "mailto:m@x.example"\nkinds = ["case_open"]', "notify[0].kinds"),
        ('to = "ftp://x.example/"', "notify[0].to"),
        ('to = "mailto:not-an-address"', "notify[0].to"),
        ('to = "mailto:m@x.example"\nquiet = "21:00-7"', "notify[0].quiet"),
        ('to = "mailto:m@x.example"\nquiet = "25:00-07:00"', "notify[0].quiet"),
        ('to = "mailto:m@x.example"\nformat = "slack"', "notify[0].format"),
        ('to = "https://x.example/h"\ndigests = ["week"]', "notify[0].digests"),
        ('to = "mailto:m@x.example"\ncc = "y"', "notify[0].cc"),
    ],
)
def test_a_wrong_recipient_is_refused_in_one_line(entry: str, said: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_stores(f"[stores.{S}]\n[[stores.{S}.notify]]\n{entry}\n")
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_a_language_the_kiosk_does_not_speak_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        parse_stores(f'[stores.{S}]\nlanguage = "xx"\n')


# -- end to end: serve with a broker, a mail server and a webhook receiver -----------------------


class Serve:
    """`kiosk-host serve` in a process group of its own, sending to `sink` and `hook`."""

    def __init__(self, broker: Mosquitto, db: Path, stores: Path, sink: SmtpSink) -> None:
        env = {**os.environ, "HOOK_SECRET": SECRET}
        started = int(time.time())
        self.proc = subprocess.Popen(
            [str(KIOSK_HOST), "serve", "--broker", broker.url, "--client-id", "mailing-host",
             "--db", str(db), "--stores", str(stores), "--smtp", sink.url,
             "--mail-from", "alerts@chain.example"],
            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: self.said("serving") or self.proc.poll() is not None, 30, "serve")
        assert self.proc.poll() is None, self.lines
        aggregator_online(broker.url, started)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        self.lines += (line.rstrip("\n") for line in self.proc.stderr)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


@pytest.mark.e2e
def test_serve_tells_the_manager_within_5_s_and_after_a_kill_9_nothing_is_lost_or_repeated(
    fresh_mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sink, hook = SmtpSink().start(), WebhookReceiver().start()
    stores = tmp_path / "stores.toml"
    stores.write_text(
        f'[stores.{S}]\ntz = "Europe/Berlin"\nlanguage = "de"\n'
        f'[[stores.{S}.notify]]\nto = "mailto:manager@store12.example"\ndigests = []\n'
        f'[[stores.{S}.notify]]\nto = "{hook.url}"\nsecret_env = "HOOK_SECRET"\n'
    )
    db = tmp_path / "kiosk.db"
    kiosk = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{S}/till-1")
    kiosk.connect(fresh_mosquitto.host, fresh_mosquitto.port)
    kiosk.loop_start()

    def press(seq: int) -> str:
        now = int(time.time())
        for topic, payload, _ in breakdown(seq, now):
            kiosk.publish(topic, payload, qos=1).wait_for_publish(10)
        return case_code("till-1", seq)

    serve = Serve(fresh_mosquitto, db, stores, sink)
    try:
        first = press(4)
        wait_until(lambda: len(sink.inbox) == 1 and len(hook.posted) == 1, 5, "mail and webhook")
        assert first in str(sink.inbox[0]["Subject"]) and first.encode() in hook.posted[0].body
        sink.stop()  # the receivers go down, a case opens meanwhile
        hook.stop()
        second = press(6)

        def tried() -> bool:
            with contextlib.closing(open_storage(str(db))) as storage:
                return sum(d.attempts for d in storage.deliveries(S)) >= 4

        wait_until(tried, 30, "the second case's deliveries tried and failed")
        serve.kill()  # and the aggregator with them
        sink.start()
        hook.start()
        serve = Serve(fresh_mosquitto, db, stores, sink)
        wait_until(lambda: len(sink.inbox) == 2 and len(hook.posted) == 2, 30, "all delivered")
        time.sleep(2)  # nothing more comes
        assert second in str(sink.inbox[1]["Subject"]) and second.encode() in hook.posted[1].body
        assert len({str(m["Message-ID"]) for m in sink.inbox}) == 2
        assert len({p.headers[IDEMPOTENCY_HEADER] for p in hook.posted}) == 2
    finally:
        serve.kill()
        kiosk.loop_stop()
        kiosk.disconnect()
        sink.stop()
        hook.stop()


def test_the_digests_go_out_at_the_stores_hour_once_each(
    tmp_path: Path, sink: SmtpSink, hook: WebhookReceiver
) -> None:
    stores = parse_stores(
        f'[stores.{S}]\ntz = "Europe/Berlin"\nlanguage = "de"\ndigest_hour = 7\n'
        f'[[stores.{S}.notify]]\nto = "mailto:manager@store12.example"\n'
        f'[[stores.{S}.notify]]\nto = "mailto:area@chain.example"\ndigests = ["week"]\n'
        f'[[stores.{S}.notify]]\nto = "{hook.url}"\n'
    )
    storage = open_storage(str(tmp_path / "k.db"))
    store(Writer(storage, stores), AFTERNOON, breakdown(4, AFTERNOON))
    monday = int(datetime(2026, 11, 30, 7, 0, tzinfo=BERLIN).timestamp())
    now = [monday]
    s = sender(storage, stores, sink, now)
    assert s.keep_digests(monday) == 3  # the day's to one, the week's to both
    assert s.keep_digests(monday + 3600) == 0  # asked again: the same ones
    s.once()
    digests = [m for m in sink.inbox if str(m["Message-ID"]).startswith("<digest-")]
    assert sorted((str(m["To"]), str(m["Message-ID"])) for m in digests) == [
        ("area@chain.example", f"<digest-{S}-week-2026-11-23@kiosk-host>"),
        ("manager@store12.example", f"<digest-{S}-day-2026-11-29@kiosk-host>"),
        ("manager@store12.example", f"<digest-{S}-week-2026-11-23@kiosk-host>"),
    ]
    assert all(m["Content-Language"] == "de" for m in digests)
    assert not any("digest" in p.body.decode() for p in hook.posted)  # webhooks get none
    storage.close()
