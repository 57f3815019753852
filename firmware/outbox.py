"""The outbox: every captured event, on flash, until the broker has acknowledged it.

One log file holds checksummed records, appended one at a time:

    header (12 bytes, little-endian): kind u8, drops u8, length u16, seq u32, crc32 u32
    then `length` payload bytes; the crc covers the first 8 header bytes and the payload.

The log opens with a HEAD record: seq = the oldest unacked seq, payload = the dropped count
and the next seq (u32 each), which a compaction that leaves out acked records must keep.
DATA records carry events in strictly increasing seq; `drops` says how many of the oldest
unacked records this append pushed out, so dropping and appending are one atomic write. ACK
records carry an acked seq. Replaying the log rebuilds the state; it stops at the first
record that is short or fails its crc: a write torn by a power cut, never acknowledged.

Compaction writes the live records to `log.new` and renames it over `log`; littlefs renames
atomically, so a power cut leaves either log intact, and a leftover `log.new` is removed on
open. A DATA record whose seq jumps means the seqs in between were acked and compacted away.

RAM: a few integers, the 12-byte header buffer, and a 32-byte ring of "gone" bits for the
seqs [lo, lo + 256) (lo is the oldest unacked seq); the records themselves stay on flash.
"""

import binascii
import os
import struct

from micropython import const

_HDR = const(12)
_START = const(20)  # the HEAD record: header and its 8-byte payload
_HEAD = const(0x4F)
_DATA = const(0x44)
_ACK = const(0x41)
_CAP = const(256)  # seqs from lo on whose acks are remembered: far beyond any send window
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
        self._max = max(1, max_records)
        self._h = bytearray(_HDR)
        self._hm = memoryview(self._h)[:8]
        try:
            os.mkdir(directory)
        except OSError:
            pass  # already there
        self._load()

    def next_seq(self) -> int:
        """The seq the next append() must use; never repeats one that was acknowledged."""
        return self._next

    def depth(self) -> int:
        """Records appended and not yet acked."""
        return self._depth

    def dropped(self) -> int:
        """Records dropped because the outbox was full, since it was created."""
        return self._dropped

    def append(self, seq: int, payload: bytes) -> None:
        """Store `payload` as event `seq`; durable when this returns."""
        if self._torn:
            self._load()
        if seq != self._next or not 0 < len(payload) <= _MAX_PAYLOAD:
            raise ValueError
        drops = min(255, max(0, self._depth - self._max + 1))
        self._write(_DATA, drops, seq, payload)
        # Compacting delays "Thank you", so the press path leaves it to ack() unless the log
        # keeps growing with nothing acked (offline and full).
        if self._n - self._depth >= 2 * self._max:
            self._compact()

    def peek(self, after_seq: int = 0):
        """The oldest unacked record with seq > after_seq as (seq, payload), or None."""
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
                if kind == _DATA:
                    self._ps = seq
                    self._po = off
                    if seq > after_seq and self._live(seq):
                        return seq, f.read(n)
                off += _HDR + n
        return None

    def ack(self, seq: int) -> None:
        """The broker acknowledged `seq`; unknown or repeated acks are ignored."""
        if self._torn:
            self._load()
        if self._ackable(seq):
            self._write(_ACK, 0, seq, b"")
            if not self._depth or self._n - self._depth >= self._max:
                self._compact()

    # The gone bits: set for seqs in [lo, lo + _CAP) that are acked, dropped or compacted away.

    def _gone(self, s):
        return self._bm[(s >> 3) & _MASK] & (1 << (s & 7))

    def _mark(self, s):
        self._bm[(s >> 3) & _MASK] |= 1 << (s & 7)

    def _live(self, s):
        return s >= self._lo and (s - self._lo >= _CAP or not self._gone(s))

    def _ackable(self, s):
        # An ack beyond the ring is forgotten: the record is sent again later, never lost.
        return self._lo <= s < self._next and s - self._lo < _CAP and not self._gone(s)

    def _apply(self, kind, drops, seq):
        """One record's effect, the same when written and when replayed."""
        self._n += 1
        if kind == _DATA:
            for _ in range(drops):
                self._mark(self._lo)  # lo is always the oldest unacked record
                self._depth -= 1
                self._dropped += 1
                self._advance()
            self._skip(seq)
            self._next = seq + 1
            self._depth += 1
        elif self._ackable(seq):
            self._mark(seq)
            self._depth -= 1
        self._advance()

    def _skip(self, seq):
        # Seqs before `seq` that a compaction left out: acked, so gone.
        while self._next < seq:
            self._mark(self._next)
            self._next += 1

    def _advance(self):
        while self._lo < self._next and self._gone(self._lo):
            self._bm[(self._lo >> 3) & _MASK] &= ~(1 << (self._lo & 7))
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
        self._lo = self._next = 1
        self._depth = self._dropped = self._n = self._ps = self._end = 0
        self._po = _START
        self._bm = bytearray(_CAP >> 3)
        try:
            size = os.stat(self._log)[6]
        except OSError:
            size = 0  # a fresh outbox
        if size:
            with open(self._log, "rb") as f:
                r = self._read(f)
                if r and r[0] == _HEAD and len(r[3]) == 8:
                    self._lo = self._next = r[2]
                    self._dropped, top = struct.unpack("<II", r[3])
                    self._end = _START
                    r = self._read(f)
                    while r and (r[0] == _ACK or (r[0] == _DATA and r[2] >= self._next)):
                        self._apply(r[0], r[1], r[2])
                        self._end += _HDR + len(r[3])
                        r = self._read(f)
                    self._skip(top)
                    self._advance()
        if self._end < _START or self._end < size:
            self._compact()  # a new log, or one that ends in a torn record
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
                        if kind == _DATA and self._live(seq):
                            end += self._put(out, _DATA, 0, seq, f.read(n))
        os.rename(self._tmp, self._log)
        self._end = end
        self._n = self._depth
        self._ps = 0
        self._po = _START
