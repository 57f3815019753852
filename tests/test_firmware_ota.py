"""A firmware update reaches the kiosk whole, signed, through power cuts, and switches when idle.

Every test runs the firmware's receiver (firmware/ota.py) and slots (firmware/fwslot.py) on
the MicroPython VM, on the fault-injecting flash (tests/vm/faultfs.py) or, for the link, on
the VM's own file system with a real mosquitto. The host's side of every message is built
with kiosk_host.wire.ota, as `kiosk-host ota push` builds it.
"""

from __future__ import annotations

import base64
import json
import random
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.wire.contract import Contract, Message
from kiosk_host.wire.ota import File, chunk_message, manifest_message
from tests.broker import Mosquitto
from tests.vm.heap import KIOSK, NET, POLLNET, RIG, SIM
from tests.vm.mpvm import BOARDS_DIR, ROOT, MicroPythonVM, firmware_modules, vm_files

FAULTFS = (ROOT / "tests" / "vm" / "faultfs.py").read_text()
MODULES = ["ota", "wire", "fwslot", "outbox"]
STORE, DEVICE = "store-12", "till-1"
KEY = bytes(range(32))
CHUNK = 512  # the smallest the contract allows but one: many chunks from a small release
RID, VERSION = "r19a3f2", "0.2.0+5e1c9a04"


def _release(seed: int, sizes: tuple[int, ...], kind: str = "mpy") -> list[File]:
    rnd = random.Random(seed)
    return [
        File(f"mod{i}.{kind}", bytes(rnd.getrandbits(8) for _ in range(size)))
        for i, size in enumerate(sizes)
    ]


# Three files of several chunks (the last one short, or exactly whole) and an empty one.
NEW = _release(2, (1300, 0, 1024, 700))
OLD = _release(1, (900, 300))  # the update the kiosk runs from slot a


def _chunks(files: list[File], rid: str = RID, chunk: int = CHUNK) -> dict[str, str]:
    return {
        f"{i}/{n}": chunk_message(KEY, rid, files, i, n, chunk).decode()
        for i, f in enumerate(files)
        for n in range(f.chunks(chunk))
    }


def _manifest(files: list[File], rid: str = RID, chunk: int = CHUNK, **kw: Any) -> str:
    store = kw.get("store", STORE)
    version = kw.get("version", VERSION)
    kind = kw.get("kind", "mpy")
    return manifest_message(KEY, store, DEVICE, rid, version, kind, files, chunk).decode()


def _messages() -> dict[str, object]:
    return {
        "manifest": _manifest(NEW),
        "chunks": _chunks(NEW),
        "new": {f.path: base64.b64encode(f.data).decode() for f in NEW},
        "old": {f.path: base64.b64encode(f.data).decode() for f in OLD},
    }


# MicroPython: the flash, the kiosk's slots with version 1.0 running from slot a (received
# before), an outbox with events on the same flash, and what the tests compare.
PRELUDE = r"""
import vfs, json, os, binascii, sys
from faultfs import FaultFS, PowerCut
fs = FaultFS()
vfs.mount(fs, "/flash")
with open("/msgs.json") as f:
    M = json.load(f)
for k in M:  # messages as MQTT hands them over: bytes
    if isinstance(M[k], str):
        M[k] = M[k].encode()
M["chunks"] = {k: v.encode() for k, v in M["chunks"].items()}
import fwslot, ota
from outbox import Outbox

IDENT = {"store": "store-12", "device": "till-1", "ota_key": "OTA_KEY", "fw": "factory"}
slots = fwslot.Slots("/flash/fw")


def receiver(takes="mpy", ident=IDENT, slots=slots):
    return ota.Receiver(slots, ident, takes)


def feed(r):
    # The host's side: each chunk the receiver asks for, until it asks for none.
    sent = 0
    while r.want is not None and r.st != "refused":
        r.on_message(M["chunks"]["%d/%d" % r.want])
        sent += 1
    return sent


def files_in(folder, names):
    out = {}
    for name in names:
        try:
            with open(folder + "/" + name, "rb") as f:
                out[name] = binascii.b2a_base64(f.read()).decode().strip()
        except OSError:
            out[name] = None
    return out


def same_files(folder, want):
    got = files_in(folder, list(want))
    return all(got[k] == want[k] for k in want)


def chain(ob):
    out, r = [], ob.peek()
    while r is not None:
        out.append([r[0], r[1].decode()])
        r = ob.peek(r[0])
    return out


def setup():
    os.mkdir("/flash/fw")
    os.mkdir("/flash/fw/a")
    for name, data in M["old"].items():
        with open("/flash/fw/a/" + name, "wb") as f:
            f.write(binascii.a2b_base64(data.encode()))
    with open("/flash/fw/a/manifest.json", "wb") as f:
        f.write(b'{"id":"r0","version":"1.0"}')
    slots.switch("1.0", "r0")
    slots.confirm()
    ob = Outbox("/flash/outbox")
    for seq in range(1, 6):
        ob.append(seq, ('{"seq":%d}' % seq).encode())
    ob.stored(2)  # the host has the first two


def dump():
    files, dirs = fs.snapshot()
    return json.dumps({"files": {p: binascii.b2a_base64(d).decode() for p, d in files.items()},
                       "dirs": sorted(dirs)})


def load(text):
    s = json.loads(text)
    files = {p: binascii.a2b_base64(d.encode()) for p, d in s["files"].items()}
    fs.restore((files, set(s["dirs"])))
""".replace("OTA_KEY", KEY.hex())

# One clean transfer, to learn how many flash steps the manifest and each chunk take; then,
# for each cut, the same transfer from the same flash, the power cut after that many steps.
CUTS = r"""
setup()
base = fs.snapshot()
r = receiver()
s0 = fs.steps
r.on_message(M["manifest"])
marks = [fs.steps - s0]
while r.want is not None:
    r.on_message(M["chunks"]["%d/%d" % r.want])
    marks.append(fs.steps - s0)
assert r.st == "staged", r.state()
cuts = [(0, None), (1, None), (marks[0] // 2, None), (marks[0], None)]
for k in range(1, len(marks)):
    cuts.append(((marks[k - 1] + marks[k]) // 2, None))  # in the middle of chunk k
    cuts.append((marks[k], None))  # right after it
cuts += [((marks[1] + marks[2]) // 2, 0xFF), ((marks[-2] + marks[-1]) // 2, 0xFF)]
print("MARKS", json.dumps(marks))
for n, fill in cuts:
    fs.restore(base)
    r = receiver()
    fs.cut_after(n, fill)
    try:
        r.on_message(M["manifest"])
        feed(r)
        cut = False
    except PowerCut:
        cut = True
    fs.power_on()
    print("SNAP " + json.dumps([n, fill, cut, r.want]) + "\t" + dump())
"""

# After a cut: a fresh interpreter over the same flash, the manifest again.
RESUME = r"""
with open("/snap.json") as f:
    load(f.read())
out = {"outbox": chain(Outbox("/flash/outbox")), "pointer": slots.pointer(),
       "old_same": same_files("/flash/fw/a", M["old"]), "boot": slots.boot(None)}
r = receiver()
r.on_message(M["manifest"])
out["resume"] = r.want
out["sent"] = feed(r)
out["state"] = r.state()
out["new_same"] = same_files("/flash/fw/b", M["new"])
out["running"] = slots.version("factory")
out["outbox_after"] = chain(Outbox("/flash/outbox"))
slots.switch(r.version, r.rid)
out["switched"] = [slots.boot(None), slots.version("factory")]
print("RESULT", json.dumps(out))
"""

OUTBOX = [[3, '{"seq":3}'], [4, '{"seq":4}'], [5, '{"seq":5}']]
RUNNING = {
    "slot": "a",
    "version": "1.0",
    "id": "r0",
    "trial": False,
    "boots": 0,
    "up_ms": 0,
    "prev": None,
    "rom": None,
    "prev_rom": None,
}


def _files() -> dict[str, str]:
    return {"/lib/faultfs.py": FAULTFS, "/msgs.json": json.dumps(_messages())}


def test_a_transfer_fed_to_the_receiver_stages_every_file(mpvm: MicroPythonVM) -> None:
    code = PRELUDE + (
        "setup()\n"
        "r = receiver()\n"
        "print(r.state())\n"
        "print(r.on_message(M['manifest']), r.state())\n"
        "print(feed(r), r.state())\n"
        "print(r.ready(), same_files('/flash/fw/b', M['new']), slots.version('factory'))\n"
        "print(sorted(os.listdir('/flash/fw/b')))\n"
        "with open('/flash/fw/b/manifest.json', 'rb') as f:\n"
        "    print(f.read() == M['manifest'])\n"
    )
    out = mpvm.run(code, MODULES, files=_files()).ok().splitlines()
    assert out[0] == "None"
    total = sum(f.chunks(CHUNK) for f in NEW)
    assert out[1] == f'True {{"id":"{RID}","version":"{VERSION}","state":"receiving",' + (
        f'"want":[0,0],"reason":null,"progress":[0,{total}]}}'
    )
    assert out[2] == f'{total} {{"id":"{RID}","version":"{VERSION}","state":"staged",' + (
        f'"want":null,"reason":null,"progress":[{total},{total}]}}'
    )
    assert out[3] == "True True 1.0"  # staged; the old version runs until the switch
    assert out[4] == repr(sorted([f.path for f in NEW] + ["manifest.json"]))
    assert out[5] == "True"


@pytest.mark.slow  # a sweep: a fresh VM after each of some twenty power cuts
def test_a_power_cut_at_every_chunk_boundary_leaves_the_old_version_and_resumes(
    mpvm: MicroPythonVM,
) -> None:
    # A power cut at every chunk boundary boots either the whole old or the whole
    # new version, never a mix, and the outbox is untouched.
    out = mpvm.run(PRELUDE + CUTS, MODULES, files=_files()).ok().splitlines()
    marks = json.loads(out[0].split(" ", 1)[1])
    assert len(marks) == 1 + sum(f.chunks(CHUNK) for f in NEW)
    snaps = [line[5:].split("\t") for line in out[1:]]
    assert len(snaps) == 4 + 2 * (len(marks) - 1) + 2
    midway = 0
    for head, snap in snaps:
        n, fill, cut, want = json.loads(head)
        files = {**_files(), "/snap.json": snap}
        result = mpvm.run(PRELUDE + RESUME, MODULES, files=files).ok()
        got = json.loads(result.split("RESULT ", 1)[1])
        case = f"cut after {n} steps (fill {fill}): {got}"
        assert got["outbox"] == OUTBOX, case
        assert got["outbox_after"] == OUTBOX, case
        assert got["pointer"] == RUNNING, case  # the old version runs, whole
        assert got["old_same"], case
        assert got["boot"] == "/flash/fw/a", case
        assert got["state"].startswith(f'{{"id":"{RID}","version":"{VERSION}","state":"staged"')
        assert got["new_same"], case
        assert got["running"] == "1.0", case  # until the switch
        assert got["switched"] == ["/flash/fw/b", VERSION], case
        if not cut:
            assert got["resume"] is None and got["sent"] == 0, case  # all there already
        elif fill is None:
            # Resumed at the chunk the power cut: none written before it is fetched again.
            assert got["resume"] == (want or [0, 0]), case
            if got["resume"] not in ([0, 0], None):
                midway += 1
                assert got["sent"] < len(marks) - 1, case
    assert midway >= len(marks) - 3  # most cuts resume in the middle of the transfer


BAD = r"""
setup()
r = receiver()
before = fs.snapshot()
print(r.on_message(M["bad_manifest"]), r.state())
print(fs.snapshot() == before, slots.pointer() == POINTER)
r.on_message(M["manifest"])
r.on_message(M["chunks"]["0/0"])
print(r.state())
before = fs.snapshot()
for name in ("bad_chunk", "tampered", "other_kiosk"):
    print(r.on_message(M[name]), r.state())
    print(fs.snapshot() == before, slots.pointer() == POINTER)
print(r.on_message(M["chunks"]["0/0"]), r.want)  # a late duplicate: ignored
print(r.on_message(M["chunks"]["0/1"]), r.state())  # the genuine resend
print(feed(r), r.state(), same_files("/flash/fw/b", M["new"]), slots.pointer() == POINTER)
"""


def _edit(message: str, **changes: object) -> str:
    body = json.loads(message)
    body.update(changes)
    return json.dumps(body, separators=(",", ":"))


def _flip(mac: str) -> str:
    return ("1" if mac[0] == "0" else "0") + mac[1:]


def test_messages_that_do_not_verify_are_refused_and_a_good_resend_completes(
    mpvm: MicroPythonVM,
) -> None:
    msgs = _messages()
    chunks = _chunks(NEW)
    good = json.loads(chunks["0/1"])
    data = bytearray(base64.b64decode(good["data"]))
    data[7] ^= 1
    msgs["bad_manifest"] = _edit(_manifest(NEW), mac=_flip(json.loads(_manifest(NEW))["mac"]))
    msgs["bad_chunk"] = _edit(chunks["0/1"], mac=_flip(good["mac"]))
    msgs["tampered"] = _edit(chunks["0/1"], data=base64.b64encode(data).decode())
    # The same chunk signed for another kiosk's key: as worthless as a wrong MAC.
    other = bytes(reversed(KEY))
    msgs["other_kiosk"] = chunk_message(other, RID, NEW, 0, 1, CHUNK).decode()
    code = PRELUDE + "setup()\nPOINTER = slots.pointer()\n" + BAD.replace("setup()\n", "", 1)
    files = {"/lib/faultfs.py": FAULTFS, "/msgs.json": json.dumps(msgs)}
    out = mpvm.run(code, MODULES, files=files).ok().splitlines()
    head = f'{{"id":"{RID}","version":"{VERSION}","state":'
    total = sum(f.chunks(CHUNK) for f in NEW)
    assert out[0] == f'True {head}"refused","want":null,"reason":"manifest: bad signature"}}'
    assert out[1] == "True True"  # every file as it was, nothing switched
    assert out[2] == f'{head}"receiving","want":[0,1],"reason":null,"progress":[1,{total}]}}'
    refused = (
        f'True {head}"refused","want":[0,1],"reason":"chunk 0/1: bad signature",'
        f'"progress":[1,{total}]}}'
    )
    assert out[3:9] == [refused, "True True"] * 3  # the staging as it was
    assert out[9] == "False [0, 1]" or out[9] == "False (0, 1)"
    assert out[10] == (
        f'True {head}"receiving","want":[0,2],"reason":null,"progress":[2,{total}]}}'
    )
    assert out[11] == (
        f'{total - 2} {head}"staged","want":null,"reason":null,"progress":[{total},{total}]}}'
        " True True"
    )


REFUSALS = r"""
setup()
before = fs.snapshot()
for name, r in (
    ("huge", receiver()),
    ("manifest", ota.Receiver(None, IDENT, "mpy")),
    ("manifest", receiver(ident={"store": "store-12", "device": "till-1"})),
    ("manifest", receiver(takes="py")),
    ("small_chunk", receiver()),
    ("other_store", receiver()),
):
    print(r.on_message(M[name]), r.state())
print(fs.snapshot()[0] == before[0], slots.pointer() == POINTER, fs.statvfs("/")[4])
"""


def test_a_kiosk_refuses_an_update_it_cannot_take_and_writes_nothing(
    mpvm: MicroPythonVM,
) -> None:
    msgs = _messages()
    # The simulated flash holds 2 MB: eleven files of 200,000 bytes do not fit.
    huge = [File(f"big{i}.mpy", bytes([i]) * 200_000) for i in range(11)]
    msgs["huge"] = _manifest(huge)
    msgs["small_chunk"] = _edit(_manifest(NEW), chunk=128)
    msgs["other_store"] = _manifest(NEW, store="store-13")  # signed for another kiosk
    code = PRELUDE + "setup()\nPOINTER = slots.pointer()\n" + REFUSALS.replace("setup()\n", "", 1)
    files = {"/lib/faultfs.py": FAULTFS, "/msgs.json": json.dumps(msgs)}
    out = mpvm.run(code, MODULES, files=files).ok().splitlines()
    states = [json.loads(line.split(" ", 1)[1]) for line in out[:6]]
    assert all(line.startswith("True ") for line in out[:6])
    assert [s["state"] for s in states] == ["refused"] * 6
    free_blocks = int(out[6].split()[2])
    need_kb = (11 * 200_000 + 8192 + 1023) // 1024
    assert states[0]["reason"] == f"flash: need {need_kb} KB, {free_blocks * 4} KB free"
    assert [s["reason"] for s in states[1:]] == [
        "no OTA on this kiosk",
        "no OTA key: provision and deploy again",
        "manifest: kind mpy, this kiosk takes py",
        "manifest: chunk must be 256 to 4096 bytes",
        "manifest: bad signature",
    ]
    assert all(s["want"] is None and s["id"] == RID for s in states)
    assert out[6].startswith("True True ")  # nothing written, nothing switched


# -- the link, over a real mosquitto -------------------------------------------------------

LINK = """
from link import Link
import fwslot

slots = fwslot.Slots('/flash/fw')
rebooted = []
wlan = network.WLAN(network.STA_IF)
hw = {
    'ntp': lambda: kiosk_rig.WALL,
    'heap_free': gc.mem_free,
    'rssi': lambda: None,
    'identify': lambda seconds: None,
    'reboot': lambda: rebooted.append(rig.kiosk.state),
    'save_config': lambda raw: None,
    'load_ids': list,
    'save_ids': lambda ids: None,
    'slots': slots,
}
IDENT = dict(store='%(store)s', device='%(device)s', host='127.0.0.1', port=%(port)d,
             ssid='shop', key='secret', fw='0.1.0', board=board.NAME, ota_key='%(key)s')

def start():
    global link, running
    link = Link(rig.kiosk, rig.outbox, rig.clock, wlan, dict(IDENT), hw)
    running = asyncio.create_task(link.run())  # the rig scans the buttons and ticks

async def _pause(ms):
    await asyncio.sleep_ms(ms)

def pause(ms):
    return asyncio.create_task(_pause(ms))

start()
"""

LINK_STEPS = [
    "await wait(lambda: link.up, 'the link up')\n",
    "rig.press(1)\nprint('LOW', rig.kiosk.state, rig.kiosk.idle())\n",  # a low rating: sorry
    "await wait(lambda: link.ota is not None and link.ota.ready(), 'the update staged')\n",
    "await pause(1500)\n",  # the link runs on while the customer answers
    "print('WAITING', rebooted, slots.pointer(), rig.kiosk.state, link.ota.ready())\n",
    "rig.press(1)\nrig.sleep(4000, 100)\nprint('IDLE', rig.kiosk.idle())\n",  # no, thank you
    "await wait(lambda: rebooted, 'the switch')\n",
    "print('SWITCHED', rebooted, json.dumps(slots.pointer()), sorted(os.listdir('/flash/fw/a')))\n",
    # The next boot: the same kiosk on the new version, on trial until it comes online.
    "running.cancel()\nawait pause(200)\nprint('TRYING', slots.trying())\nstart()\n",
    "await wait(lambda: link.up, 'the link up again')\n",
    "print('CONFIRMED', slots.trying(), json.dumps(slots.pointer()), link.fw)\n",
]


class Publisher:
    """The host's side: the manifest once the kiosk is online, then each chunk its retained
    status asks for; every status kept, and checked against the contract."""

    def __init__(
        self, broker: Mosquitto, contract: Contract, files: list[File], kind: str = "mpy"
    ) -> None:
        self.files = files
        self.kind = kind
        self.contract = contract
        self.statuses: list[dict[str, Any]] = []
        self.invalid: list[str] = []
        self.sent_manifest = False
        self.chunks_sent = 0
        self.topics = f"kiosk/v1/{STORE}/{DEVICE}"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="ota-test-host")
        self.client.on_message = self._on_status
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"{self.topics}/status", 1)
        if not subscribed.wait(10):
            raise AssertionError("no SUBACK from the test broker")

    def _on_status(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        checked = self.contract.validate(msg.topic, msg.payload)
        if not isinstance(checked, Message):
            self.invalid.append(f"{checked}: {msg.payload!r}")
        status = json.loads(msg.payload)
        self.statuses.append(status)
        if status.get("state") != "online":
            return
        ota = status.get("ota")
        topic = f"{self.topics}/ota"
        if not self.sent_manifest:
            self.sent_manifest = True
            manifest = manifest_message(KEY, STORE, DEVICE, RID, VERSION, self.kind, self.files)
            client.publish(topic, manifest, 1)
        elif ota and ota["id"] == RID and ota["state"] == "receiving":
            f, n = ota["want"]
            self.chunks_sent += 1
            client.publish(topic, chunk_message(KEY, RID, self.files, f, n), 1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_link_receives_an_update_and_switches_only_when_idle(
    mpvm: MicroPythonVM, contract: Contract
) -> None:
    board = "esp32_devkitc_ssd1306"
    # Two chunks of 2,048 bytes and a short one, as the host sends them; and an empty file.
    files = _release(3, (4500, 0, 300))
    with tempfile.TemporaryDirectory(prefix="ota-broker-") as tmp, Mosquitto(Path(tmp)) as broker:
        host = Publisher(broker, contract, files)
        try:
            link = LINK % {"store": STORE, "device": DEVICE, "port": broker.port, "key": KEY.hex()}
            vmfiles = vm_files(RIG, POLLNET)
            vmfiles["/lib/board.py"] = (BOARDS_DIR / f"{board}.py").read_text()
            steps = [SIM + NET, KIOSK, link, *LINK_STEPS]
            modules = firmware_modules()
            result = mpvm.run(steps, modules, files=vmfiles, run_async=True, net=True, timeout=120)
        finally:
            host.close()
    out = result.ok()
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()}
    assert lines["LOW"] == "2 False"  # the sorry screen: a customer is answering
    assert lines["WAITING"] == "[] None 2 True"  # staged, not switched under the customer
    assert lines["IDLE"] == "True"
    state, pointer, names = re.fullmatch(r"\[(\d+)\] (\{.*\}) (\[.*\])", lines["SWITCHED"]).groups()
    assert state == "0"  # the reboot came on the idle screen
    assert json.loads(pointer) == {
        "slot": "a",
        "version": VERSION,
        "id": RID,
        "trial": True,
        "boots": 0,
        "up_ms": 0,
        "prev": None,
        "rom": None,
        "prev_rom": None,
    }
    assert names == repr(sorted([f.path for f in files] + ["manifest.json"]))
    assert lines["TRYING"] == "True"
    confirmed = lines["CONFIRMED"].split(" ", 1)
    assert confirmed[0] == "False"
    assert json.loads(confirmed[1].rsplit(" ", 1)[0])["trial"] is False
    assert confirmed[1].rsplit(" ", 1)[1] == VERSION
    assert host.invalid == []
    online = [s for s in host.statuses if s.get("state") == "online"]
    assert all(s["takes"] == "mpy" for s in online)
    states = [s["ota"]["state"] for s in online if "ota" in s]
    assert states[0] == "receiving" and "staged" in states
    assert host.chunks_sent == sum(f.chunks() for f in files)
    last = online[-1]  # the new version online, confirmed
    assert last["fw"] == VERSION
    assert last["ota"] == {
        "id": RID,
        "version": VERSION,
        "state": "done",
        "want": None,
        "reason": None,
    }
