"""The outbox: every captured event, on flash, until the host has stored it.

One log file holds checksummed records, appended one at a time:

    header (12 bytes, little-endian): kind u8, drops u8, length u16, seq u32, crc32 u32
    then `length` payload bytes; the crc covers the first 8 header bytes and the payload.

The log opens with a HEAD record: seq = the oldest record kept, payload = the dropped count
and the next seq (u32 each), which a compaction that leaves out records must keep. DATA
records carry events in strictly increasing seq (SENT DATA: one the broker already had when
the log was compacted); `drops` says how many records this append pushed out, so dropping
and appending are one atomic write. PUBACK records say the broker has a seq; it is kept all
the same, as the broker acknowledges before its own disk has it. MARK records carry the
host's high-water mark: every seq up to it is stored on the host, so those records go. ACK
records let one seq go. Replaying the log rebuilds the state; it stops at the first record
that is short or fails its crc: a write torn by a power cut, never acknowledged.

When the outbox is full, an append lets go of the oldest record the broker has, and only
when it has none of them, of the oldest record: what goes is counted (`dropped`).

The seq counter never repeats one given out, whatever single record on flash is damaged: it
lives in the log (HEAD and DATA) and in two small files, `seq0` and `seq1`, written in turn
after each append (next seq and dropped count, with a crc). A HEAD that fails its crc is
skipped, not taken as a new outbox: the records after it still hold the events, and the
counter files the seq. A torn or damaged counter file leaves the other one and the log.

Compaction writes the live records to `log.new` and renames it over `log`; littlefs renames
atomically, so a power cut leaves either log intact, and a leftover `log.new` is removed on
open. A DATA record whose seq jumps means the seqs in between are gone.

RAM: a few integers, the 12-byte header buffer, and two 32-byte rings of bits ("gone" and
"the broker has it") for the seqs [lo, lo + 256) (lo is the oldest record kept), plus one
range of seqs known to be gone beyond the ring; the records themselves stay on flash.
"""

import binascii
import os
import struct

from micropython import const

_HDR = const(12)
_START = const(20)  # the HEAD record: header and its 8-byte payload
_HEAD = const(0x4F)
_DATA = const(0x44)
_SDATA = const(0x53)  # DATA the broker has, as written by a compaction
_ACK = const(0x41)
_PUBACK = const(0x50)
_MARK = const(0x4D)
_CAP = const(256)  # seqs from lo on whose state is remembered: far beyond any send window
_MASK = const(31)  # _CAP // 8 - 1
_MAX_PAYLOAD = const(1024)
_FMT = "<BBHII"


class Outbox:
    """A durable, bounded, append-only event log on flash, drained in sequence order."""

    # A day of a busy till offline (about 450 KB of flash at most); the oldest go first.
    MAX_RECORDS = const(2000)
    MAX_PAYLOAD = const(_MAX_PAYLOAD)  # the contract's x-max-bytes for events

    def __init__(self, directory: str, max_records: int = MAX_RECORDS) -> None:
        """Open (creating if needed) the outbox in `directory`; recovers after a power cut."""
        self._log = directory + "/log"
        self._tmp = directory + "/log.new"
        self._seqf = (directory + "/seq0", directory + "/seq1")
        self._max = max(1, max_records)
        self._h = bytearray(_HDR)
        self._hm = memoryview(self._h)[:8]
        self._k = 0  # the counter file written next
        try:
            os.mkdir(directory)
        except OSError:
            pass  # already there
        self._load()

    def next_seq(self) -> int:
        """The seq the next append() must use; never repeats one given out before."""
        return self._next

    def kept_from(self) -> int:
        """The oldest seq kept (next_seq() when none is): what came before is stored on the
        host, or let go and no longer this outbox's to send."""
        return self._lo

    def depth(self) -> int:
        """Records kept: appended and not yet stored on the host (as far as the kiosk knows)."""
        return self._depth

    def capacity(self) -> int:
        """The most records kept: past it, the oldest is let go (`dropped`)."""
        return self._max

    def dropped(self) -> int:
        """Records let go because the outbox was full, since it was created."""
        return self._dropped

    def append(self, seq: int, payload: bytes) -> None:
        """Store `payload` as event `seq`; durable when this returns."""
        if self._torn:
            self._load()
        if seq != self._next or not 0 < len(payload) <= _MAX_PAYLOAD:
            raise ValueError
        drops = min(255, max(0, self._depth - self._max + 1))
        self._write(_DATA, drops, seq, payload)
        self._save()
        # Compacting delays "Thank you", so the press path leaves it to the acks unless the
        # log keeps growing with nothing acked (offline and full).
        if self._n - self._depth >= 2 * self._max:
            self._compact()

    def peek(self, after_seq: int = 0):
        """The oldest record kept with seq > after_seq as (seq, payload), or None."""
        if after_seq < self._lo:
            after_seq = self._lo - 1
        # (_ps, _po): every DATA record with seq >= _ps starts at or after offset _po.
        off = self._po if after_seq >= self._ps - 1 else _START
        h = self._h
        with open(self._log, "rb") as f:
            while off < self._end:
                f.seek(off)
                f.readinto(h)
                kind, _, n, seq, _ = struct.unpack(_FMT, h)
                if kind == _DATA or kind == _SDATA:
                    self._ps = seq
                    self._po = off
                    if seq > after_seq and self._live(seq):
                        return seq, f.read(n)
                off += _HDR + n
        return None

    def was_sent(self, seq: int) -> bool:
        """True when the record `seq` is kept and the broker acknowledged it (as far as the
        ring of bits remembers: it goes first when the outbox is full)."""
        return self._ackable(seq) and bool(self._has(seq))

    def sent(self, seq: int) -> None:
        """The broker acknowledged `seq`: the record stays (the broker may still lose it) but
        goes first when the outbox is full. Unknown or repeated acks are ignored."""
        if self._torn:
            self._load()
        if self._ackable(seq) and not self._has(seq):
            self._write(_PUBACK, 0, seq, b"")
            self._tidy()

    def stored(self, mark: int) -> None:
        """The host has stored every event up to `mark`: those records go. A mark at or
        beyond next_seq() means the count went back (a damaged flash, a reset kiosk under an
        old name): the next seq moves past it, so no stored event's seq is given out again."""
        if self._torn:
            self._load()
        if mark >= self._lo or mark >= self._next:
            self._write(_MARK, 0, mark, b"")
            if mark >= self._next - 1:
                self._save()
            self._tidy()

    def ack(self, seq: int) -> None:
        """Let the record `seq` go; unknown or repeated acks are ignored."""
        if self._torn:
            self._load()
        if self._ackable(seq):
            self._write(_ACK, 0, seq, b"")
            self._tidy()

    def _tidy(self):
        if not self._depth or self._n - self._depth >= self._max:
            self._compact()

    # The rings, for seqs in [lo, lo + _CAP): gone (let go, stored or compacted away), and
    # the broker has it. Seqs in [_hl, _hh) are gone too: a gap too wide for the ring.

    def _gone(self, s):
        return self._hl <= s < self._hh or self._bm[(s >> 3) & _MASK] & (1 << (s & 7))

    def _mark(self, s):
        if not self._hl <= s < self._hh:
            self._bm[(s >> 3) & _MASK] |= 1 << (s & 7)

    def _has(self, s):
        return self._sb[(s >> 3) & _MASK] & (1 << (s & 7))

    def _live(self, s):
        return s >= self._lo and (s - self._lo >= _CAP or not self._gone(s))

    def _ackable(self, s):
        # An ack beyond the ring is forgotten: the record is sent again later, never lost.
        return self._lo <= s < self._next and s - self._lo < _CAP and not self._gone(s)

    def _victim(self):
        """The record a full outbox lets go: the oldest the broker has, else the oldest."""
        s = self._lo
        end = min(self._next, s + _CAP)
        while s < end:
            if self._has(s) and not self._gone(s):
                return s
            s += 1
        return self._lo

    def _apply(self, kind, drops, seq):
        """One record's effect, the same when written and when replayed."""
        self._n += 1
        if kind == _DATA or kind == _SDATA:
            for _ in range(drops):
                self._mark(self._victim())
                self._depth -= 1
                self._dropped += 1
                self._advance()
            self._skip(seq)
            self._next = seq + 1
            self._depth += 1
            if kind == _SDATA and seq - self._lo < _CAP:
                self._sb[(seq >> 3) & _MASK] |= 1 << (seq & 7)
        elif kind == _MARK:
            while self._lo <= seq and self._lo < self._next:
                if not self._gone(self._lo):
                    self._depth -= 1
                self._mark(self._lo)
                self._advance()
            if seq >= self._next:  # nothing is kept, so the ring is clear
                self._lo = self._next = seq + 1
        elif self._ackable(seq):
            if kind == _PUBACK:
                self._sb[(seq >> 3) & _MASK] |= 1 << (seq & 7)
            else:
                self._mark(seq)
                self._depth -= 1
        self._advance()

    def _skip(self, seq):
        # Seqs before `seq` without a record: acked and compacted away, or lost; gone.
        while self._next < seq and self._next - self._lo < _CAP:
            self._mark(self._next)
            self._next += 1
        if self._next < seq:
            if self._lo == self._next:
                self._lo = seq  # nothing kept: no gap to remember
            else:
                self._hl = self._next
                self._hh = seq
            self._next = seq

    def _advance(self):
        while self._lo < self._next and self._gone(self._lo):
            if self._lo < self._hh and self._lo >= self._hl:
                self._lo = self._hh  # no bits were set inside the range
                continue
            i = (self._lo >> 3) & _MASK
            b = ~(1 << (self._lo & 7))
            self._bm[i] &= b
            self._sb[i] &= b
            self._lo += 1

    # Flash.

    def _put(self, f, kind, drops, seq, payload):
        h = self._h
        struct.pack_into(_FMT, h, 0, kind, drops, len(payload), seq, 0)
        struct.pack_into("<I", h, 8, binascii.crc32(payload, binascii.crc32(self._hm)))
        f.write(h)
        f.write(payload)
        return _HDR + len(payload)

    def _write(self, kind, drops, seq, payload):
        # Until the write completes the log may end in a torn record; the next change
        # reloads, which rewrites the log without it, instead of appending after it.
        self._torn = True
        with open(self._log, "ab") as f:
            self._end += self._put(f, kind, drops, seq, payload)
        self._torn = False
        self._apply(kind, drops, seq)

    def _save(self):
        """The counter (next seq, dropped) to the counter file whose turn it is."""
        h = self._h
        struct.pack_into("<III", h, 0, self._next, self._dropped, 0)
        struct.pack_into("<I", h, 8, binascii.crc32(self._hm))
        with open(self._seqf[self._k], "wb") as f:
            f.write(h)
        self._k ^= 1

    def _counter(self):
        """The highest (next seq, dropped) that a whole counter file holds, or (0, 0)."""
        best = (0, 0)
        h = self._h
        for i in (0, 1):
            try:
                with open(self._seqf[i], "rb") as f:
                    ok = f.readinto(h) == _HDR
            except OSError:
                ok = False  # not written yet
            if ok and binascii.crc32(self._hm) == struct.unpack_from("<I", h, 8)[0]:
                nxt, dropped = struct.unpack_from("<II", h, 0)
                if nxt > best[0]:
                    best = (nxt, dropped)
                    self._k = i ^ 1  # the older one is written next
        return best

    def _read(self, f):
        """The next record as (kind, drops, seq, payload), or None if short or corrupt."""
        h = self._h
        if f.readinto(h) != _HDR:
            return None
        kind, drops, n, seq, crc = struct.unpack(_FMT, h)
        if n > _MAX_PAYLOAD:
            return None
        p = f.read(n)
        if len(p) != n or binascii.crc32(p, binascii.crc32(self._hm)) != crc:
            return None
        return kind, drops, seq, p

    def _load(self):
        self._torn = True
        try:
            os.remove(self._tmp)  # an unfinished compaction; the log it was to replace is whole
        except OSError:
            pass
        nxt, dropped = self._counter()
        self._lo = self._next = max(1, nxt)
        self._depth = self._dropped = self._n = self._ps = self._end = self._hl = self._hh = 0
        self._po = _START
        self._bm = bytearray(_CAP >> 3)
        self._sb = bytearray(_CAP >> 3)
        top = 0
        try:
            size = os.stat(self._log)[6]
        except OSError:
            size = 0  # a fresh outbox
        if size >= _START:
            with open(self._log, "rb") as f:
                r = self._read(f)
                if r and r[0] == _HEAD and len(r[3]) == 8:
                    self._lo = self._next = r[2]
                    self._dropped, top = struct.unpack("<II", r[3])
                else:  # a damaged HEAD: the events after it are still whole
                    f.seek(_START)
                    r = self._read(f)
                    if r and (r[0] == _DATA or r[0] == _SDATA):
                        self._lo = self._next = r[2]
                    f.seek(_START)
                self._end = _START
                r = self._read(f)
                while r and (
                    r[0] == _ACK
                    or r[0] == _PUBACK
                    or r[0] == _MARK
                    or ((r[0] == _DATA or r[0] == _SDATA) and r[2] >= self._next)
                ):
                    self._apply(r[0], r[1], r[2])
                    self._end += _HDR + len(r[3])
                    r = self._read(f)
        self._skip(max(top, nxt))
        self._advance()
        self._dropped = max(self._dropped, dropped)
        if self._end < _START or self._end < size:
            self._compact()  # a new log, or one that ends in a torn record
        elif self._next > nxt:
            self._save()  # cut off between an append and its counter file, or one damaged
        self._torn = False

    def _compact(self):
        with open(self._tmp, "wb") as out:
            head = struct.pack("<II", self._dropped, self._next)
            end = self._put(out, _HEAD, 0, self._lo, head)
            if self._depth:
                with open(self._log, "rb") as f:
                    off = _START
                    while off < self._end:
                        f.seek(off)
                        f.readinto(self._h)
                        kind, _, n, seq, _ = struct.unpack(_FMT, self._h)
                        off += _HDR + n
                        if (kind == _DATA or kind == _SDATA) and self._live(seq):
                            k = _SDATA if seq - self._lo < _CAP and self._has(seq) else _DATA
                            end += self._put(out, k, 0, seq, f.read(n))
        os.rename(self._tmp, self._log)
        self._end = end
        self._n = self._depth
        self._ps = 0
        self._po = _START
        if self._counter()[0] < self._next:
            self._save()
