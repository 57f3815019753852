"""A firmware update received over MQTT: manifest and chunks verified, staged on flash, resumed.

Loaded only when the host sends an `ota` message (docs/ota.md, "The transfer"). Every message
is signed with HMAC-SHA256 under the kiosk's own `ota_key`; the ESP32's MicroPython has no
hmac module, so the MAC is built here on hashlib.sha256. The files go into the slot that is
not running (fwslot.Slots.staging), one chunk at a time, appended in order; a file's size on
flash says how far it got, so a power cut or a lost connection costs at most the chunk being
written. A release of kind `romfs` is one file, a ROMFS image: once it verifies, it is written
into the ROMFS partition the kiosk does not run from (rompart.RomParts) and read back, so that
its code runs in place from flash. Nothing here touches the running slot, the running
partition or the pointer: the link switches once the update is staged and the kiosk is idle.
"""

import binascii
import hashlib
import json
import os

from micropython import const

import wire

_BLOCK = const(64)  # SHA-256's block, for the HMAC's key pads
_SLICE = const(512)  # bytes of a file read at a time, to hash or to copy it
_MARGIN = const(8192)  # flash kept free beyond the update's files
_REASON_MAX = const(160)
_MAX_FILES = const(48)
_MAX_SIZE = const(200000)
_MANIFEST = "/manifest.json"
IMAGE = "firmware.romfs"  # the one file of a romfs release
_EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

RECEIVING = "receiving"
STAGED = "staged"
REFUSED = "refused"


class Mac:
    """HMAC-SHA256 (RFC 2104) over hashlib.sha256, fed piece by piece."""

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key + bytes(_BLOCK - len(key))
        self._outer = bytes([b ^ 0x5C for b in key])
        self._inner = hashlib.sha256(bytes([b ^ 0x36 for b in key]))

    def update(self, data) -> None:
        self._inner.update(data)

    def hexdigest(self) -> str:
        h = hashlib.sha256(self._outer)
        h.update(self._inner.digest())
        return _hex(h.digest())


def _hex(digest: bytes) -> str:
    return binascii.hexlify(digest).decode()


def same(a: str, b: str) -> bool:
    """Two MACs in hex compared in constant time: how much matched leaks nothing."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= ord(a[i]) ^ ord(b[i])
    return diff == 0


def _chars(s, lo: int, hi: int, ok) -> bool:
    return isinstance(s, str) and lo <= len(s) <= hi and all(ok(c) for c in s)


def is_id(s) -> bool:
    return _chars(s, 1, 32, lambda c: "a" <= c <= "z" or "0" <= c <= "9" or c == "-")


def is_version(s) -> bool:
    """1 to 40 printable ASCII characters but space, quote and backslash."""
    return _chars(s, 1, 40, lambda c: "!" <= c <= "~" and c != '"' and c != "\\")


def _is_hex64(s) -> bool:
    return _chars(s, 64, 64, lambda c: "0" <= c <= "9" or "a" <= c <= "f")


def _is_path(p, kind: str) -> bool:
    """A module's name, no folder: [A-Za-z0-9_]{1,24} and the kind's suffix."""
    if not isinstance(p, str) or not p.endswith("." + kind):
        return False
    stem = p[: -len(kind) - 1]
    return _chars(
        stem, 1, 24, lambda c: "a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c == "_"
    )


def _int(x, lo: int, hi: int) -> bool:
    return type(x) is int and lo <= x <= hi  # bool is no int here


def _size(path: str) -> int:
    """The file's size on flash, or -1 when there is none."""
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass  # already gone


def digest(path: str) -> str:
    """The sha256 of a file in hex, read a slice at a time."""
    h = hashlib.sha256()
    buf = bytearray(_SLICE)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return _hex(h.digest())


def _cut(path: str, length: int) -> None:
    """Keep the first `length` bytes of a file: copied beside it, then renamed over it, so a
    power cut leaves the file as it was or cut, never shorter (MicroPython files have no
    truncate)."""
    tmp = path + ".cut"
    buf = bytearray(_SLICE)
    view = memoryview(buf)
    left = length
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        while left > 0:
            n = src.readinto(buf)
            if not n:
                break
            n = min(n, left)
            dst.write(view[:n])
            left -= n
    os.rename(tmp, path)


def _load(path: str):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _problem(m, takes: str):
    """What is wrong with a manifest's fields, or None."""
    if m.get("v") != 1 or type(m.get("v")) is not int:
        return "manifest: v must be 1"
    if not is_version(m.get("version")):
        return "manifest: version must be 1 to 40 printable characters, no space or quote"
    kind = m.get("kind")
    if kind != "mpy" and kind != "py" and kind != "romfs":
        return "manifest: kind must be mpy, py or romfs"
    if kind != takes:
        return "manifest: kind " + kind + ", this kiosk takes " + takes
    if not _int(m.get("chunk"), 256, 4096):
        return "manifest: chunk must be 256 to 4096 bytes"
    files = m.get("files")
    if not isinstance(files, list) or not 1 <= len(files) <= _MAX_FILES:
        return "manifest: files must be a list of 1 to %d" % _MAX_FILES
    if kind == "romfs" and (
        len(files) != 1 or not isinstance(files[0], dict) or files[0].get("path") != IMAGE
    ):
        return "manifest: a romfs release is one file, " + IMAGE
    seen = []
    for i in range(len(files)):
        f = files[i]
        where = "manifest: files[%d]: " % i
        if not isinstance(f, dict):
            return where + "not an object"
        if not _is_path(f.get("path"), kind):
            return where + "path must be a module name ending ." + kind
        if f["path"] in seen:
            return where + "named twice"
        seen.append(f["path"])
        if not _int(f.get("size"), 0, _MAX_SIZE):
            return where + "size must be 0 to %d" % _MAX_SIZE
        if not _is_hex64(f.get("sha256")):
            return where + "sha256 must be 64 lowercase hex"
        if f["size"] == 0 and f["sha256"] != _EMPTY_SHA:
            return where + "sha256 is not that of an empty file"
    if not _is_hex64(m.get("mac")):
        return "manifest: mac must be 64 lowercase hex"
    return None


class Receiver:
    """One kiosk's side of the transfer. `on_message` takes each `ota` payload and says
    whether the status is due; `state()` is the status's `ota` member; `ready()` is true once
    the update is staged, for the link to switch to it when the kiosk is idle."""

    def __init__(self, slots, ident: dict, takes: str = "mpy", log=None, rom=None) -> None:
        """`slots`: a fwslot.Slots, or None where the kiosk takes no update; `ident`: store,
        device and ota_key (hex); `log(text)`: a line for the kiosk's log ring; `rom`: the
        board's ROMFS partitions (rompart.RomParts), where the kiosk takes `romfs`."""
        self.slots = slots
        self.rom = rom
        self.part = None  # the ROMFS partition a staged romfs release was written into
        self.ident = ident
        self.takes = takes
        self.log = log
        self.rid = ""  # the manifest being received (or last refused)
        self.version = ""
        self.mac = None
        self.st = None  # RECEIVING, STAGED, REFUSED, or None before any manifest
        self.want = None  # (file, n): the chunk asked for
        self.reason = None
        self.chunk = 0
        self.files = []  # (path, size, sha256) of each file, in the manifest's order
        self.folder = ""  # the staging slot
        self.key = b""
        self.redone = -1  # the file fetched again once after a sha256 mismatch

    # -- what the link asks ---------------------------------------------------------------

    def state(self):
        """The status's `ota` member (a JSON object's text), or None before any manifest."""
        if self.st is None:
            return None
        return wire.ota_state(
            self.rid, self.version, self.st, self.want, self.reason, self._progress()
        )

    def _progress(self):
        """(chunks written and checked, chunks in all), or None without a manifest's files."""
        c = self.chunk
        if not self.files or not c:
            return None
        done = total = 0
        w = self.want
        for i in range(len(self.files)):
            n = -(-self.files[i][1] // c)
            total += n
            if (w is None and self.st == STAGED) or (w is not None and i < w[0]):
                done += n
        if w is not None:
            done += w[1]
        return done, total

    def ready(self) -> bool:
        return self.st == STAGED

    def on_message(self, payload) -> bool:
        """Act on one message of the `ota` topic; True when the status is due."""
        try:
            m = json.loads(payload)
            op = m["op"]
        except (ValueError, KeyError, TypeError):
            self._say("ota: not an ota message")
            return False
        try:
            if op == "manifest":
                return self._manifest(m, payload)
            if op == "chunk":
                return self._chunk(m)
        except OSError as e:
            # A write that failed (the flash full after all, worn out): the staging keeps
            # what it had, and a manifest sent again resumes from there.
            return self._refuse("flash: OSError: " + str(e), self.want)
        return False

    # -- the manifest ---------------------------------------------------------------------

    def _manifest(self, m, payload) -> bool:
        rid = m.get("id")
        if not is_id(rid):
            self._say("ota: a manifest without a valid id, ignored")
            return False
        version = m.get("version")
        if (
            self.st is not None
            and self.st != REFUSED
            and rid == self.rid
            and version == self.version
            and m.get("mac") == self.mac
        ):
            return True  # sent again: the status says again what is wanted
        self.rid = rid
        self.version = version if is_version(version) else "?"
        self.mac = None
        self.want = None
        self.files = []
        if self.slots is None:
            return self._refuse("no OTA on this kiosk")
        key = self.ident.get("ota_key")
        if not _is_hex64(key):
            return self._refuse("no OTA key: provision and deploy again")
        why = _problem(m, self.takes)
        if why is not None:
            return self._refuse(why)
        self.key = binascii.unhexlify(self.ident["ota_key"])
        i = self.ident
        h = Mac(self.key)
        h.update(b"kiosk-ota-manifest\n")
        head = (i["store"], i["device"], rid, version, m["kind"], m["chunk"])
        h.update(("%s\n%s\n%s\n%s\n%s\n%d\n" % head).encode())
        files = m["files"]
        for f in files:
            h.update(("%s %d %s\n" % (f["path"], f["size"], f["sha256"])).encode())
        if not same(h.hexdigest(), m["mac"]):
            return self._refuse("manifest: bad signature")
        if self.slots.trying():
            # The staging slot holds the version to go back to until this one is confirmed.
            return self._refuse("manifest: the running version is still on trial")
        self.folder = self.slots.staging()
        self.chunk = m["chunk"]
        self.files = [(f["path"], f["size"], f["sha256"]) for f in files]
        self.redone = -1
        old = _load(self.folder + _MANIFEST)
        if (
            isinstance(old, dict)
            and old.get("id") == rid
            and old.get("version") == version
            and old.get("mac") == m["mac"]
        ):
            self._say("ota: resuming " + rid)
        else:
            why = self._room()
            if why is not None:
                self.files = []
                return self._refuse(why)
            self._empty()
            self.part = None
            with open(self.folder + _MANIFEST, "wb") as f:
                f.write(payload)
            self._say("ota: receiving " + rid + ", version " + version)
        self.mac = m["mac"]
        self.reason = None
        self._seek(0)
        return True

    def _room(self):
        """Why the update does not fit on the flash, or None. What the staging slot holds
        now counts as free: it is emptied first."""
        need = _MARGIN
        for f in self.files:
            need += f[1]
        st = os.statvfs(self.folder)
        free = st[1] * st[4]
        for name in os.listdir(self.folder):
            free += max(0, _size(self.folder + "/" + name))
        if need > free:
            return "flash: need %d KB, %d KB free" % ((need + 1023) // 1024, free // 1024)
        if self.takes == "romfs":
            n = self.bank()
            room = self.rom.size(n)
            if self.files[0][1] > room:
                kb = (self.files[0][1] + 1023) // 1024
                return "flash: the image is %d KB, ROMFS partition %d holds %d KB" % (
                    kb,
                    n,
                    room // 1024,
                )
        return None

    def bank(self) -> int:
        """The ROMFS partition a romfs release goes into: of 1 and 2, the one not running.
        Partition 0 is never written: the loader's own modules run from it."""
        return 2 if self.slots.rom() == 1 else 1

    def _install(self):
        """The staged image written into the partition not running and read back, unless it
        holds it already (a resume); why that failed, or None."""
        n = self.bank()
        path, size, sha = self.files[0]
        if _hex(hashlib.sha256(self.rom.view(n)[:size]).digest()) != sha:
            self._say("ota: writing ROMFS partition %d" % n)
            self.rom.write(n, self.folder + "/" + path, size)
            if _hex(hashlib.sha256(self.rom.view(n)[:size]).digest()) != sha:
                return "romfs: partition %d does not read back as written" % n
        self.part = n
        return None

    def _empty(self) -> None:
        # The manifest first: a slot half emptied no longer looks like a whole update.
        _remove(self.folder + _MANIFEST)
        for name in os.listdir(self.folder):
            _remove(self.folder + "/" + name)

    def _seek(self, start: int) -> None:
        """Ask for the first chunk missing from file `start` on, or stage when none is: each
        file's size on flash says how far it got; a file complete by its size is checked."""
        for i in range(start, len(self.files)):
            path, size, sha = self.files[i]
            full = self.folder + "/" + path
            have = _size(full)
            if have > size:
                _remove(full)
                have = -1
            if have < 0 and size == 0:
                open(full, "wb").close()
                have = 0
            if have == size:
                if digest(full) == sha:
                    continue
                if not self._mismatch(i):
                    return
                have = 0
            whole = max(have, 0) // self.chunk
            if have > whole * self.chunk:
                _cut(full, whole * self.chunk)  # a chunk torn by a power cut
            self.want = (i, whole)
            self.st = RECEIVING
            return
        self.want = None
        if self.takes == "romfs":
            why = self._install()
            if why is not None:
                self._refuse(why)
                return
        self.st = STAGED
        self._say("ota: staged " + self.rid + ", version " + self.version)

    def _mismatch(self, i: int) -> bool:
        """A file complete by its size whose sha256 is not the manifest's (torn by a power
        cut into erased bytes): removed and fetched again, once; True if so."""
        path = self.files[i][0]
        _remove(self.folder + "/" + path)
        if self.redone == i:
            self._refuse(path + ": sha256 does not match the manifest")
            return False
        self.redone = i
        self._say("ota: " + path + ": sha256 does not match, fetched again")
        return True

    # -- the chunks -----------------------------------------------------------------------

    def _chunk(self, m) -> bool:
        want = self.want
        if want is None or m.get("id") != self.rid or self.mac is None:
            return False  # not the update being received: a late duplicate
        f, n = want
        if not _int(m.get("file"), f, f) or not _int(m.get("n"), n, n):
            return False  # not the chunk asked for: a late duplicate
        where = "chunk %d/%d: " % (f, n)
        data = m.get("data")
        mac = m.get("mac")
        if not isinstance(data, str) or not _is_hex64(mac):
            return self._refuse(where + "malformed", want)
        try:
            raw = binascii.a2b_base64(data.encode())  # bytes: not every port takes a str
        except ValueError:
            return self._refuse(where + "data is not base64", want)
        h = Mac(self.key)
        h.update(("kiosk-ota-chunk\n%s\n%d\n%d\n" % (self.rid, f, n)).encode())
        h.update(raw)
        if not same(h.hexdigest(), mac):
            return self._refuse(where + "bad signature", want)
        path, size, sha = self.files[f]
        c = self.chunk
        if len(raw) != min(c, size - n * c):
            return self._refuse(where + "%d bytes, not as the manifest says" % len(raw), want)
        full = self.folder + "/" + path
        have = max(_size(full), 0)
        if have > n * c:
            _cut(full, n * c)  # what an earlier failed write left
        elif have < n * c:
            self._seek(f)  # the file is not where the kiosk thought: ask again
            return True
        with open(full, "ab") as out:
            out.write(raw)
        self.st = RECEIVING
        self.reason = None
        if (n + 1) * c < size:
            self.want = (f, n + 1)
        elif digest(full) == sha:
            self._seek(f + 1)
        elif self._mismatch(f):
            self.want = (f, 0)
        return True

    # -- the outcome ----------------------------------------------------------------------

    def _refuse(self, why: str, want=None) -> bool:
        """Refused, with the reason: `want` stays the chunk asked for after a chunk that
        did not verify, so a genuine resend still completes."""
        self.st = REFUSED
        self.reason = why[:_REASON_MAX]
        self.want = want
        if want is None:
            self.mac = None  # nothing more is taken until a manifest verifies
        self._say("ota: refused: " + why)
        return True

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)
