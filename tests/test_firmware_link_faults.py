"""The link fault matrix: every failure at every phase where it can happen, on both runtimes.

Each cell is a kiosk (the firmware's Kiosk, Outbox and Link: tests/link_fault_kiosk.py) that
talks to the real mosquitto through a fault peer of its own (tests/fault_peer.py), which
injects the cell's failure at the cell's phase and then clears. The kiosk must come back,
say what went wrong (the problem line, and the telemetry once it is back), and every press
must reach the broker exactly once by seq, within RECOVERY_S of the fault clearing.

The cells of one runtime run at once, as concurrent kiosks in one MicroPython VM (host
sockets through `hostnet`) or one CPython process, so that the matrix costs seconds, not
minutes; each cell is its own test id. Under xdist the first worker to need a runtime's
results runs them and the others read them (a file lock in pytest's shared temporary
folder), so the matrix runs once per test run.
"""

from __future__ import annotations

import fcntl
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.wire.contract import Contract, Message
from kiosk_host.wire.identifiers import check_character
from tests.broker import Mosquitto
from tests.fault_peer import FAILURES, PHASES, FaultPeer, applies
from tests.kiosk_runs import run_kiosk
from tests.virtual_kiosks import VirtualKiosk, Watcher, wait_until
from tests.vm.mpvm import FIRMWARE_DIR, ROOT, SIMHW_DIR, MicroPythonVM

HERE = Path(__file__).resolve().parent
CODE = "A7K3" + check_character("A7K3")  # a code as a kiosk with letter A makes it
RUNTIMES = ("micropython", "cpython")
RECOVERY_S = 15.0  # from the fault clearing to every press at the broker
RUN_S = 120.0  # one runtime's whole matrix, at most
PRESSES = 9  # link_fault_kiosk.BEFORE + AFTER
NOISE = "__noise__"  # the lines of a run that no kiosk should print
NOISY = ("retrieved", "Traceback", "EBADF", "Errno 9", "OSError: 9", "LOOP ")
VM_MODULES = ("clock", "config", "kiosk", "link", "logring", "mqtt", "outbox", "wire", "texts_en")

# Every cell where the failure can happen. Left out, by applies(): `refused` and `tls` after
# the connection is open (both happen only while connecting), a CONNACK return code at any
# phase but the CONNACK, and `memory` at `connect` (nothing is read from the peer before
# the CONNACK, so the first read that could fail to allocate is the CONNACK's).
CELLS = [(f, p) for p in PHASES for f in FAILURES if applies(f, p)]

# The class (first word of "Class: text") that the kiosk must record first, per failure.
EXPECTED: dict[str, dict[str, tuple[str, ...]]] = {
    "refused": {"cpython": ("ConnectionRefusedError",), "micropython": ("OSError",)},
    "reset": {
        "cpython": ("ConnectionResetError", "OSError", "BrokenPipeError"),
        "micropython": ("OSError",),
    },
    "eof": {"cpython": ("OSError", "ConnectionResetError"), "micropython": ("OSError",)},
    "tls": {"cpython": ("SSLCertVerificationError",), "micropython": ("ValueError",)},
    "timeout": {"cpython": ("OSError", "TimeoutError"), "micropython": ("OSError",)},
    "garbage": {"cpython": ("MQTTError",), "micropython": ("MQTTError",)},
    "memory": {"cpython": ("MemoryError",), "micropython": ("MemoryError",)},
}


def cell_name(failure: str, phase: str) -> str:
    return f"{failure}-at-{phase}"


def times_for(failure: str, phase: str) -> int:
    """How many occurrences of the phase fail: twice (so that the backoff runs), once where
    one costs a whole deadline or where a second occurrence is not certain (the drain)."""
    if failure == "timeout" or phase in ("drain", "pingresp"):
        return 1
    return 2


# -- TLS for the CPython cells -----------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass
class Certs:
    ca: Path
    trusted: ssl.SSLContext
    untrusted: ssl.SSLContext


def make_certs(folder: Path) -> Certs:
    """A CA the kiosk trusts with the broker's certificate for 127.0.0.1, and a self-signed
    certificate for the same address that it must refuse."""
    folder.mkdir(parents=True, exist_ok=True)
    days = "2"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", days, "-subj", "/CN=kiosk test CA", cwd=folder)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
             "-subj", "/CN=127.0.0.1", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "srv.pem", "-days", days, "-extfile", "san.ext",
             cwd=folder)  # fmt: skip
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key", "-out",
             "rogue.pem", "-days", days, "-subj", "/CN=127.0.0.1", "-addext",
             "subjectAltName=IP:127.0.0.1", cwd=folder)  # fmt: skip

    def server(cert: str, key: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(folder / cert), str(folder / key))
        return ctx

    return Certs(folder / "ca.pem", server("srv.pem", "srv.key"), server("rogue.pem", "rogue.key"))


# -- The broker's side -------------------------------------------------------------------------


class Arrivals:
    """A paho subscriber that keeps every message with the time it arrived."""

    def __init__(self, broker: Mosquitto, topic: str, client_id: str) -> None:
        self.items: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_connect = lambda cl, *a: cl.subscribe(topic, 1)
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        self.client = c
        if not subscribed.wait(10):
            raise AssertionError("no SUBACK for the watcher")

    def _on_message(self, c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.items.append((time.monotonic(), msg.topic, bytes(msg.payload)))

    def of(self, device: str, kind: str) -> list[tuple[float, bytes]]:
        with self.lock:
            return [(t, p) for t, topic, p in self.items if topic.split("/")[3:] == [device, kind]]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- Running one runtime's cells ---------------------------------------------------------------


def _vm_request(specs: list[dict[str, Any]]) -> dict[str, Any]:
    files = {
        f"/lib/{p.name}": {"text": p.read_text()}
        for p in sorted(SIMHW_DIR.glob("*.py"))
        if p.name != "__init__.py"
    }
    for name in VM_MODULES:
        files[f"/lib/{name}.py"] = {"text": (FIRMWARE_DIR / f"{name}.py").read_text()}
    files["/lib/link_fault_kiosk.py"] = {"text": (HERE / "link_fault_kiosk.py").read_text()}
    code = (
        "import asyncio, json, os, hostnet, link_fault_kiosk\n"
        "os.mkdir('/flash')\n"
        f"SPECS = json.loads({json.dumps(json.dumps(specs))})\n"
        "async def main():\n"
        "    await link_fault_kiosk.main(SPECS, hostnet.open_connection, True, '/flash')\n"
        "await asyncio.create_task(main())\n"
    )
    return {"files": files, "code": code, "heapsize": 4 * 1024 * 1024, "async": True, "net": True,
            "echo": True}  # fmt: skip


CPYTHON_MAIN = """
import asyncio, gc, json, sys
from kiosk_host.sim.virtual_kiosk import RealTime, load_firmware
load_firmware()
sys.path.insert(0, sys.argv[1])
import link_fault_kiosk
specs = json.loads(sys.argv[2])
def report(loop, context):
    print("LOOP", context.get("message"), repr(context.get("exception")), flush=True)
async def main():
    asyncio.get_running_loop().set_exception_handler(report)
    opened = asyncio.open_connection
    await link_fault_kiosk.main(specs, opened, False, sys.argv[3], RealTime())
    gc.collect()  # a task whose exception nobody retrieved is reported when it goes
    await asyncio.sleep(0)
asyncio.run(main())
"""


def _run_kiosks(runtime: str, specs: list[dict[str, Any]], folder: Path) -> str:
    if runtime == "micropython":
        proc = subprocess.run(
            ["node", str(HERE / "vm" / "mpvm.mjs")],
            input=json.dumps(_vm_request(specs)).encode(),
            capture_output=True,
            cwd=ROOT,
            timeout=RUN_S,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"the VM runner failed: {proc.stderr.decode(errors='replace')}")
        reply = json.loads(proc.stdout)
        if reply["error"]:
            raise AssertionError(f"{reply['error']['traceback']}\n{reply['stdout']}")
        out: str = reply["stdout"]
        return out
    state = folder / "flash"
    state.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", CPYTHON_MAIN, str(HERE), json.dumps(specs), str(state)],
        capture_output=True,
        cwd=ROOT,
        timeout=RUN_S,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode != 0:
        raise AssertionError(f"the kiosks failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def run_matrix(runtime: str, broker: Mosquitto, folder: Path) -> dict[str, Any]:
    """Run every cell of `runtime` at once; what each cell showed, by cell name."""
    store = "faults-" + runtime[:2]
    certs = make_certs(folder / "certs") if runtime == "cpython" else None
    watcher = Arrivals(broker, f"kiosk/v1/{store}/#", f"watch-{store}")
    peers: dict[str, FaultPeer] = {}
    specs = []
    try:
        for failure, phase in CELLS:
            name = cell_name(failure, phase)
            tls = failure == "tls"
            peer = FaultPeer(
                broker.port,
                failure,
                phase,
                times=times_for(failure, phase),
                tls=(certs.trusted, certs.untrusted) if tls and certs else None,
                tls_simulated=tls and certs is None,
            ).start()
            peers[name] = peer
            spec: dict[str, Any] = {
                "name": name,
                "store": store,
                "host": "127.0.0.1",
                "port": peer.port,
            }
            if tls:
                spec["ca"] = str(certs.ca) if certs else "ca.pem"
                spec["tls_simulated"] = certs is None
            specs.append(spec)
        out = _run_kiosks(runtime, specs, folder)
        results = {}
        for line in out.splitlines():
            if line.startswith("RESULT "):
                _, name, body = line.split(" ", 2)
                results[name] = json.loads(body)
        # The kiosks are done once every event is acknowledged; the watcher's copies follow.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(
                len({json.loads(p)["seq"] for _, p in watcher.of(n, "event")}) >= PRESSES
                for n in peers
            ):
                break
            time.sleep(0.05)
        cells = {}
        for name, peer in peers.items():
            events = watcher.of(name, "event")
            first: dict[int, float] = {}
            payloads: dict[int, list[str]] = {}
            for t, p in events:
                seq = json.loads(p)["seq"]
                first.setdefault(seq, t)
                payloads.setdefault(seq, []).append(p.decode())
            complete = max(first.values()) if len(first) >= PRESSES else None
            cells[name] = {
                "result": results.get(name),
                "payloads": payloads,
                "injected": peer.injected,
                "cleared": peer.cleared,
                "recovered_s": None
                if complete is None or peer.cleared_at is None
                else complete - peer.cleared_at,
                "telemetry": [p.decode() for _, p in watcher.of(name, "telemetry")],
                "log": peer.log,
                "out": out[-2000:] if name not in results else "",
            }
        noise = [line for line in out.splitlines() if any(n in line for n in NOISY)]
        cells[NOISE] = {"lines": noise}
        return cells
    finally:
        watcher.close()
        for peer in peers.values():
            peer.close()


@pytest.fixture(scope="session")
def link_matrix(
    mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, dict[str, Any]]]:
    """Each runtime's matrix, run by the first xdist worker that asks for it."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this run's folder, shared by its workers

    class Matrix(dict):  # type: ignore[type-arg]
        def __missing__(self, runtime: str) -> dict[str, Any]:
            done = shared / f"link-faults-{runtime}.json"
            with open(shared / f"link-faults-{runtime}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not done.exists():
                    folder = tmp_path_factory.mktemp(f"link-{runtime}")
                    done.write_text(json.dumps(run_matrix(runtime, mosquitto, folder)))
                cells: dict[str, Any] = json.loads(done.read_text())
            self[runtime] = cells
            return cells

    yield Matrix()


# Not marked slow: each runtime's whole matrix runs in a few seconds (its cells at once).
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(("failure", "phase"), CELLS, ids=[cell_name(f, p) for f, p in CELLS])
def test_the_kiosk_recovers_and_every_press_arrives_once(
    link_matrix: dict[str, dict[str, Any]],
    contract: Contract,
    runtime: str,
    failure: str,
    phase: str,
) -> None:
    cell = link_matrix[runtime][cell_name(failure, phase)]
    r = cell["result"]
    assert r is not None, f"the kiosk reported nothing: {cell['out']}"
    # the fault happened, as often as asked, and then cleared
    assert cell["injected"] == times_for(failure, phase) and cell["cleared"], cell["log"]
    # the link never ended, came back after the failure, and emptied the outbox
    assert r["alive"] and r["ended"] is None, r
    assert r["back"] and r["failures"] >= 1, r
    assert r["drained"] and r["pressed"] == PRESSES, r
    # what went wrong was recorded as the failure's own class, and shown under the prompt
    first = r["errors"][0]
    if failure.startswith("connack"):
        assert first == "MQTTError: " + failure[-1], r["errors"]
    else:
        assert first.split(":")[0] in EXPECTED[failure][runtime], r["errors"]
    assert r["notes"] and all(n in r["errors"] for n in r["notes"]), r
    # every press reached the broker exactly once by seq (a QoS 1 resend is the same bytes)
    payloads = cell["payloads"]
    assert sorted(int(s) for s in payloads) == list(range(1, PRESSES + 1))
    assert all(len(set(p)) == 1 for p in payloads.values()), payloads
    assert cell["recovered_s"] is not None and cell["recovered_s"] <= RECOVERY_S, cell
    # and the host learns why the link was down: telemetry once it is back
    telemetry = [json.loads(t) for t in cell["telemetry"]]
    topic = "kiosk/v1/" + ("faults-" + runtime[:2]) + "/" + cell_name(failure, phase)
    for t in cell["telemetry"]:
        assert isinstance(contract.validate(topic + "/telemetry", t.encode()), Message), t
    assert any(t["link_error"] in r["errors"] for t in telemetry), telemetry
    assert all(t["link_restarts"] == 0 for t in telemetry)


def test_no_task_exception_goes_unretrieved_and_no_ebadf(
    link_matrix: dict[str, dict[str, Any]],
) -> None:
    """Over the whole matrix, on both runtimes: no "Task exception wasn't retrieved" (the
    reader's end is awaited), no EBADF, no traceback from anything the kiosks left behind."""
    for runtime in RUNTIMES:
        assert link_matrix[runtime][NOISE]["lines"] == [], runtime


# -- The problem line, the app's restart of the link, config without wiping the screen --------


def test_a_link_problem_is_a_line_under_the_prompt_and_never_on_a_customers_screen(
    mpvm: MicroPythonVM,
) -> None:
    script = (
        "rig.kiosk.link_problem('OSError: 113')\n"
        "rig.kiosk.link_problem('OSError: 113')\n"  # the same again: not painted again
        f"rig.kiosk.confirm_recovery('{CODE}')\n"
        "rig.kiosk.link_problem('MQTTError: 5')\n"  # the customer's screen stays
        "rig.press(4)\n"
        "rig.sleep(3000, 50)\n"
        "rig.kiosk.link_problem(None)\n"
    )
    run = run_kiosk(mpvm, script)
    assert run.screens == [
        ("idle", "How did we do today?"),
        ("idle", "How did we do today? | (OSError: 113)"),
        ("confirm", f"Code {CODE}: did we make it right? | [Not yet] | [Yes] | [Yes, wow!]"),
        ("thanks", "Thank you!"),
        ("idle", "How did we do today? | (MQTTError: 5)"),
        ("idle", "How did we do today?"),
    ]


def test_the_same_config_again_leaves_the_screen_alone(mpvm: MicroPythonVM) -> None:
    script = (
        "import json\n"
        f"rig.kiosk.confirm_recovery('{CODE}')\n"
        "print('applied', rig.kiosk.apply_config(json.dumps(CONFIG).encode()))\n"
        "print('applied', rig.kiosk.apply_config(json.dumps(CONFIG).encode()))\n"
        "rig.press(4)\n"
    )
    run = run_kiosk(mpvm, script)
    assert run.names == ["idle", "confirm", "thanks"]
    assert run.lines.count("applied True") == 2
    assert [(e["kind"], e["outcome"]) for e in run.events] == [("recovery_confirm", "wow")]


def test_a_changed_config_waits_for_the_customer_then_applies_at_idle(
    mpvm: MicroPythonVM,
) -> None:
    script = (
        "import json\n"
        f"rig.kiosk.confirm_recovery('{CODE}')\n"
        "new = json.dumps(dict(CONFIG, prompt='New?')).encode()\n"
        "print('applied', rig.kiosk.apply_config(new))\n"
        "rig.press(4)\n"  # the verdict, under the settings it was asked with
        "rig.sleep(3000, 50)\n"
        "rig.press(4)\n"  # a rating under the new settings
    )
    run = run_kiosk(mpvm, script)
    assert run.screens == [
        ("idle", "How did we do today?"),
        ("confirm", f"Code {CODE}: did we make it right? | [Not yet] | [Yes] | [Yes, wow!]"),
        ("thanks", "Thank you!"),
        ("idle", "New?"),
        ("thanks", "Thank you!"),
    ]
    assert "applied True" in run.lines
    assert [e["kind"] for e in run.events] == ["recovery_confirm", "rating"]


def test_the_app_starts_a_link_that_ended_again_and_counts_it(mpvm: MicroPythonVM) -> None:
    """link.run() is written never to end; should it all the same, the main loop starts it
    again, counts the restart (telemetry's link_restarts) and records why."""
    code = """
import asyncio
import app


class Link:
    ERROR_MAX = 120

    def __init__(self):
        self.runs = 0
        self.restarts = 0
        self.error = None

    def set_error(self, why):
        self.error = why

    async def run(self):
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("boom")
        if self.runs == 2:
            return
        await asyncio.sleep_ms(100000)


class Buttons:
    async def run(self):
        await asyncio.sleep_ms(100000)


class Kiosk:
    def tick(self):
        pass


class Clock:
    def ticks_ms(self):
        return 0

    def uptime_ms(self):
        return 0


async def main():
    link = Link()
    task = asyncio.create_task(app.run(Kiosk(), Buttons(), Clock(), link=link))
    for _ in range(100):
        await asyncio.sleep_ms(app.TICK_MS)
        if link.runs >= 3:
            break
    task.cancel()
    print(link.runs, link.restarts, link.error)


await asyncio.create_task(main())
"""
    out = mpvm.run(code, ["app"], run_async=True, timeout=60).ok().splitlines()
    assert out == ["3 2 link: ended"]


def test_a_confirm_queued_while_offline_survives_the_retained_config_on_reconnect(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The broker keeps the command for the kiosk's session while it is offline; on
    reconnect the command comes, then the retained config again (the same): the customer's
    confirmation stays on the screen."""
    config = {
        "v": 1, "prompt": "How was your visit?", "language": "en", "scale": 4,
        "low_threshold": 2, "response_interval_s": 0, "follow_up_timeout_s": 20,
        "code_display_s": 5, "confirm_timeout_s": 60, "telemetry_interval_s": 60,
        "station": "till-1", "staff": [],
    }  # fmt: skip
    store = "keep"
    base = f"kiosk/v1/{store}/till-1/"
    watcher = Watcher(mosquitto.url, base + "#", "watch-keep")
    kiosk = VirtualKiosk(mosquitto.url, tmp_path, store=store)
    try:

        def statuses(state: str) -> int:
            return sum(json.loads(p)["state"] == state for _, p, _ in watcher.on("/status"))

        watcher.client.publish(
            base + "config", json.dumps(config), 1, retain=True
        ).wait_for_publish(10)
        kiosk.wait_screen("idle", text="How was your visit?")
        kiosk.send("net down")
        wait_until(lambda: statuses("offline") >= 1, 15, "the kiosk offline (its last will)")
        online = statuses("online")
        cmd = {"v": 1, "cmd": "confirm_recovery", "id": "c-1", "ts": 1763900000, "case": CODE}
        watcher.client.publish(base + "cmd", json.dumps(cmd), 1).wait_for_publish(10)
        kiosk.send("net up")
        kiosk.wait_screen("confirm")
        # Its status after the config: sent at connect, and again once the config is handled.
        wait_until(lambda: statuses("online") >= online + 2, 15, "the config handled")
        names = [name for name, _ in kiosk.screens]
        assert names[-1] == "confirm" and names.count("confirm") == 1, names  # never wiped
        kiosk.send("press 4")
        kiosk.wait_screen("thanks")
        wait_until(lambda: len(watcher.events()) == 1, 15, "the verdict")
        assert watcher.events()[0]["outcome"] == "wow"
    finally:
        kiosk.kill()
        watcher.client.publish(base + "config", b"", 1, retain=True).wait_for_publish(10)
        watcher.close()


def test_a_message_whose_handling_raises_is_set_aside_not_the_sessions_end(
    mpvm: MicroPythonVM,
) -> None:
    """A handler that raises (a config the flash cannot save, memory short for an update's
    chunk) would end the session before the PUBACK, and the broker would hand the same
    message over again on every reconnect: it is set aside, with why, and reading goes on."""
    code = """
import link, logring


class Handling:
    error = None
    logged = []

    def _dispatch(self, topic, payload):
        raise OSError(28)  # ENOSPC

    def log(self, text):
        self.logged.append(text)


h = Handling()
link.Link._on_message(h, "kiosk/v1/s/d/config", b"{}", False)
print(h.error)
print(h.logged)
"""
    out = mpvm.run(code, ["link", "logring", "wire", "mqtt"]).ok().splitlines()
    assert out[0] == "OSError: 28"
    assert out[1] == "['message on kiosk/v1/s/d/config set aside: OSError: 28']"
