"""The outbox keeps every captured event on flash until it is acked, through any power cut.

Every test runs on the MicroPython VM, on an in-memory flash (tests/vm/faultfs.py) that can
lose power after any byte written or any rename, remove or file creation.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.vm.mpvm import BUILD_DIR, ROOT, MicroPythonVM

FAULTFS = Path(__file__).with_name("vm").joinpath("faultfs.py").read_text()

# MicroPython helpers shared by the programs below: a mounted fault-injecting flash, event
# payloads of varied length tied to their seq, and a model of what the outbox must hold.
PRELUDE = r'''
import vfs
from faultfs import FaultFS, PowerCut
from outbox import Outbox

D = "/flash/outbox"
fs = FaultFS()
vfs.mount(fs, "/flash")
blank = fs.snapshot()


def pay(seq):
    return ("e%d:" % seq).encode() + bytes((seq * 7 + i) & 255 for i in range(seq * 37 % 90))


def chain(ob):
    """Every unacked record, walked the way the MQTT link keeps a window in flight."""
    out = []
    r = ob.peek()
    while r is not None:
        out.append(r)
        r = ob.peek(r[0])
    return out


class Model:
    """Ops: "a" append, "o" reopen, n ack(n), ("s", n) sent(n), ("m", n) stored(n)."""

    def __init__(self, maxr):
        self.max = maxr
        self.live = {}
        self.sent = set()  # what the broker has, as far as the outbox remembers
        self.next = 1
        self.dropped = 0

    def copy(self):
        m = Model(self.max)
        m.live = dict(self.live)
        m.sent = set(self.sent)
        m.next = self.next
        m.dropped = self.dropped
        return m

    def lo(self):
        return min(self.live) if self.live else self.next

    def do(self, op):
        if op == "a":
            while len(self.live) >= self.max:
                # The oldest the broker has goes first; else the oldest.
                had = [s for s in sorted(self.live) if s in self.sent and s - self.lo() < 256]
                gone = had[0] if had else min(self.live)
                del self.live[gone]
                self.sent.discard(gone)
                self.dropped += 1
            self.live[self.next] = pay(self.next)
            self.next += 1
        elif isinstance(op, tuple) and op[0] == "s":
            if op[1] in self.live and op[1] - self.lo() < 256:
                self.sent.add(op[1])
        elif isinstance(op, tuple):
            for s in [s for s in self.live if s <= op[1]]:
                del self.live[s]
                self.sent.discard(s)
            self.next = max(self.next, op[1] + 1)
        elif op != "o" and self.live and op - min(self.live) < 256:
            self.live.pop(op, None)
            self.sent.discard(op)


def do(ob, op):
    if op == "a":
        s = ob.next_seq()
        ob.append(s, pay(s))
    elif isinstance(op, tuple) and op[0] == "s":
        ob.sent(op[1])
    elif isinstance(op, tuple):
        ob.stored(op[1])
    else:
        ob.ack(op)


def diff(ob, m):
    """'' when the outbox holds exactly what the model says, else what differs."""
    got = chain(ob)
    want = sorted(m.live.items())
    if [s for s, _ in got] != [s for s, _ in want]:
        return "seqs %r, want %r" % ([s for s, _ in got], [s for s, _ in want])
    for (s, p), (_, q) in zip(got, want):
        if p != q:
            return "payload of %d" % s
    had = [s for s, _ in got if ob.was_sent(s)]
    if had != sorted(m.sent):
        return "sent %r, want %r" % (had, sorted(m.sent))
    have = (ob.depth(), ob.next_seq(), ob.dropped())
    if have != (len(want), m.next, m.dropped):
        return "depth/next/dropped %r, want %r" % (have, (len(want), m.next, m.dropped))
    return ""
'''

# A power cut at every step of one operation: for each n, restore the prepared flash, cut
# the power after n steps of the operation, power on, reopen and compare with the model of
# the state before and after the operation; then append once more and reboot, to show that
# the recovered outbox goes on storing durably.
SWEEP = r'''
def attempt(maxr, op, n, fill):
    """(steps the operation took or -1 if the power went off, the outbox it ran on)."""
    ob = None if op == "o" else Outbox(D, maxr)
    fs.cut_after(n, fill)
    s0 = fs.steps
    try:
        if ob is None:
            Outbox(D, maxr)
        else:
            do(ob, op)
    except PowerCut:
        fs.power_on()
        return -1, ob
    fs.power_on()
    return fs.steps - s0, ob


def sweep(name, maxr, prep, op, torn=None, fill=None):
    fs.restore(blank)
    before = Model(maxr)
    if prep is not None:
        ob = Outbox(D, maxr)
        for o in prep:
            do(ob, o)
            before.do(o)
        if torn is not None:  # (op, n): leave `op` cut off after n steps
            then = before.copy()
            then.do(torn[0])
            fs.cut_after(torn[1], fill)
            try:
                do(ob, torn[0])
            except PowerCut:
                pass
            fs.power_on()
            snap = fs.snapshot()
            if not diff(Outbox(D, maxr), then):  # its record was whole before the cut
                before = then
            fs.restore(snap)
    snap = fs.snapshot()
    after = before.copy()
    after.do(op)
    total = attempt(maxr, op, None, None)[0]
    outcomes = [0, 0]
    errors = []
    for n in range(total + 1):
        fs.restore(snap)
        took = attempt(maxr, op, n, fill)[0]
        if (took < 0) != (n < total):
            errors.append("%d: took %d" % (n, took))
            continue
        try:
            ob = Outbox(D, maxr)
        except Exception as e:
            errors.append("%d: reopen %r" % (n, e))
            continue
        if [f for f in fs.files if not f.startswith("/outbox/seq")] != ["/outbox/log"]:
            errors.append("%d: files %r" % (n, list(fs.files)))
        if not diff(ob, after):
            k = 1
        elif not diff(ob, before) and n < total:
            k = 0
        else:
            errors.append("%d: %s" % (n, diff(ob, after)))
            continue
        outcomes[k] += 1
        now = (after if k else before).copy()
        do(ob, "a")
        now.do("a")
        e = diff(Outbox(D, maxr), now)
        if e:
            errors.append("%d: then %s" % (n, e))
        # The same, when the failed write was an error the kiosk lived through: the outbox
        # object it happened to goes on, and appends after a torn record, not behind it.
        fs.restore(snap)
        ob = attempt(maxr, op, n, fill)[1]
        if ob is not None:
            do(ob, "a")
            e = diff(ob, now) or diff(Outbox(D, maxr), now)
            if e:
                errors.append("%d: same object then %s" % (n, e))
    print(name, total, outcomes[0], outcomes[1], len(errors), errors[:3])
'''


def run(mpvm: MicroPythonVM, code: str, *, compiled: bool = False) -> list[str]:
    files = {"/lib/faultfs.py": FAULTFS}
    return mpvm.run(PRELUDE + code, ["outbox"], files=files, compiled=compiled).ok().splitlines()


BASICS = r"""
ob = Outbox(D, 5)
print(ob.next_seq(), ob.depth(), ob.dropped(), ob.peek())
for _ in range(4):
    do(ob, "a")
print(ob.next_seq(), ob.depth(), [s for s, _ in chain(ob)], ob.peek() == (1, pay(1)))
print(ob.peek(1)[0], ob.peek(2)[0], ob.peek(4), ob.peek(-7)[0])
ob.ack(3)
ob.ack(1)
print(ob.depth(), [s for s, _ in chain(ob)], ob.peek(1)[0], ob.peek(2)[0])
steps = fs.steps
for seq in (0, 1, 3, 5, 99, -1):
    ob.ack(seq)
print("no-op acks wrote", fs.steps - steps)
ob = Outbox(D, 5)
print(ob.next_seq(), ob.depth(), [s for s, _ in chain(ob)], chain(ob) == [(2, pay(2)), (4, pay(4))])
ob.ack(2)
ob.ack(4)
print(ob.depth(), ob.peek(), ob.next_seq())
ob = Outbox(D, 5)
print(ob.depth(), ob.peek(), ob.next_seq(), sorted(fs.files))
"""


def test_seqs_peek_windows_out_of_order_acks_and_reboots(mpvm: MicroPythonVM) -> None:
    assert run(mpvm, BASICS) == [
        "1 0 0 None",
        "5 4 [1, 2, 3, 4] True",
        "2 3 None 1",
        "2 [2, 4] 2 4",
        "no-op acks wrote 0",
        "5 2 [2, 4] True",
        "0 None 5",
        "0 None 5 ['/outbox/log', '/outbox/seq0', '/outbox/seq1']",
    ]


def test_compiled_module_behaves_the_same_and_stays_small(mpvm: MicroPythonVM) -> None:
    # Only this module: the build of the others is test_firmware_build's business.
    target = (BUILD_DIR / "outbox.mpy").relative_to(ROOT)
    subprocess.run(
        ["make", "--no-print-directory", str(target)], cwd=ROOT, check=True, capture_output=True
    )
    assert (BUILD_DIR / "outbox.mpy").stat().st_size < 4 * 1024
    assert run(mpvm, BASICS + "import outbox\nprint(outbox.__file__)", compiled=True)[-1] == (
        "/lib/outbox.mpy"
    )
    assert run(mpvm, BASICS, compiled=True) == run(mpvm, BASICS)


def test_append_checks_seq_and_payload(mpvm: MicroPythonVM) -> None:
    code = r"""
ob = Outbox(D)
print(Outbox.MAX_RECORDS, Outbox.MAX_PAYLOAD)
for seq, p in ((2, b"x"), (0, b"x"), (1, b""), (1, bytes(1025))):
    try:
        ob.append(seq, p)
        print("accepted", seq, len(p))
    except ValueError:
        print("refused", seq, len(p))
ob.append(1, bytes(1024))
ob.append(2, bytearray(b"\x00\xff"))
print(ob.next_seq(), len(ob.peek()[1]), ob.peek(1))
"""
    assert run(mpvm, code) == [
        "2000 1024",
        "refused 2 1",
        "refused 0 1",
        "refused 1 0",
        "refused 1 1025",
        "3 1024 (2, b'\\x00\\xff')",
    ]


def test_a_full_outbox_drops_the_oldest_unacked_and_counts_them(mpvm: MicroPythonVM) -> None:
    code = r"""
ob = Outbox(D, 4)
for _ in range(4):
    do(ob, "a")
ob.ack(2)
for _ in range(3):
    do(ob, "a")
print(ob.depth(), ob.dropped(), [s for s, _ in chain(ob)])
ob = Outbox(D, 4)
print(ob.depth(), ob.dropped(), [s for s, _ in chain(ob)], ob.next_seq())
for s in (5, 6, 7):
    ob.ack(s)
for _ in range(30):
    do(ob, "a")
print(ob.depth(), ob.dropped(), [s for s, _ in chain(ob)])
for s in range(30, 40):
    ob.ack(s)
ob = Outbox(D, 4)
print(ob.depth(), ob.dropped(), ob.next_seq(), len(fs.files["/outbox/log"]))
for _ in range(4):
    do(ob, "a")
ob = Outbox(D, 2)  # a smaller bound after an update: the next append drops down to it
do(ob, "a")
print(ob.depth(), ob.dropped(), [s for s, _ in chain(Outbox(D, 2))])
"""
    assert run(mpvm, code) == [
        "4 2 [4, 5, 6, 7]",
        "4 2 [4, 5, 6, 7] 8",
        "4 29 [34, 35, 36, 37]",
        "0 29 38 20",
        "2 32 [41, 42]",
    ]


def test_acks_far_ahead_of_the_oldest_unacked_are_forgotten_not_lost(
    mpvm: MicroPythonVM,
) -> None:
    # The outbox remembers acks for 256 seqs from the oldest unacked one; an ack beyond that
    # is ignored, so its record is sent again (the host drops the duplicate by seq).
    code = r"""
ob = Outbox(D, 400)
for _ in range(300):
    ob.append(ob.next_seq(), b"e")
for s in range(2, 301):
    ob.ack(s)
print(ob.depth(), ob.peek()[0], ob.peek(1)[0])
ob.ack(1)
ob = Outbox(D, 400)
print(ob.depth(), ob.peek()[0], ob.next_seq())
"""
    assert run(mpvm, code) == ["45 1 257", "44 257 301"]


def test_heap_of_an_open_outbox(mpvm: MicroPythonVM) -> None:
    # gc.collect() frees garbage in this VM only once the program has yielded to the event loop.
    code = (
        PRELUDE
        + r"""
import gc, asyncio


async def live():
    await asyncio.sleep_ms(0)
    gc.collect()
    return gc.mem_alloc()


ob = Outbox(D)
for _ in range(150):
    ob.append(ob.next_seq(), bytes(100))
for s in range(1, 150, 3):
    ob.ack(s)
ob = None
base = await live()
ob = Outbox(D)
print("object", await live() - base)
r = ob.peek(20)
print("with a payload", await live() - base)
"""
    )
    out = mpvm.run(code, ["outbox"], files={"/lib/faultfs.py": FAULTFS}, run_async=True).ok()
    sizes = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in out.splitlines()}
    assert sizes["object"] < 1024
    assert sizes["with a payload"] < sizes["object"] + 256


def sweep(mpvm: MicroPythonVM, calls: str) -> dict[str, list[int]]:
    """name -> [steps the operation takes, cuts that left the state as before it, as after]."""
    out = run(mpvm, SWEEP + calls)
    results: dict[str, list[int]] = {}
    for line in out:
        name, steps, kept_before, reached_after, errors, shown = line.split(" ", 5)
        assert errors == "0", line
        assert shown == "[]"
        results[name] = [int(steps), int(kept_before), int(reached_after)]
    return results


@pytest.mark.slow  # a sweep: a power cut at every step of an append, a mount after each
def test_a_power_cut_at_every_step_of_an_append(mpvm: MicroPythonVM) -> None:
    results = sweep(
        mpvm,
        'sweep("append", 5, ["a", "a", "a", "a", 2], "a")\n'
        'sweep("append-to-empty", 5, ["a", 1], "a")\n'
        'sweep("append-when-full", 5, ["a", "a", "a", "a", "a", 3, "a"], "a")\n'
        # Ten drops since the last compaction: this append compacts the log as well.
        'sweep("append-compacts", 5, ["a"] * 14, "a")\n'
        # A torn write that leaves the rest of its bytes erased or as junk, not missing:
        # only the record checksums tell.
        'sweep("append-erased", 5, ["a", "a", "a", "a", 2], "a", fill=0xFF)\n'
        'sweep("append-junk", 5, ["a", "a", "a", "a", 2], "a", fill=0x44)\n'
        'sweep("append-zeros-compacts", 5, ["a"] * 14, "a", fill=0)\n',
    )
    for name, (steps, kept_before, reached_after) in results.items():
        # A torn record is discarded; once the record is whole it stays, compaction or not.
        assert steps > 12, name
        assert kept_before + reached_after == steps + 1, name
        assert kept_before > 0, name
        assert reached_after > 0, name
    # The cut lands on the data record (header and payload) for the first 12 + len bytes.
    assert results["append"][1] == 12 + len(b"e5:") + 5 * 37 % 90
    assert results["append-compacts"][2] > 100


def test_a_power_cut_at_every_step_of_an_ack(mpvm: MicroPythonVM) -> None:
    results = sweep(
        mpvm,
        'sweep("ack-middle", 5, ["a", "a", "a", "a"], 3)\n'
        'sweep("ack-oldest", 5, ["a", "a", "a", "a", 2], 1)\n'
        # The last unacked record: the log is compacted down to its header.
        'sweep("ack-empties", 5, ["a", "a", "a", 1, 3], 2)\n'
        # Garbage reaches max_records: the live records 3 and 5 are rewritten, 4 is a gap.
        'sweep("ack-compacts", 5, ["a", "a", "a", "a", "a", 2, 4], 1)\n'
        # The same with the newest records acked: the next seq must survive the rewrite.
        'sweep("ack-compacts-newest", 5, ["a", "a", "a", "a", "a", 5, 4], 2)\n'
        'sweep("ack-erased", 5, ["a", "a", "a", "a", "a", 2, 4], 1, fill=0xFF)\n'
        'sweep("ack-junk", 5, ["a", "a", "a", "a"], 3, fill=0x41)\n',
    )
    for name, (steps, kept_before, reached_after) in results.items():
        assert kept_before == 12, name  # the ack record itself; after that it holds
        assert reached_after == steps + 1 - 12, name
    assert results["ack-middle"][0] == 12
    assert results["ack-compacts"][0] > 12 + 20 + 2 * 12 + 2


def test_a_power_cut_at_every_step_of_opening(mpvm: MicroPythonVM) -> None:
    results = sweep(
        mpvm,
        # The first start: directory, log header, rename.
        'sweep("create", 5, None, "o")\n'
        # A log that ends in a torn append is rewritten without it on open.
        'sweep("open-torn", 5, ["a", "a", "a", 1, "a"], "o", torn=("a", 15))\n'
        'sweep("open-torn-header", 5, ["a", "a", 2], "o", torn=("a", 5))\n'
        'sweep("open-erased", 5, ["a", "a", "a", 1, "a"], "o", torn=("a", 15), fill=0xFF)\n'
        # A compaction cut off before its rename leaves a partial log.new behind.
        'sweep("open-leftover", 5, ["a", "a", "a", 1, 3], "o", torn=(2, 12 + 1 + 7))\n'
        'sweep("open-leftover-full", 5, ["a"] * 5 + [2, 4], "o", torn=(1, 12 + 1 + 60))\n',
    )
    # ... and the first counter file: created, then its 12 bytes.
    assert results["create"][0] == 1 + 1 + 20 + 1 + 1 + 12
    assert results["open-torn"][0] > 20 + 3 * 12
    assert results["open-leftover"][0] == 1  # removing it
    for steps, kept_before, reached_after in results.values():
        assert kept_before == 0
        assert reached_after == steps + 1


def test_random_operations_with_random_power_cuts(mpvm: MicroPythonVM) -> None:
    code = r"""
seed = 2463534242


def rnd(n):
    global seed
    seed ^= (seed << 13) & 0xFFFFFFFF
    seed ^= seed >> 17
    seed ^= (seed << 5) & 0xFFFFFFFF
    return seed % n


# The last run has neither cuts nor reboots: nothing but the running state is checked.
for maxr, chaos in ((1, True), (4, True), (8, False)):
    fs.restore(blank)
    m = Model(maxr)
    ob = Outbox(D, maxr)
    cuts = kept = undone = peeks = 0
    errors = []
    for i in range(800):
        r = rnd(100)
        if r < 50:
            op = "a"
        elif r < 85 and m.live and rnd(4):
            live = sorted(m.live)
            pick = live[rnd(len(live))]
            op = (pick, ("s", pick), ("s", pick), ("m", pick))[rnd(4)]
        elif r < 85 and rnd(8) == 0:
            op = ("m", m.next + rnd(5) - 2)  # the host's mark: behind, at or past the count
        elif r < 85 or r < 92 and not chaos:
            op = rnd(m.next + 3) - 1  # acked, unknown or not yet used
        elif r < 92:
            op = "o"  # a reboot
        else:
            op = "p"
        if op == "p":
            after = rnd(m.next + 1)
            want = [s for s in sorted(m.live) if s > after]
            got = ob.peek(after)
            if (got[0] if got else None) != (want[0] if want else None):
                errors.append("%d: peek(%d) %r" % (i, after, got))
            peeks += 1
            continue
        then = m.copy()
        then.do(op)
        if chaos and rnd(3) == 0:
            fill = (None, None, 0xFF, 0, 0x44)[rnd(5)]
            fs.cut_after(rnd(40) if rnd(2) else rnd(400), fill)
        try:
            if op == "o":
                ob = Outbox(D, maxr)
            else:
                do(ob, op)
            cut = False
        except PowerCut:
            cut = True
        fs.cut_after(None)
        if cut:
            cuts += 1
            fs.power_on()
            ob = Outbox(D, maxr)
            if not diff(ob, then):
                kept += 1
                m = then
            elif not diff(ob, m):
                undone += 1
            else:
                errors.append("%d: after a cut: %s" % (i, diff(ob, then)))
                m = then
            continue
        m = then
        e = diff(ob, m)
        if e:
            errors.append("%d: %r: %s" % (i, op, e))
    print(maxr, cuts, kept, undone, peeks, m.next, m.dropped, len(errors), errors[:3])
"""
    out = run(mpvm, code)
    assert len(out) == 3
    for line in out:
        maxr, cuts, kept, undone, peeks, next_seq, dropped, errors, shown = line.split(" ", 8)
        assert (errors, shown) == ("0", "[]"), line
        if maxr != "8":
            assert int(cuts) > 30, line
            assert int(kept) > 0, line
            assert int(undone) > 10, line
        assert int(peeks) > 5, line
        assert int(next_seq) > 256, line  # the ring of gone bits wraps
        assert int(dropped) > 0, line


def test_the_broker_puback_keeps_a_record_and_the_host_mark_lets_it_go(
    mpvm: MicroPythonVM,
) -> None:
    code = r"""
ob = Outbox(D, 4)
for _ in range(4):
    do(ob, "a")
for s in (2, 3):
    ob.sent(s)
print(ob.depth(), [s for s, _ in chain(ob)], [s for s in range(1, 5) if ob.was_sent(s)])
do(ob, "a")  # full: the oldest the broker has goes, not 1, which it never saw
print(ob.depth(), ob.dropped(), [s for s, _ in chain(ob)])
ob = Outbox(D, 4)  # the same after a reboot
print(ob.depth(), ob.dropped(), [s for s, _ in chain(ob)], ob.was_sent(3), ob.was_sent(1))
do(ob, "a")
do(ob, "a")  # none the broker has is left: the oldest goes
print(ob.depth(), ob.dropped(), [s for s, _ in chain(ob)])
steps = fs.steps
ob.stored(2)  # behind what the outbox keeps: nothing to write
print("an old mark wrote", fs.steps - steps)
ob.stored(5)
print(ob.depth(), [s for s, _ in chain(ob)], ob.next_seq())
ob.stored(7)
print(ob.depth(), ob.peek(), ob.next_seq())
ob.stored(40)  # beyond the count: it went back; the next seq moves past the mark
print(ob.depth(), ob.peek(), ob.next_seq())
ob = Outbox(D, 4)
print(ob.depth(), ob.dropped(), ob.next_seq())
"""
    assert run(mpvm, code) == [
        "4 [1, 2, 3, 4] [2, 3]",
        "4 1 [1, 3, 4, 5]",
        "4 1 [1, 3, 4, 5] True False",
        "4 3 [4, 5, 6, 7]",
        "an old mark wrote 0",
        "2 [6, 7] 8",
        "0 None 8",
        "0 None 41",
        "0 3 41",
    ]


def test_a_power_cut_at_every_step_of_a_puback_and_a_mark(mpvm: MicroPythonVM) -> None:
    results = sweep(
        mpvm,
        'sweep("sent", 5, ["a", "a", "a"], ("s", 2))\n'
        # The fifth record of garbage: the log is compacted, the sent one marked as such.
        'sweep("sent-compacts", 5, ["a"] * 5 + [("s", s) for s in (1, 2, 3, 4)], ("s", 5))\n'
        'sweep("mark", 5, ["a", "a", "a", "a", ("s", 1)], ("m", 2))\n'
        'sweep("mark-empties", 5, ["a", "a", "a"], ("m", 3))\n'
        'sweep("mark-beyond", 5, ["a", "a"], ("m", 10))\n'
        'sweep("mark-beyond-empty", 5, ["a", ("m", 1)], ("m", 300))\n'
        'sweep("mark-junk", 5, ["a", "a", "a", "a"], ("m", 2), fill=0x4D)\n',
    )
    for name, (steps, kept_before, reached_after) in results.items():
        assert kept_before == 12, name  # the record itself; once it is whole it holds
        assert reached_after == steps + 1 - 12, name
    assert results["sent-compacts"][0] > 12 + 20
    full = sweep(mpvm, 'sweep("full-drops-sent", 5, ["a"] * 5 + [("s", 3)], "a")\n')
    steps, kept_before, reached_after = full["full-drops-sent"]
    assert kept_before + reached_after == steps + 1
    assert kept_before == 12 + len(b"e6:") + 6 * 37 % 90  # the DATA record that drops 3
    assert results["mark-beyond"][0] > 12 + 20  # and the counter, past the mark


# The counter's records: the log's HEAD, both counter files and the newest DATA record. Each
# byte of each is damaged in turn (all bits flipped); the outbox opens with the seq where it
# was, so no seq is given out twice, and goes on storing.
DAMAGE = r"""
ob = Outbox(D, 4)
for _ in range(6):
    do(ob, "a")  # two dropped
ob.stored(5)  # compacted: HEAD(lo 6, dropped 2, next 7) and 6
do(ob, "a")
do(ob, "a")
ob.sent(7)
snap = fs.snapshot()
log = fs.files["/outbox/log"]
last = len(log) - 12 - 12 - len(pay(8))  # DATA 8, then the PUBACK of 7
places = [("/outbox/log", i, "head") for i in range(20)]
places += [("/outbox/log", last + i, "last") for i in range(12 + len(pay(8)) + 12)]
places += [(f, i, "counter") for f in ("/outbox/seq0", "/outbox/seq1") for i in range(12)]
bad = []
for path, i, what in places:
    fs.restore(snap)
    fs.files[path][i] ^= 0xFF
    ob = Outbox(D, 4)
    kept = [s for s, _ in chain(ob)]
    want = [6, 7] if what == "last" and i < len(log) - 12 else [6, 7, 8]
    if (ob.next_seq(), ob.dropped(), kept) != (9, 2, want):
        bad.append((path, i, ob.next_seq(), ob.dropped(), kept))
    do(ob, "a")
    ob = Outbox(D, 4)
    if [s for s, _ in chain(ob)][-1:] != [9] or ob.next_seq() != 10 or chain(ob)[-1][1] != pay(9):
        bad.append((path, i, "then", ob.next_seq(), [s for s, _ in chain(ob)]))
print(len(places), len(bad), bad[:4])
"""


def test_damage_to_any_byte_of_the_counters_records_never_repeats_a_seq(
    mpvm: MicroPythonVM,
) -> None:
    places, bad, shown = run(mpvm, DAMAGE)[0].split(" ", 2)
    assert (bad, shown) == ("0", "[]")
    assert int(places) == 20 + 12 + len(b"e8:") + 8 * 37 % 90 + 12 + 24


def test_kept_from_is_the_oldest_seq_the_outbox_keeps(mpvm: MicroPythonVM) -> None:
    # The kiosk's status carries it: the host's mark passes what a full outbox let go.
    code = r"""
ob = Outbox(D, 3)
print(ob.kept_from())
for _ in range(5):
    do(ob, "a")  # 1 and 2 let go
print(ob.kept_from(), ob.dropped())
ob.ack(3)
print(ob.kept_from())
ob.stored(4)
print(ob.kept_from())
ob.stored(5)
print(ob.kept_from(), ob.next_seq(), Outbox(D, 3).kept_from())
"""
    assert run(mpvm, code) == ["1", "3 2", "4", "5", "6 6 6"]
