"""`make bench-chain`: a chain's 1,500 kiosks against one, then two `serve --share` aggregators.

A mosquitto with the shipped settings (persistence on, in the run's folder; accounts and the
ACL as provisioning writes them: each kiosk bound to its own account, one account per
aggregator) and a throw-away PostgreSQL. Each run of `kiosk-host loadgen --acks` plays 1,500
kiosks in 500 stores (stores of its own, each kiosk numbering from 1):

1. one aggregator: a steady run below the ceiling (publish -> ack without a queue), then a
   run offered above it, so that the rate stored is the ceiling;
2. the same with two aggregators, and the ratio of the rates stored;
3. two aggregators offered the same, the leader killed with SIGKILL in the middle of the run
   and started again a few seconds later; then every event sent must be stored, each once.

Each phase prints the events stored per second (counted in PostgreSQL), publish -> commit ->
ack received as the kiosks see it (p50, p99), and the CPU each process used, from
/proc/PID/stat, so that what bounds the figures on this machine is measured. Exit 1 when an
event the broker acknowledged is not stored exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.aggregator.receiver import HOST_STATUS
from kiosk_host.fleet.provision import acl_block, acl_head
from kiosk_host.wire.identifiers import KIOSK_LETTERS
from tests.broker import Mosquitto
from tests.postgres import Postgres
from tests.virtual_kiosks import KIOSK_HOST

STORES, PER_STORE = 500, 3
RATE, PHASE_S = 2000, 30  # offered events/s over all kiosks, above what two cores store
STEADY_RATE, STEADY_S = 300, 15  # below it: publish -> ack without a queue
GROUP = "chain"
AGGREGATORS = ("kiosk-host", "kiosk-host-b")  # one account each, as `provision` names them
WATCH = "bench-watch"  # reads the aggregators' status only: to know each has subscribed
KILL_AFTER = 0.4  # phase 3: the leader is killed once this share of the run is stored
RESTART_AFTER_S = 5.0
ACK_WAIT_S = 10.0  # loadgen ends once no kiosk's mark has moved for this long
DRAIN_QUIET_S = 60.0  # the stream has drained once nothing was stored for this long
TICKS = os.sysconf("SC_CLK_TCK")


def say(line: str = "") -> None:
    print(line, flush=True)


# --- accounts --------------------------------------------------------------------------------


@dataclass
class Accounts:
    folder: Path  # passwd and acl, as the broker reads them
    devices: Path  # DIR/STORE/DEVICE/identity.json per kiosk, as loadgen --devices-dir reads
    passwords: dict[str, str] = field(default_factory=dict)


def make_accounts(tmp: Path, prefixes: list[str]) -> Accounts:
    """Every kiosk of every phase, each aggregator and the watcher: one account each, the
    kiosks' ACL lines as provisioning writes them; hashed in one mosquitto_passwd call."""
    acc = Accounts(tmp / "auth", tmp / "devices")
    acc.folder.mkdir()
    acl = [acl_head()]
    for prefix in prefixes:
        for s in range(1, STORES + 1):
            store = f"{prefix}-{s}"
            for k in range(1, PER_STORE + 1):
                device, letter = f"till-{k}", KIOSK_LETTERS[k - 1]
                user = f"{store}/{device}"
                acc.passwords[user] = f"pw-{prefix}-{s}-{k}"
                folder = acc.devices / store / device
                folder.mkdir(parents=True)
                ident = {"store": store, "device": device, "letter": letter, "user": user,
                         "password": acc.passwords[user]}  # fmt: skip
                (folder / "identity.json").write_text(json.dumps(ident))
                acl.append(acl_block(store, device, letter))
    for name in AGGREGATORS[1:]:  # `kiosk-host` is in the shipped lines already
        acl.append(f"\nuser {name}\ntopic readwrite kiosk/#\ntopic read $SYS/#\n")
    acl.append(f"\nuser {WATCH}\ntopic read {HOST_STATUS}\n")
    for user in (*AGGREGATORS, WATCH):
        acc.passwords[user] = f"pw-{user}"
    (acc.folder / "acl").write_text("".join(acl))
    passwd = acc.folder / "passwd"
    passwd.write_text("".join(f"{u}:{p}\n" for u, p in acc.passwords.items()))
    tool = shutil.which("mosquitto_passwd") or "mosquitto_passwd"
    subprocess.run([tool, "-U", str(passwd)], check=True, capture_output=True, timeout=120)
    return acc


# --- processes -------------------------------------------------------------------------------


def stop_group(proc: subprocess.Popen[Any] | None, timeout: float = 30.0) -> None:
    """SIGTERM to the process (a clean stop: serve stops its writer process itself), then
    SIGKILL to whatever of its process group is left, or did not end in time."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


class Aggregator:
    """`kiosk-host serve --share` on an account of its own, in a process group of its own
    (receiver and writer process), so that a kill -9 takes both, as a crash would."""

    def __init__(self, name: str, broker: Mosquitto, db: str, password: str, log: Path) -> None:
        self.name = name
        self.args = [str(KIOSK_HOST), "serve", "--broker", f"mqtt://{name}@{broker.host}:"
                     f"{broker.port}", "--db", db, "--share", GROUP, "--client-id", name,
                     "--broker-dir", ""]  # fmt: skip
        self.env = {**os.environ, "KIOSK_BROKER_PASSWORD": password}  # never on the command line
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=self.env,
                start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_group(self.proc)

    def said(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text) if self.log.exists() else 0


class StatusWatcher:
    """The aggregators' status topic: an aggregator that said online has subscribed (it
    subscribes, then says so, on one connection)."""

    def __init__(self, broker: Mosquitto, password: str) -> None:
        self.online: list[str] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=WATCH)
        self.client.username_pw_set(WATCH, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(HOST_STATUS, qos=1)
        self.client.on_message = self._heard
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _heard(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            status = json.loads(msg.payload)
            if status["state"] == "online":
                self.online.append(status["host"])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


# --- CPU and what is stored ------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgid, utime + stime in ticks) of a live process, None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12])


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) ticks of the whole machine, every core, from /proc/stat."""
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = cpu[3] + cpu[4]  # idle and iowait
    return sum(cpu[:8]) - idle, sum(cpu[:8])


class CpuMeter:
    """CPU used by each role over a stretch of time: every process of a role's process group
    (or the PostgreSQL server and its backends) read from /proc every half second, so that a
    process that starts or ends meanwhile counts for the time it ran."""

    def __init__(self, roles: Callable[[], dict[str, int]], postgres: int) -> None:
        self.roles = roles  # role -> process group
        self.postgres = postgres  # the server's pid: it and its children are "postgres"
        self._started = False
        self.first: dict[int, int] = {}
        self.last: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        groups = {pgid: role for role, pgid in self.roles().items()}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            st = _stat(pid)
            if st is None:
                continue
            ppid, pgid, ticks = st
            if pid == self.postgres or ppid == self.postgres:
                role = "postgres"
            elif pgid in groups:
                role = groups[pgid]
            else:
                continue
            self.first.setdefault(pid, ticks if self._started else 0)
            self.last[pid] = (role, ticks)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._started = True
        self._sample()
        self._started = False  # a process first seen later started in the stretch
        self.machine = _machine_ticks()
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = time.monotonic() - self.t0
        busy, total = _machine_ticks()
        self.busy_pct = 100.0 * (busy - self.machine[0]) / max(1, total - self.machine[1])

    def per_role(self) -> dict[str, float]:
        """% of one core each role used, averaged over the stretch."""
        used: dict[str, float] = {}
        for pid, (role, ticks) in self.last.items():
            used[role] = used.get(role, 0.0) + (ticks - self.first.get(pid, 0)) / TICKS
        return {role: 100.0 * s / self.seconds for role, s in used.items()}


class StoredCount:
    """Events stored, counted in PostgreSQL once a second: (monotonic time, count) each."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.samples: list[tuple[float, int]] = []

    def count(self, prefix: str | None = None) -> int:
        if prefix is None:
            row = self.conn.execute("SELECT count(*) FROM events").fetchone()
        else:
            row = self.conn.execute(
                "SELECT count(*) FROM events WHERE store LIKE %s", (f"{prefix}-%",)
            ).fetchone()
        return int(row[0]) if row else 0

    def sample(self, prefix: str) -> int:
        n = self.count(prefix)
        self.samples.append((time.monotonic(), n))
        return n

    def rate(self, total: int) -> float:
        """Events stored per second from 5 % to 95 % of `total`: the stretch in which the
        chain stored at the pace it could, without the connecting at the start or the
        last few stragglers."""
        lo = next((t for t, n in self.samples if n >= total * 0.05), None)
        hi = next((t for t, n in self.samples if n >= total * 0.95), None)
        if lo is None or hi is None or hi <= lo:
            return 0.0
        return total * 0.9 / (hi - lo)

    def close(self) -> None:
        self.conn.close()


# --- a run of loadgen ------------------------------------------------------------------------


@dataclass
class Run:
    """One loadgen run (kiosks of its own: stores PREFIX-1..500, each seq from 1) and what it
    measured."""

    prefix: str
    rate: int
    seconds: int
    seed: int
    report: dict[str, Any] = field(default_factory=dict)
    stored_rate: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    busy_pct: float = 0.0
    measured_s: float = 0.0

    @property
    def total(self) -> int:
        return self.rate * self.seconds


@dataclass
class Phase:
    name: str
    load: Run  # offered above the ceiling: what is stored per second
    steady: Run | None = None  # offered below it: publish to ack without a queue


def run_loadgen(broker: Mosquitto, acc: Accounts, run: Run, tmp: Path) -> subprocess.Popen[bytes]:
    out = (tmp / f"{run.prefix}.json").open("wb")
    err = (tmp / f"{run.prefix}.err").open("wb")
    with out, err:
        return subprocess.Popen(
            [str(KIOSK_HOST), "loadgen", "--broker", broker.url, "--stores", str(STORES),
             "--kiosks-per-store", str(PER_STORE), "--rate", str(run.rate), "--duration",
             str(run.seconds), "--seed", str(run.seed), "--prefix", run.prefix,
             "--devices-dir", str(acc.devices), "--acks", "--ack-wait", str(ACK_WAIT_S),
             "--json"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )  # fmt: skip


def measure(
    run: Run,
    broker: Mosquitto,
    acc: Accounts,
    counter: StoredCount,
    roles: Callable[[], dict[str, int]],
    postgres_pid: int,
    tmp: Path,
    during: Callable[[int], None] | None = None,
) -> None:
    """Run loadgen, the stored count sampled each second and CPU measured until the run is
    stored (not while loadgen waits for a mark that does not come); `during` hears the
    stored count each second (phase 3's kill)."""
    loadgen = run_loadgen(broker, acc, run, tmp)
    counter.samples = []

    def tick() -> None:
        if during is not None:
            during(counter.samples[-1][1])
        time.sleep(1.0)

    try:
        with CpuMeter(lambda: {**roles(), "loadgen": loadgen.pid}, postgres_pid) as meter:
            while loadgen.poll() is None and counter.sample(run.prefix) < run.total:
                tick()
        while loadgen.poll() is None:
            counter.sample(run.prefix)
            tick()
        counter.sample(run.prefix)
    finally:
        stop_group(loadgen, 5)
    err = (tmp / f"{run.prefix}.err").read_text(errors="replace")
    text = (tmp / f"{run.prefix}.json").read_text()
    if not text.strip():
        raise RuntimeError(f"loadgen ended with {loadgen.returncode} and no report: {err[-2000:]}")
    run.report = json.loads(text)
    run.stored_rate = counter.rate(run.report["acked"])
    run.cpu = meter.per_role()
    run.busy_pct = meter.busy_pct
    run.measured_s = meter.seconds


def acks_line(run: Run, what: str) -> str:
    r = run.report
    p50, p99 = r["ack_p50_ms"] or 0, r["ack_p99_ms"] or 0
    line = (
        f"  publish -> commit -> ack received {what}: p50 {p50:,.0f} ms, p99 {p99:,.0f} ms; "
        f"{r['host_acked']:,} of {r['total']:,} acknowledged by the host"
    )
    stuck = [k for k in r["kiosks"].values() if k["sent"] and k["host_mark"] != k["last_seq"]]
    if stuck:
        line += f" ({len(stuck)} kiosks' marks stopped below their last seq)"
    return line


def print_phase(phase: Phase) -> None:
    run, r = phase.load, phase.load.report
    say(f"  {r['total']:,} events offered at {run.rate:,}/s for {run.seconds} s; acknowledged "
        f"by the broker {r['acked']:,} (failed {r['failed']}); loadgen published at "
        f"{r['achieved_rate']:,.0f}/s")  # fmt: skip
    say(f"  stored: {run.stored_rate:,.0f} events/s sustained (5 % to 95 % of the run stored, "
        f"counted in PostgreSQL)")  # fmt: skip
    if phase.steady is not None:
        say(acks_line(phase.steady, f"at {phase.steady.rate}/s, below the ceiling"))
    say(acks_line(run, "under the load above (its queue included)"))
    say(f"  CPU over {run.measured_s:.0f} s (100 % = one core): {cpu_text(run)}")


def cpu_text(run: Run) -> str:
    ours = sum(run.cpu.values())
    cores = os.cpu_count() or 1
    others = max(0.0, run.busy_pct * cores - ours)
    parts = ", ".join(f"{role} {pct:.0f} %" for role, pct in sorted(run.cpu.items()))
    return (
        f"{parts}; all of these {ours:.0f} %, everything else on the machine {others:.0f} %; "
        f"the {cores} cores {run.busy_pct:.0f} % busy"
    )


def explain(one: Run, two: Run) -> str:
    """What bounds the ratio, from the CPU measured in the two phases."""
    cores = os.cpu_count() or 1

    def aggs(run: Run) -> float:
        return sum(v for k, v in run.cpu.items() if k.startswith("aggregator"))

    chain = (
        f"the aggregators together {aggs(one):.0f} % of a core with one, {aggs(two):.0f} % "
        f"with two; PostgreSQL {one.cpu.get('postgres', 0):.0f} % and "
        f"{two.cpu.get('postgres', 0):.0f} %; loadgen {one.cpu.get('loadgen', 0):.0f} % and "
        f"{two.cpu.get('loadgen', 0):.0f} %"
    )
    if min(one.busy_pct, two.busy_pct) >= 85:
        return (
            f"CPU. The {cores} cores were {one.busy_pct:.0f} % and {two.busy_pct:.0f} % busy; "
            f"{chain}. A second aggregator brings no core of its own here: the two share the "
            f"same cores with PostgreSQL, mosquitto and loadgen (and whatever else runs on "
            f"the machine), so what one more stores is taken from the others"
        )
    if max(one.cpu.get("loadgen", 0), two.cpu.get("loadgen", 0)) >= 90:
        return f"loadgen, one Python process at a full core: {chain}"
    return (
        f"not the CPU alone (the {cores} cores {one.busy_pct:.0f} % and {two.busy_pct:.0f} % "
        f"busy): {chain}; the rest is waiting, on PostgreSQL's commits and row locks of a "
        f"store held by one member while the other waits"
    )


# --- the leader, and the check of phase 3 ---------------------------------------------------


def leading(counter: StoredCount, aggs: list[Aggregator]) -> Aggregator:
    """The aggregator that holds the group's advisory lock: the PostgreSQL backend holding it
    names the client's TCP port; the socket of that port is among one aggregator's files."""
    row = counter.conn.execute(
        "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted"
    ).fetchone()
    if row is None:
        raise RuntimeError("no aggregator leads the group")
    port = f":{int(row[0]):04X} "
    inodes = {
        line.split()[9]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[1].endswith(port.strip()) and line.split()[1].startswith("0100007F")
    }
    for agg in aggs:
        if agg.proc is None or agg.proc.poll() is not None:
            continue
        for entry in os.scandir("/proc"):
            st = _stat(int(entry.name)) if entry.name.isdigit() else None
            if st is None or st[1] != agg.proc.pid:
                continue
            with contextlib.suppress(OSError):
                for fd in os.scandir(f"/proc/{entry.name}/fd"):
                    link = os.readlink(fd.path)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return agg
    raise RuntimeError(f"no aggregator holds the connection on port {int(row[0])}")


def check_stored(counter: StoredCount, runs: list[Run]) -> list[str]:
    """Every event the broker acknowledged, stored exactly once: the count of rows equals the
    count of distinct (store, device, seq), and each kiosk's stored seqs are the range the
    loadgen report gives for it. The problems found, none when all is well."""
    problems: list[str] = []
    rows, distinct = counter.conn.execute(
        "SELECT count(*), count(DISTINCT (store, device, seq)) FROM events"
    ).fetchone() or (0, 0)
    if rows != distinct:
        problems.append(f"{rows - distinct} events stored more than once")
    for run in runs:
        got = {
            f"{s}/{d}": (int(n), int(lo), int(hi))
            for s, d, n, lo, hi in counter.conn.execute(
                "SELECT store, device, count(*), min(seq), max(seq) FROM events WHERE store LIKE "
                "%s GROUP BY store, device",
                (f"{run.prefix}-%",),
            ).fetchall()
        }
        for name, k in run.report["kiosks"].items():
            if k["sent"] == 0:
                continue
            want = (k["sent"], k["first_seq"], k["last_seq"])
            if k["acked"] != k["sent"] or got.get(name) != want:
                store, device = name.split("/")
                have = {
                    int(seq)
                    for (seq,) in counter.conn.execute(
                        "SELECT seq FROM events WHERE store = %s AND device = %s", (store, device)
                    ).fetchall()
                }
                missing = sorted(set(range(k["first_seq"], k["last_seq"] + 1)) - have)
                letters = counter.conn.execute(
                    "SELECT rule, reason FROM dead_letters WHERE topic = %s",
                    (f"kiosk/v1/{name}/event",),
                ).fetchall()
                problems.append(f"{run.prefix}: {name}: sent seq {k['first_seq']}..{k['last_seq']} "
                                f"({k['acked']} acknowledged), not stored: {missing[:10]}; "
                                f"its dead letters: {letters[:3]}")  # fmt: skip
    return problems


# --- the run ---------------------------------------------------------------------------------


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="kiosk-chain-"))
    broker: Mosquitto | None = None
    postgres: Postgres | None = None
    watcher: StatusWatcher | None = None
    counter: StoredCount | None = None
    aggs: list[Aggregator] = []
    phases = [
        Phase("phase 1: one aggregator", Run("chaina", RATE, PHASE_S, 1),
              Run("steadya", STEADY_RATE, STEADY_S, 4)),
        Phase("phase 2: two aggregators", Run("chainb", RATE, PHASE_S, 2),
              Run("steadyb", STEADY_RATE, STEADY_S, 5)),
        Phase("phase 3: two aggregators, kill -9 of the leader mid-run",
              Run("chainc", RATE, PHASE_S, 3)),
    ]  # fmt: skip
    runs = [r for p in phases for r in (p.steady, p.load) if r is not None]
    try:
        say(f"bench-chain: {STORES * PER_STORE:,} kiosks in {STORES} stores (new ones each run, "
            f"each on its own account), {len(AGGREGATORS)} aggregator accounts")  # fmt: skip
        acc = make_accounts(tmp, [r.prefix for r in runs])
        broker = Mosquitto(tmp / "broker", auth_dir=acc.folder)
        assert "\npersistence true\n" in broker.conf.read_text()
        broker.start()
        postgres = Postgres()
        postgres.start()
        assert postgres.process is not None
        pg_pid = postgres.process.pid
        db = postgres.database()
        counter = StoredCount(db)
        watcher = StatusWatcher(broker, acc.passwords[WATCH])
        for name in AGGREGATORS:
            aggs.append(Aggregator(name, broker, db, acc.passwords[name], tmp / f"{name}.log"))
        say(f"mosquitto on {broker.url}, persistence in the run's folder; PostgreSQL on "
            f"{db.rsplit('@', 1)[1]}; {os.cpu_count()} cores")  # fmt: skip

        def roles() -> dict[str, int]:
            out = {"mosquitto": broker.proc.pid} if broker and broker.proc else {}
            for i, a in enumerate(aggs):
                if a.proc is not None:
                    out[f"aggregator {'AB'[i]}"] = a.proc.pid
            return out

        def start(agg: Aggregator) -> None:
            before = watcher.online.count(agg.name) if watcher else 0
            agg.start()
            wait_until(lambda: watcher is not None and watcher.online.count(agg.name) > before,
                       60, f"{agg.name} online")  # fmt: skip

        def phase(p: Phase, during: Callable[[int], None] | None = None) -> None:
            say(f"{p.name}")
            if p.steady is not None:
                measure(p.steady, broker, acc, counter, roles, pg_pid, tmp)
            measure(p.load, broker, acc, counter, roles, pg_pid, tmp, during)

        start(aggs[0])
        wait_until(lambda: aggs[0].said("now leads its group") > 0, 30, "the first to lead")
        phase(phases[0])
        print_phase(phases[0])
        start(aggs[1])
        phase(phases[1])
        print_phase(phases[1])
        one, two = phases[0].load, phases[1].load
        ratio = two.stored_rate / one.stored_rate if one.stored_rate else 0.0
        say(f"2 aggregators / 1: {ratio:.2f} ({two.stored_rate:,.0f} / {one.stored_rate:,.0f} "
            f"events/s stored)")  # fmt: skip
        say(f"  what bounds it on this machine: {explain(one, two)}")

        # Phase 3: the leader dies mid-run, and is started again a few seconds later (its
        # session holds what the broker had handed it).
        third = phases[2].load
        killed: list[Aggregator] = []
        killed_at: list[float] = []  # when it was killed, then when started again

        def chaos(stored: int) -> None:
            if not killed and stored >= third.total * KILL_AFTER:
                victim = leading(counter, aggs)
                victim.kill()
                killed.append(victim)
                killed_at.append(time.monotonic())
                say(f"  killed {victim.name} (the leader) with SIGKILL at {stored:,} stored; "
                    f"starting it again in {RESTART_AFTER_S:g} s")  # fmt: skip
            elif len(killed_at) == 1 and time.monotonic() - killed_at[0] >= RESTART_AFTER_S:
                killed[0].start()
                killed_at.append(time.monotonic())

        phase(phases[2], chaos)
        print_phase(phases[2])
        sent = sum(r.report["acked"] for r in runs)
        last = (time.monotonic(), counter.count())
        while counter.count() < sent:  # loadgen waited for the marks; wait for the rest, if any
            n = counter.count()
            if n != last[1]:
                last = (time.monotonic(), n)
            elif time.monotonic() - last[0] > DRAIN_QUIET_S:
                break
            time.sleep(1.0)
        stored = counter.count()
        problems = check_stored(counter, runs)
        if killed:
            say(f"  after the kill, {leading(counter, aggs).name} leads; {killed[0].name} was "
                f"started again {RESTART_AFTER_S:g} s after it")  # fmt: skip
        else:
            problems.append("the leader was never killed")
        say(
            f"  every run: sent (acknowledged by the broker) {sent:,}, stored {stored:,}, each "
            f"once and every acknowledged seq of every kiosk: {'yes' if not problems else 'NO'}"
        )
        for p in problems[:20]:
            say(f"  PROBLEM: {p}")
        if problems:
            for a in aggs:  # what the aggregators said of it, before the folder goes
                said = [line for line in a.log.read_text(errors="replace").splitlines()
                        if "kiosk-host:" in line or "Error" in line]  # fmt: skip
                say(f"  {a.name} said: " + " | ".join(said[-12:]))
        return 0 if stored == sent and not problems else 1
    finally:
        for a in aggs:
            with contextlib.suppress(Exception):
                a.stop()
        if watcher is not None:
            watcher.close()
        if counter is not None:
            counter.close()
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
