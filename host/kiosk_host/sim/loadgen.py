"""Contract-valid kiosk load: many kiosks' ratings, follow-ups and verdicts over real MQTT.

Every simulated kiosk holds one MQTT connection of its own, with the client id a kiosk uses
(`store/device`), all of them in one process on one asyncio loop. The connections are
`aiomqtt` clients: aiomqtt drives paho-mqtt (the client the aggregator and the tests already
trust) from the asyncio loop through paho's socket callbacks, and `await publish(qos=1)`
returns on the broker's PUBACK, so thousands of connections need no thread each and no MQTT
written here. Events go out at QoS 1, each kiosk numbering its own from `seq_from`, with the
time now; the mix (which kiosk, which score, which follow-up is accepted, which case gets a
verdict) is drawn from the seed alone, so a run can be repeated.

With `acks`, each kiosk also subscribes to its own `ack` topic, as the firmware does, and the
report says how soon after each publish the host's mark covered it: publish, commit on the
host, mark published and received, so an upper bound of publish to commit (the host sends a
kiosk's mark at most once a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import random
import ssl
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from kiosk_host.errors import UserError
from kiosk_host.wire import topics
from kiosk_host.wire.broker_url import BrokerUrlError, default_port, public_url
from kiosk_host.wire.identifiers import (
    CODE_ALPHABET,
    KIOSK_LETTERS,
    check_character,
    check_identifier,
)

KINDS = ("rating", "follow_up", "recovery_confirm")
SCALE = 4  # the product's default scale: scores 1 (most unhappy) to 4
SCORE_WEIGHTS = {4: 60, 3: 25, 2: 10, 1: 5}  # per cent of ratings
BREAKDOWN_MAX = 2  # the default low threshold: a score of 2 or less offers a follow-up
ACCEPTED_SHARE = 0.5  # follow-ups accepted (a code shown) rather than declined
VERDICT_SHARE = 0.6  # accepted cases that get a customer's verdict later in the run
VERDICT_AFTER_S = (0.2, 1.0)  # how much later, in seconds of the run's events
OUTCOME_WEIGHTS = {"wow": 35, "fixed": 50, "not_fixed": 15}
SEQ_MAX = 4294967295  # the contract's largest seq
ACK_TIMEOUT_S = 30.0  # a PUBACK not back by then counts the event as failed
CONNECT_TIMEOUT_S = 10.0
ACK_WAIT_S = 30.0  # with acks: the run ends once no kiosk's mark has moved for this long
INFLIGHT = 100  # QoS 1 messages in flight per connection (paho's default of 20 is a kiosk's)
BURST_S = 0.05  # the token bucket holds this much of the rate: timer jitter costs no events
# The firmware's code for a rating (firmware/wire.py, `case_code`): seq spread over 31**3.
_CODES = 31**3
_SPREAD = 7919


class LoadError(UserError, ValueError):
    """A load run that cannot start as asked; the message says what to change."""


def case_code(letter: str, seq: int) -> str:
    """The recovery code a kiosk with `letter` shows for its rating `seq`, as the firmware
    makes it: unique over any 29,791 consecutive seqs, with its check character."""
    n = seq * _SPREAD % _CODES
    a = CODE_ALPHABET
    body = letter + a[n // 961] + a[n // 31 % 31] + a[n % 31]
    return body + check_character(body)


@dataclass(frozen=True)
class Kiosk:
    """One simulated kiosk: its store, its device id and its letter within the store."""

    store: str
    device: str
    letter: str

    @property
    def client_id(self) -> str:
        return f"{self.store}/{self.device}"  # as a kiosk connects: device ids repeat

    @property
    def topic(self) -> str:
        return topics.topic("event", store=self.store, device=self.device)

    @property
    def ack_topic(self) -> str:
        return topics.topic("ack", store=self.store, device=self.device)


Account = tuple[str, str]  # user name and password


def fleet(stores: int, per_store: int, prefix: str = "store") -> list[Kiosk]:
    """The kiosks of a run: stores PREFIX-1..N, each with kiosks till-1..K, lettered A, B, ..."""
    if stores < 1 or not 1 <= per_store <= len(KIOSK_LETTERS):
        raise LoadError(
            f"--stores {stores} --kiosks-per-store {per_store}: give at least one store, and "
            f"1 to {len(KIOSK_LETTERS)} kiosks per store (one code letter each)"
        )
    check_identifier("store", f"{prefix}-{stores}")  # the longest name of the run
    return [
        Kiosk(f"{prefix}-{s}", f"till-{k}", KIOSK_LETTERS[k - 1])
        for s in range(1, stores + 1)
        for k in range(1, per_store + 1)
    ]


def provisioned(kiosks: list[Kiosk], folder: Path) -> tuple[list[Kiosk], dict[Kiosk, Account]]:
    """The kiosks with the letters and broker accounts `kiosk-host provision` gave them, read
    from FOLDER/STORE/DEVICE/identity.json: on a broker that names each client after its
    account, and lets it write only its own topics, every kiosk needs its own."""
    found: list[Kiosk] = []
    accounts: dict[Kiosk, Account] = {}
    for k in kiosks:
        path = folder / k.store / k.device / "identity.json"
        try:
            ident = json.loads(path.read_text(encoding="utf-8"))
            user, password, letter = ident["user"], ident["password"], ident["letter"]
        except (OSError, ValueError, KeyError, TypeError) as why:
            text = why.strerror if isinstance(why, OSError) else f"no {why}"
            raise LoadError(
                f"--devices-dir {folder}: {path}: {text}; provision the run's kiosks first "
                f"(stores PREFIX-1..N, devices till-1..K)"
            ) from None
        kiosk = replace(k, letter=letter)
        found.append(kiosk)
        accounts[kiosk] = (str(user), str(password))
    return found, accounts


@dataclass(frozen=True)
class Event:
    """One event to publish: who sends it, its seq and kind, and the fields of its kind."""

    kiosk: Kiosk
    seq: int
    kind: str
    fields: dict[str, Any]

    def payload(self, ts: int, up_ms: int) -> bytes:
        """The payload as the kiosk writes it: the contract's fields in the firmware's order,
        compact UTF-8 JSON."""
        k = self.kiosk
        head = {"v": 1, "kind": self.kind, "store": k.store, "device": k.device,
                "seq": self.seq, "ts": ts, "up_ms": up_ms}  # fmt: skip
        return json.dumps({**head, **self.fields}, separators=(",", ":")).encode()


@dataclass(order=True)
class _Verdict:
    due: int  # the event index from which it may go out
    order: int  # ties broken in the order the cases were opened
    kiosk: Kiosk = field(compare=False)  # where the customer gives it: any kiosk of the store
    code: str = field(compare=False)
    outcome: str = field(compare=False)
    opened_by: tuple[str, str, int] = field(compare=False)  # the accepted follow-up's event


def _weighted(rng: random.Random, weights: dict[Any, int]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


class Mix:
    """The events of a run, one at a time: ratings from kiosks drawn at random, the follow-up
    right after each breakdown on its kiosk, and for some accepted cases a verdict a little
    later on a kiosk of the same store. Ratings and cases draw from two generators seeded
    alike, so a verdict that waits for its case does not change what the ratings are."""

    def __init__(self, kiosks: list[Kiosk], seed: int, seq_from: int, rate: float) -> None:
        self.kiosks = kiosks
        self.by_store: dict[str, list[Kiosk]] = {}
        for k in kiosks:
            self.by_store.setdefault(k.store, []).append(k)
        self.next_seq = dict.fromkeys(kiosks, seq_from)
        self._ratings = random.Random(f"{seed}/ratings")
        self._cases = random.Random(f"{seed}/cases")
        self._follow_ups: deque[tuple[Kiosk, int]] = deque()  # (kiosk, rating seq)
        self._verdicts: list[_Verdict] = []  # a heap by due index
        self._opened = 0
        self._after = (
            max(1, round(VERDICT_AFTER_S[0] * rate)),
            max(1, round(VERDICT_AFTER_S[1] * rate)),
        )

    def _seq(self, kiosk: Kiosk) -> int:
        seq = self.next_seq[kiosk]
        self.next_seq[kiosk] = seq + 1
        return seq

    def next(self, index: int, acked: Callable[[tuple[str, str, int]], bool]) -> Event:
        """The event at position `index` of the run. A verdict goes out only once the broker
        has acknowledged the follow-up that opened its case (`acked`): from another kiosk's
        connection it could otherwise reach the host first, for a case not yet opened."""
        if self._follow_ups:
            kiosk, rating_seq = self._follow_ups.popleft()
            return self._follow_up(index, kiosk, rating_seq)
        if self._verdicts and self._verdicts[0].due <= index and acked(self._verdicts[0].opened_by):
            v = heapq.heappop(self._verdicts)
            verdict: dict[str, Any] = {"case": v.code, "outcome": v.outcome}
            return Event(v.kiosk, self._seq(v.kiosk), "recovery_confirm", verdict)
        kiosk = self._ratings.choice(self.kiosks)
        score = _weighted(self._ratings, SCORE_WEIGHTS)
        seq = self._seq(kiosk)
        if score <= BREAKDOWN_MAX:
            self._follow_ups.append((kiosk, seq))
        rating: dict[str, Any] = {"score": score, "scale": SCALE, "station": kiosk.device}
        return Event(kiosk, seq, "rating", {**rating, "staff": None})

    def _follow_up(self, index: int, kiosk: Kiosk, rating_seq: int) -> Event:
        seq = self._seq(kiosk)
        fields: dict[str, Any] = {"rating_seq": rating_seq, "accepted": False}
        if self._cases.random() < ACCEPTED_SHARE:
            code = case_code(kiosk.letter, rating_seq)
            fields.update(accepted=True, code=code)
            if self._cases.random() < VERDICT_SHARE:
                self._opened += 1
                heapq.heappush(
                    self._verdicts,
                    _Verdict(
                        due=index + self._cases.randint(*self._after),
                        order=self._opened,
                        kiosk=self._cases.choice(self.by_store[kiosk.store]),
                        code=code,
                        outcome=_weighted(self._cases, OUTCOME_WEIGHTS),
                        opened_by=(kiosk.store, kiosk.device, seq),
                    ),
                )
        return Event(kiosk, seq, "follow_up", fields)


class TokenBucket:
    """Paces events evenly at `rate` a second, holding at most `burst` tokens, so that a late
    timer is made up for at once but the rate is never exceeded for longer than the burst."""

    def __init__(self, rate: float, burst: float, now: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.now = now
        self.tokens = 1.0
        self.at = now()

    async def take(self) -> None:
        while True:
            t = self.now()
            self.tokens = min(self.burst, self.tokens + (t - self.at) * self.rate)
            self.at = t
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return
            await asyncio.sleep((1.0 - self.tokens) / self.rate)


@dataclass
class KioskFigures:
    """What one kiosk sent: its first and last seq, events sent and acknowledged."""

    first_seq: int | None = None
    last_seq: int | None = None
    sent: int = 0
    acked: int = 0
    host_mark: int | None = None  # with acks: the last mark the host published for it
    waiting: deque[tuple[int, float]] = field(default_factory=deque)  # (seq, published at)


@dataclass
class Report:
    """What a run sent and what the broker acknowledged, for a benchmark to compare with what
    the host stored."""

    broker: str
    seed: int
    rate: float
    duration_s: float
    sent: Counter[str] = field(default_factory=Counter)  # by kind
    acked: int = 0
    failed: int = 0
    scores: Counter[int] = field(default_factory=Counter)
    accepted: int = 0  # follow-ups that carried a code, so opened a case
    elapsed_s: float = 0.0  # from the first publish to the last PUBACK or failure
    kiosks: dict[str, KioskFigures] = field(default_factory=dict)  # by "store/device"
    errors: Counter[str] = field(default_factory=Counter)  # why events failed
    acks: bool = False  # whether the kiosks heard the host's marks
    host_acked: int = 0  # events a mark of the host covered
    to_ack_s: list[float] = field(default_factory=list)  # publish -> mark received, each

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def achieved_rate(self) -> float:
        return self.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def ack_ms(self, share: float) -> float | None:
        """The publish-to-mark time (ms) that `share` of the covered events came within."""
        if not self.to_ack_s:
            return None
        if share == 0.5:
            return statistics.median(self.to_ack_s) * 1000
        ordered = sorted(self.to_ack_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000

    def per_store(self) -> dict[str, dict[str, int]]:
        stores: dict[str, dict[str, int]] = {}
        for name, k in self.kiosks.items():
            s = stores.setdefault(name.split("/")[0], {"sent": 0, "acked": 0})
            s["sent"] += k.sent
            s["acked"] += k.acked
        return stores

    def as_json(self) -> dict[str, Any]:
        out = self._json()
        if self.acks:
            p50, p99 = self.ack_ms(0.5), self.ack_ms(0.99)
            out["host_acked"] = self.host_acked
            out["ack_p50_ms"] = None if p50 is None else round(p50, 1)
            out["ack_p99_ms"] = None if p99 is None else round(p99, 1)
            for name, k in self.kiosks.items():
                out["kiosks"][name]["host_mark"] = k.host_mark
        return out

    def _json(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "seed": self.seed,
            "rate": self.rate,
            "duration_s": self.duration_s,
            "sent": {kind: self.sent[kind] for kind in KINDS},
            "total": self.total,
            "acked": self.acked,
            "failed": self.failed,
            "errors": dict(self.errors),
            "scores": {str(s): self.scores[s] for s in range(1, SCALE + 1)},
            "follow_ups_accepted": self.accepted,
            "elapsed_s": round(self.elapsed_s, 3),
            "achieved_rate": round(self.achieved_rate, 1),
            "stores": self.per_store(),
            "kiosks": {
                name: {
                    "first_seq": k.first_seq,
                    "last_seq": k.last_seq,
                    "sent": k.sent,
                    "acked": k.acked,
                }
                for name, k in self.kiosks.items()
            },
        }

    def lines(self) -> Iterable[str]:
        kinds = ", ".join(f"{self.sent[k]} {k}" for k in KINDS)
        yield f"sent {self.total} events to {self.broker}: {kinds}"
        yield (
            f"acknowledged {self.acked}, failed {self.failed}"
            + "".join(f"; {n} x {why}" for why, n in self.errors.most_common())
        )
        scores = ", ".join(f"{s}: {self.scores[s]}" for s in range(SCALE, 0, -1))
        yield f"ratings by score {scores}; follow-ups accepted {self.accepted}"
        yield (
            f"{self.achieved_rate:.0f} events/s acknowledged over {self.elapsed_s:.2f} s "
            f"(asked: {self.rate:g}/s for {self.duration_s:g} s; seed {self.seed})"
        )
        if self.acks:
            p50, p99 = self.ack_ms(0.5), self.ack_ms(0.99)
            times = "" if p50 is None or p99 is None else f": p50 {p50:.0f} ms, p99 {p99:.0f} ms"
            yield (
                f"host acknowledged {self.host_acked} of {self.total}{times} from publish to "
                "the kiosk's ack received (publish -> commit -> ack received: an upper bound "
                "of publish -> commit)"
            )
        for store, s in self.per_store().items():
            yield f"{store}: sent {s['sent']}, acknowledged {s['acked']}"
        for name, k in self.kiosks.items():
            seqs = "nothing" if k.first_seq is None else f"seq {k.first_seq}..{k.last_seq}"
            yield f"  {name}: {seqs} ({k.sent} sent, {k.acked} acknowledged)"


@dataclass(frozen=True)
class Options:
    broker: str  # mqtt[s]://[USER[:PASSWORD]@]HOST[:PORT], the password already filled in
    stores: int
    kiosks_per_store: int
    rate: float  # events a second over all kiosks
    duration_s: float
    seed: int
    seq_from: int = 1
    prefix: str = "store"
    ca: str | None = None  # the CA certificate to trust, for mqtts://
    devices_dir: Path | None = None  # the kiosks' own accounts, as `provision` wrote them
    acks: bool = False  # each kiosk hears its ack topic; the report times the host's marks
    ack_wait_s: float = ACK_WAIT_S  # with acks: how long to wait for a mark that does not move


def _check(opts: Options) -> int:
    """The number of events the run sends, once its options are known to be usable."""
    if opts.rate <= 0 or opts.duration_s <= 0:
        raise LoadError("--rate and --duration must be above 0")
    total = int(opts.rate * opts.duration_s)
    if total < 1:
        raise LoadError(f"--rate {opts.rate:g} for --duration {opts.duration_s:g} s is no event")
    if not 1 <= opts.seq_from <= SEQ_MAX - total:
        raise LoadError(f"--seq-from {opts.seq_from}: seqs run from 1 to {SEQ_MAX}")
    if opts.ack_wait_s <= 0:
        raise LoadError("--ack-wait must be above 0")
    if opts.ca is not None and not opts.broker.startswith("mqtts://"):
        raise BrokerUrlError("--ca is for a TLS broker: give --broker mqtts://HOST:PORT")
    return total


def _tls(opts: Options) -> ssl.SSLContext | None:
    """For mqtts://, TLS trusting the CA certificate --ca (else the system's), one context
    for every connection; the broker's name is checked against its certificate."""
    if not opts.broker.startswith("mqtts://"):
        return None
    try:
        return ssl.create_default_context(cafile=opts.ca)
    except (OSError, ssl.SSLError) as why:
        raise BrokerUrlError(f"--ca {opts.ca}: {why}") from None


def _client(
    kiosk: Kiosk, opts: Options, account: Account | None, tls: ssl.SSLContext | None
) -> aiomqtt.Client:
    """The kiosk's connection: its own account when it has one, else the URL's (or none)."""
    u = urlparse(opts.broker)
    user = unquote(u.username) if u.username else None
    password = unquote(u.password) if u.password is not None else None
    if account is not None:
        user, password = account
    return aiomqtt.Client(
        u.hostname or "127.0.0.1",
        u.port or default_port(u.scheme),
        username=user,
        password=password,
        identifier=kiosk.client_id,
        clean_session=True,  # nothing to receive: a load run leaves no session behind
        timeout=CONNECT_TIMEOUT_S,
        max_inflight_messages=INFLIGHT,
        tls_context=tls,
    )


async def _connect(clients: dict[Kiosk, aiomqtt.Client], opts: Options) -> None:
    """Connect every kiosk; on any failure disconnect the others and say why in one line."""
    results = await asyncio.gather(
        *(c.__aenter__() for c in clients.values()), return_exceptions=True
    )
    failed = [(k, r) for k, r in zip(clients, results, strict=True) if isinstance(r, BaseException)]
    if failed:
        await _disconnect(c for c, r in zip(clients.values(), results, strict=True)
                          if not isinstance(r, BaseException))  # fmt: skip
        kiosk, why = failed[0]
        if not isinstance(why, aiomqtt.MqttError):
            raise why
        raise LoadError(
            f"cannot connect {len(failed)} of {len(clients)} kiosks to the broker at "
            f"{public_url(opts.broker)} (the first, {kiosk.client_id}: {why})"
        )


async def _disconnect(clients: Iterable[aiomqtt.Client]) -> None:
    await asyncio.gather(*(c.__aexit__(None, None, None) for c in clients), return_exceptions=True)


async def _subscribe_acks(clients: dict[Kiosk, aiomqtt.Client], opts: Options) -> None:
    """Subscribe every kiosk to its own ack topic (the host's mark comes retained at once);
    a refusal is one line, as a kiosk whose account may not read it would never let go."""
    results = await asyncio.gather(
        *(c.subscribe(k.ack_topic, qos=1, timeout=CONNECT_TIMEOUT_S) for k, c in clients.items()),
        return_exceptions=True,
    )
    for kiosk, granted in zip(clients, results, strict=True):
        if isinstance(granted, BaseException) and not isinstance(granted, aiomqtt.MqttError):
            raise granted
        if isinstance(granted, BaseException) or any(_refused(q) for q in granted):
            why = granted if isinstance(granted, BaseException) else "refused"
            raise LoadError(
                f"--acks: the broker at {public_url(opts.broker)} did not let {kiosk.client_id} "
                f"subscribe to {kiosk.ack_topic} ({why})"
            )


def _refused(granted: int | ReasonCode) -> bool:
    """A SUBACK's answer for one topic is a refusal (0x80 and up, in either MQTT version)."""
    return granted.is_failure if isinstance(granted, ReasonCode) else granted >= 0x80


def _mark(payload: object) -> int | None:
    """The seq of a mark the host published, None for anything else."""
    if not isinstance(payload, bytes | bytearray | str):
        return None
    try:
        seq = json.loads(payload)["seq"]
    except (ValueError, KeyError, TypeError):
        return None
    return seq if isinstance(seq, int) else None


async def run(opts: Options, out: Callable[[str], None] | None = None) -> Report:
    """Connect every kiosk, publish `rate * duration` events paced evenly, wait for every
    PUBACK (or its failure), disconnect, and report. `out` hears progress, once a second.
    With `acks`, every kiosk first subscribes to its ack topic, and after the last PUBACK the
    run waits for the host's marks (`_await_marks`)."""
    total = _check(opts)
    kiosks = fleet(opts.stores, opts.kiosks_per_store, opts.prefix)
    accounts: dict[Kiosk, Account] = {}
    if opts.devices_dir is not None:
        kiosks, accounts = provisioned(kiosks, opts.devices_dir)
    report = Report(public_url(opts.broker), opts.seed, opts.rate, opts.duration_s)
    report.kiosks = {k.client_id: KioskFigures() for k in kiosks}
    tls = _tls(opts)
    clients = {k: _client(k, opts, accounts.get(k), tls) for k in kiosks}
    await _connect(clients, opts)
    loop = asyncio.get_running_loop()
    listeners: list[asyncio.Task[None]] = []
    moved = [loop.time()]  # when a mark of the host last covered a new event

    async def listen(kiosk: Kiosk, figures: KioskFigures) -> None:
        """The kiosk's ack topic: each mark lets go of the events it covers, timed."""
        with contextlib.suppress(aiomqtt.MqttError):
            async for message in clients[kiosk].messages:
                mark = _mark(message.payload)
                if mark is None:
                    continue
                now = loop.time()
                figures.host_mark = max(mark, figures.host_mark or 0)
                if figures.waiting and figures.waiting[0][0] <= mark:
                    moved[0] = now
                while figures.waiting and figures.waiting[0][0] <= mark:
                    report.to_ack_s.append(now - figures.waiting.popleft()[1])
                    report.host_acked += 1

    if opts.acks:
        report.acks = True
        try:
            await _subscribe_acks(clients, opts)
        except BaseException:
            await _disconnect(clients.values())
            raise
        listeners = [loop.create_task(listen(k, report.kiosks[k.client_id])) for k in clients]
    acked: set[tuple[str, str, int]] = set()  # accepted follow-ups the broker has
    pending: set[asyncio.Task[None]] = set()
    mix = Mix(kiosks, opts.seed, opts.seq_from, opts.rate)
    t0 = loop.time()
    last = [t0]

    async def publish(event: Event, figures: KioskFigures, payload: bytes) -> None:
        try:
            await clients[event.kiosk].publish(
                event.kiosk.topic, payload, qos=1, timeout=ACK_TIMEOUT_S
            )
        except aiomqtt.MqttError as why:
            report.failed += 1
            report.errors[str(why) or type(why).__name__] += 1
        else:
            report.acked += 1
            figures.acked += 1
            if event.kind == "follow_up" and event.fields["accepted"]:
                acked.add((event.kiosk.store, event.kiosk.device, event.seq))
        last[0] = loop.time()

    try:
        bucket = TokenBucket(opts.rate, opts.rate * BURST_S, loop.time)
        said = t0
        for index in range(total):
            await bucket.take()
            event = mix.next(index, acked.__contains__)
            now = loop.time()
            payload = event.payload(int(time.time()), int((now - t0) * 1000))
            figures = report.kiosks[event.kiosk.client_id]
            if figures.first_seq is None:
                figures.first_seq = event.seq
            figures.last_seq = event.seq
            figures.sent += 1
            if opts.acks:
                figures.waiting.append((event.seq, now))
            report.sent[event.kind] += 1
            if event.kind == "rating":
                report.scores[event.fields["score"]] += 1
            elif event.kind == "follow_up" and event.fields["accepted"]:
                report.accepted += 1
            task = loop.create_task(publish(event, figures, payload))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if out is not None and now - said >= 1.0:
                said = now
                out(f"{index + 1} of {total} events sent, {report.acked} acknowledged")
        if pending:
            await asyncio.gather(*pending)
        if opts.acks:
            await _await_marks(report, opts, loop.time, moved, out)
    finally:
        for task in (*pending, *listeners):
            task.cancel()
        with contextlib.suppress(Exception):
            await _disconnect(clients.values())
    report.elapsed_s = last[0] - t0
    return report


async def _await_marks(
    report: Report,
    opts: Options,
    now: Callable[[], float],
    moved: list[float],
    out: Callable[[str], None] | None,
) -> None:
    """Wait until the host's marks cover every event sent, or none has moved for
    `ack_wait_s` (an event the host never stored keeps its kiosk's mark below it)."""
    moved[0] = max(moved[0], now())
    said = now()
    while report.host_acked < report.total and now() - moved[0] < opts.ack_wait_s:
        await asyncio.sleep(0.1)
        if out is not None and now() - said >= 1.0:
            said = now()
            out(f"{report.host_acked} of {report.total} events acknowledged by the host")
