"""Firmware slots on MicroPython: which version boots, its trial, confirm and rollback, and a
power cut at every step of each, on the fault-injecting flash (tests/vm/faultfs.py).

The kiosk's loader (the deployment's device/main.py) runs for real: as the device would, only
with its absolute paths moved under the simulated flash's mount point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk_host.fleet.device_scripts import DEVICE_MAIN
from tests.kiosk_runs import MONO
from tests.vm.mpvm import BOARDS_DIR, MicroPythonVM, firmware_modules, vm_files

FAULTFS = Path(__file__).with_name("vm").joinpath("faultfs.py").read_text()
MODULES = ["fwslot", "bootguard", "outbox"]


def run(mpvm: MicroPythonVM, code: str, *, compiled: bool = False) -> list[str]:
    files = {"/lib/faultfs.py": FAULTFS, "/lib/loader_src.py": f"SRC = {DEVICE_MAIN!r}\n"}
    return mpvm.run(code, MODULES, files=files, compiled=compiled).ok().splitlines()


BEHAVIOUR = r"""
import os
from fwslot import Slots

def put(path, text):
    with open(path, "w") as f:
        f.write(text)

def failed():
    f = s.failed()
    return f and sorted(f.items())


s = Slots("/fw")
print(s.pointer(), s.version("1.0"), s.trying(), s.boot(None), failed())
print(s.staging(), sorted(os.listdir("/fw")))
put("/fw/a/manifest.json", '{"id":"r2","version":"2.0"}')
put("/fw/a/main.py", "")
s.switch("2.0", "r2")
print(sorted(s.pointer().items()))
print(s.version("1.0"), s.trying(), s.staging())
print(s.boot(None), s.pointer()["boots"], s.boot(None), s.pointer()["boots"])
print(s.boot(None), s.pointer(), failed(), sorted(os.listdir("/fw/a")))
s.switch("2.0", "r2")
print(s.boot(None), s.boot(None), s.boot("ImportError: no module named 'x'"), failed())
s.switch("2.0", "r2")
s.boot(None)
put("/fw/failed", "{}")
put("/fw/b/main.py", "")
s.confirm()
print(sorted(s.pointer().items()), failed(), os.listdir("/fw/b"), sorted(os.listdir("/fw/a")))
print(s.boot(None), s.pointer()["boots"], s.trying(), s.staging())
put("/fw/b/manifest.json", '{"id":"r3","version":"3.0"}')
s.switch("3.0", "r3")
print(sorted(s.pointer().items()))
s.rollback("not online within 300 s")
print(sorted(s.pointer().items()), failed())
s.switch("3.0", "r3")
s.rollback("x" * 300)
print(len(s.failed()["reason"]), s.boot(None))
s.confirm()
print(s.pointer()["slot"], sorted(os.listdir("/fw/b")))
put("/fw/current", '{"slot": "a", "vers')
print(s.pointer(), s.version("1.0"), s.boot(None), s.staging())
"""


@pytest.mark.parametrize("compiled", [False, True])
def test_factory_switch_trial_boots_confirm_and_rollback(
    mpvm: MicroPythonVM, compiled: bool, built_firmware: None
) -> None:
    out = run(mpvm, BEHAVIOUR, compiled=compiled)
    assert out == [
        "None 1.0 False None None",
        "/fw/a ['a']",
        "[('boots', 0), ('id', 'r2'), ('prev', None), ('prev_rom', None), ('rom', None),"
        " ('slot', 'a'), ('trial', True), ('up_ms', 0), ('version', '2.0')]",
        "2.0 True /fw/b",
        "/fw/a 1 /fw/a 2",
        # The third trial boot: rolled back to the factory firmware; the slot is left whole.
        "None None [('id', 'r2'), ('reason', 'not online after 2 boots'), ('version', '2.0')]"
        " ['main.py', 'manifest.json']",
        "/fw/a /fw/a None [('id', 'r2'), ('reason', \"crashed: ImportError: no module named"
        " 'x'\"), ('version', '2.0')]",
        # Confirmed: no more trial, the other slot emptied, the failure forgotten.
        "[('boots', 0), ('id', 'r2'), ('prev', None), ('prev_rom', None), ('rom', None),"
        " ('slot', 'a'), ('trial', False), ('up_ms', 0), ('version', '2.0')] None []"
        " ['main.py', 'manifest.json']",
        "/fw/a 0 False /fw/b",
        "[('boots', 0), ('id', 'r3'), ('prev', 'a'), ('prev_rom', None), ('rom', None),"
        " ('slot', 'b'), ('trial', True), ('up_ms', 0), ('version', '3.0')]",
        # Back to slot a, named by its own manifest.
        "[('boots', 0), ('id', 'r2'), ('prev', None), ('prev_rom', None), ('rom', None),"
        " ('slot', 'a'), ('trial', False), ('up_ms', 0), ('version', '2.0')] [('id', 'r3'),"
        " ('reason', 'not online within 300 s'), ('version', '3.0')]",
        "160 /fw/a",
        # Confirm without a trial running changes nothing.
        "a ['manifest.json']",
        # A pointer that does not parse: the factory firmware.
        "None 1.0 None /fw/a",
    ]


# Three versions of a firmware of three modules: the factory's (1) in /lib, updates 2 and 3
# in slots. Each module says its version; `main` imports the other two, as the firmware's does.
VERSIONS = r'''
import io, os, sys
import vfs
from faultfs import FaultFS, PowerCut
from fwslot import Slots
from outbox import Outbox
import loader_src

class _Stream(io.IOBase):
    """A file of the simulated flash as a stream MicroPython can import from, text or bytes."""

    def __init__(self, f, text):
        self.f = f
        self.text = text

    def readinto(self, buf):
        return self.f.readinto(buf)

    def read(self, n=-1):
        data = self.f.read(n)
        return data.decode() if self.text else data

    def write(self, data):
        return self.f.write(data.encode() if isinstance(data, str) else data)

    def close(self):
        self.f.close()

    def ioctl(self, req, arg):
        if req == 4:  # MP_STREAM_CLOSE
            self.f.close()
        return 0

    def __getattr__(self, name):  # seek, tell, flush: as the flash's own file
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Flash(FaultFS):
    def open(self, path, mode):
        return _Stream(FaultFS.open(self, path, mode), "b" not in mode)


R = "/flash"
fs = Flash()
vfs.mount(fs, R)
MODS = ("main", "fwa", "fwb")


def put(path, text):
    with open(path, "w") as f:
        f.write(text)


def mkdirs(*paths):
    for p in paths:
        try:
            os.mkdir(p)
        except OSError:
            pass


def install(folder, version):
    mkdirs(folder)
    put(folder + "/main.py", "import fwa, fwb\nVERSION = %r\n" % version)
    put(folder + "/fwa.py", "VERSION = %r\n" % version)
    put(folder + "/fwb.py", "VERSION = %r\n" % version)
    if folder != R + "/lib":
        put(folder + "/manifest.json", '{"id":"r%s","version":"%s"}' % (version, version))


# The loader as deployed, its absolute paths on the simulated flash.
LOADER = loader_src.SRC.replace('"/', '"' + R + "/")
BASE_PATH = list(sys.path)


def boot():
    """One start of the kiosk from its loader, as a fresh interpreter would import it:
    the version every firmware module came from, or a description of the mix."""
    before = set(sys.modules)
    sys.path[:] = BASE_PATH
    try:
        exec(LOADER, {"__name__": "loader"})
        seen = set()
        for m in MODS:
            mod = sys.modules[m]
            seen.add((mod.__file__[: mod.__file__.rfind("/")], mod.VERSION))
    finally:
        for m in list(sys.modules):
            if m not in before:
                del sys.modules[m]
        sys.path[:] = BASE_PATH
    if len(seen) != 1:
        return "mix %r" % sorted(seen)
    folder, version = seen.pop()
    want = {"1": R + "/lib", "2": R + "/fw/a", "3": R + "/fw/b"}[version]
    return version if folder == want else "%s from %s" % (version, folder)


def outbox_state():
    ob = Outbox(R + "/outbox", 50)
    out = []
    r = ob.peek()
    while r is not None:
        out.append(r)
        r = ob.peek(r[0])
    return out, ob.next_seq(), ob.depth()


def outbox_bytes():
    return sorted((p, bytes(d)) for p, d in fs.files.items() if p.startswith(R + "/outbox/"))


# The flash of a kiosk in service: the factory firmware, an outbox holding events (some
# acked), and the boot guard's files.
mkdirs(R + "/lib", R + "/fw")
install(R + "/lib", "1")
ob = Outbox(R + "/outbox", 50)
for i in range(12):
    ob.append(ob.next_seq(), b"event %d " % i + bytes(range(i * 5)))
ob.ack(3)
ob.ack(4)
OUTBOX = outbox_state()
OUTBOX_BYTES = outbox_bytes()
'''

# Each operation on the slots from a prepared flash, cut at every step: every byte written,
# every file created, renamed or removed. After each cut the kiosk starts from its loader
# (no cut then) and must run one version whole, the one before or the one after; the
# outbox must read back as it was, byte for byte.
SWEEPS = r'''
S = Slots(R + "/fw")


def prepare(name):
    """A fresh flash in the state the operation `name` starts from."""
    fs.restore(BLANK)
    if name.startswith("switch"):  # factory running, update 2 staged in slot a
        install(R + "/fw/a", "2")
    elif name == "trial boot":  # 2 switched to, on its first boot
        install(R + "/fw/a", "2")
        S.switch("2", "r2")
    elif name == "rollback to factory":  # 2 on trial, not online in time
        install(R + "/fw/a", "2")
        S.switch("2", "r2")
        S.boot(None)
    elif name == "confirm":  # 2 confirmed, then 3 on trial and online: slot a cleaned up
        install(R + "/fw/a", "2")
        S.switch("2", "r2")
        S.boot(None)
        S.confirm()
        install(R + "/fw/b", "3")
        S.switch("3", "r3")
        S.boot(None)
    else:  # 2 confirmed, then 3 on trial, booted once (twice: its last trial boot is over)
        install(R + "/fw/a", "2")
        S.switch("2", "r2")
        S.boot(None)
        S.confirm()
        install(R + "/fw/b", "3")
        S.switch("3", "r3")
        S.boot(None)
        if name == "boot past the trial":
            S.boot(None)
    return fs.snapshot()


def operate(name):
    if name.startswith("switch"):
        S.switch("2", "r2")
    elif name == "confirm":
        S.confirm()
    elif name in ("rollback to factory", "rollback to a slot"):
        S.rollback("not online within 300 s")
    else:
        S.boot(None)  # the start's own step: count the trial boot, or roll back


def sweep(name, old, new, fill=None):
    snap = prepare(name)
    s0 = fs.steps
    operate(name)
    total = fs.steps - s0
    assert boot() == new
    seen = {}
    errors = []
    for n in range(total + 1):  # the last: the operation completes
        fs.restore(snap)
        fs.cut_after(n, fill)
        try:
            operate(name)
            if n < total:
                errors.append("%d: no cut" % n)
        except PowerCut:
            pass
        fs.power_on()
        got = boot()
        if got not in (old, new):
            errors.append("%d: %s" % (n, got))
        seen[got] = seen.get(got, 0) + 1
        if outbox_bytes() != OUTBOX_BYTES or outbox_state() != OUTBOX:
            errors.append("%d: outbox changed" % n)
    found = " ".join("%s=%d" % kv for kv in sorted(seen.items()))
    print("%s|%d|%s|%s" % (name, total, found, "; ".join(errors[:3])))


BLANK = fs.snapshot()
sweep("switch", "1", "2")
sweep("switch, torn bytes erased", "1", "2", 0xFF)
sweep("trial boot", "2", "2")
sweep("rollback to factory", "2", "1")
sweep("confirm", "3", "3")
sweep("rollback to a slot", "3", "2")
sweep("boot past the trial", "2", "2")
'''


@pytest.mark.slow  # a sweep: seven series of power cuts, a start after each
def test_a_power_cut_at_every_step_boots_one_whole_version_and_leaves_the_outbox(
    mpvm: MicroPythonVM,
) -> None:
    out = run(mpvm, VERSIONS + SWEEPS)
    sweeps = {}
    for line in out:
        name, total, found, errors = line.split("|")
        assert errors == "", line
        # Every byte of the pointer (and of the failure's record) is a step of its own.
        assert int(total) > 40, line
        sweeps[name] = (int(total), found)
    # Cut at any step before the rename (or removal) that replaces the pointer, the kiosk
    # boots the old version whole; after it, the new one; never a mix of the two.
    assert sweeps == {
        "switch": (sweeps["switch"][0], f"1={sweeps['switch'][0]} 2=1"),
        "switch, torn bytes erased": (sweeps["switch"][0], f"1={sweeps['switch'][0]} 2=1"),
        "trial boot": (sweeps["trial boot"][0], f"2={sweeps['trial boot'][0] + 1}"),
        "rollback to factory": (
            sweeps["rollback to factory"][0],
            f"1=1 2={sweeps['rollback to factory'][0]}",
        ),
        # The clean-up after the pointer: the new version, whatever it has removed so far.
        "confirm": (sweeps["confirm"][0], f"3={sweeps['confirm'][0] + 1}"),
        "rollback to a slot": (
            sweeps["rollback to a slot"][0],
            f"2=1 3={sweeps['rollback to a slot'][0]}",
        ),
        # Cut before the pointer moves, the next start counts the trial again and rolls back.
        "boot past the trial": (
            sweeps["boot past the trial"][0],
            f"2={sweeps['boot past the trial'][0] + 1}",
        ),
    }


# MicroPython: what a test of the loader starts with (on the VM's own file system).
LOADER_HEAD = r"""
import os, sys
from fwslot import Slots
import loader_src


def put(path, text):
    with open(path, "w") as f:
        f.write(text)


def get(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return "-"

"""


def loader_starts(report: str, after: str = "") -> str:
    """MicroPython: four starts of the kiosk through the loader, each as from power on: what
    it imported forgotten, `after` run (statements, indented by 4), `report` printed."""
    return (
        "BASE = list(sys.path)\n"
        "for _ in range(4):\n"
        "    before = set(sys.modules)\n"
        "    try:\n"
        "        exec(loader_src.SRC, {'__name__': 'loader'})\n"
        "        print('running')\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__, e)\n"
        "    for m in list(sys.modules):\n"
        "        if m not in before:\n"
        "            del sys.modules[m]\n"
        f"{after}"
        "    sys.path[:] = BASE\n"
        "    p = Slots('/fw').pointer()\n"
        f"    print({report})\n"
    )


LOADER_IMPORT_ERROR = (
    LOADER_HEAD
    + r"""
for d in ("/fw", "/fw/a"):
    os.mkdir(d)
put("/lib/main.py", "print('factory main')\n")
put("/fw/a/main.py", "print('release main')\nimport no_such_module\n")
put("/fw/a/manifest.json", '{"id":"r2","version":"2.0"}')
Slots("/fw").switch("2.0", "r2")
"""
    + loader_starts('"guard", get("/boots"), get("/boots.err"), "pointer", p and p["boots"]')
    + ('print(sorted(Slots("/fw").failed().items()))\n')
)


def test_a_release_that_fails_on_import_is_tried_twice_then_rolled_back(
    mpvm: MicroPythonVM,
) -> None:
    out = run(mpvm, LOADER_IMPORT_ERROR)
    error = "ImportError: no module named 'no_such_module'"
    # The traceback the loader prints, less its lines: where the import failed.
    assert [line for line in out if not line.startswith(" ")] == [
        "release main",
        "Traceback (most recent call last):",
        error,
        "ResetRequested machine.reset()",
        f"guard 1 {error} pointer 1",
        "release main",
        "Traceback (most recent call last):",
        error,
        "ResetRequested machine.reset()",
        f"guard 2 {error} pointer 2",
        # The third start: rolled back, with the crash as the reason; the boot guard cleared
        # (the firmware's own start counts from there); the factory firmware runs, and goes on.
        "factory main",
        "running",
        "guard - - pointer None",
        "factory main",
        "running",
        "guard - - pointer None",
        f"[('id', 'r2'), ('reason', \"crashed: {error}\"), ('version', '2.0')]",
    ]


START = r"""
import asyncio, json, os
import app, link, logring
from fwslot import Slots


class Link:
    def __init__(self, kiosk, outbox, clock, wlan, ident, hw):
        print(ident["fw"], hw["slots"].version("factory"), hw["slots"].staging())


def run(coro):
    print("main loop")


link.Link = Link
asyncio.run = run  # the loop itself is not what is tested here
with open("/identity.json", "w") as f:
    json.dump({"store": "s1", "device": "till-1", "letter": "A", "fw": "1.0"}, f)
os.mkdir("/fw")
Slots("/fw").switch("2.0", "r2")
import main
print(b"boot: firmware 2.0," in logring.payload("s1", "till-1", "x", 0, 0))
"""


def test_the_firmware_runs_with_the_slots_and_reports_the_version_running(
    mpvm: MicroPythonVM,
) -> None:
    files = vm_files(BOARDS_DIR / f"{MONO}.py")
    files["/lib/board.py"] = files.pop(f"/lib/{MONO}.py")
    out = mpvm.run(START, [*firmware_modules(), "main"], files=files).ok()
    # ident["fw"] is the factory's version from identity.json; the link is given the one
    # the pointer names, and the slots.
    assert out.splitlines() == ["2.0 2.0 /fw/b", "main loop", "True"]
