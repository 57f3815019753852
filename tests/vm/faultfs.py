"""An in-memory flash for the MicroPython VM that can lose power at any byte.

Mount it with `vfs.mount(FaultFS(), "/flash")`. Every byte written and every change to the
directory tree (creating or truncating a file, rename, remove, mkdir) is one *step*.
`cut_after(n)` lets `n` more steps happen: the write that crosses the limit stores only the
bytes up to the cut and raises PowerCut, and from then on every operation raises PowerCut
until `power_on()`, which keeps the contents exactly as they were at the cut. Writes land at
once (no cache that a cut could lose), so a torn write leaves a prefix of its bytes;
`cut_after(n, fill)` instead leaves the rest of the torn write as `fill` bytes (0xFF: erased
flash; or junk), as a file system that grows the file before its data lands would. Rename is
atomic, as on littlefs.

This file runs on MicroPython (it is loaded into the VM as /lib/faultfs.py).
"""

import errno

_DIR = 0x4000
_FILE = 0x8000


class PowerCut(Exception):
    """The power went off; not an OSError, so code under test cannot mistake it for one."""


def _err(code):
    return OSError(code)


class _File:
    def __init__(self, fs, data, append, writable):
        self._fs = fs
        self._data = data
        self._pos = len(data) if append else 0
        self._append = append
        self._writable = writable
        self._closed = False

    def _check(self):
        self._fs._alive()
        if self._closed:
            raise _err(errno.EBADF)

    def read(self, n=-1):
        self._check()
        end = len(self._data) if n is None or n < 0 else min(len(self._data), self._pos + n)
        out = bytes(self._data[self._pos : end])
        self._pos = max(self._pos, end)
        return out

    def readinto(self, buf):
        self._check()
        chunk = self._data[self._pos : self._pos + len(buf)]
        buf[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def write(self, buf):
        self._check()
        if not self._writable:
            raise _err(errno.EBADF)
        if self._append:
            self._pos = len(self._data)
        n = len(buf)
        allowed = self._fs._spend(n)
        part = bytes(buf[:allowed])
        if allowed < n and self._fs._fill is not None:
            part += bytes((self._fs._fill,)) * (n - allowed)
            allowed = n
        if self._pos > len(self._data):
            self._data.extend(bytes(self._pos - len(self._data)))
        self._data[self._pos : self._pos + allowed] = part
        self._pos += allowed
        if self._fs._off:
            raise PowerCut()
        return n

    def seek(self, offset, whence=0):
        self._check()
        base = (0, self._pos, len(self._data))[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self):
        self._check()
        return self._pos

    def flush(self):
        self._check()

    def close(self):
        # Closing after the power went off must still fail: nothing runs without power.
        self._fs._alive()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FaultFS:
    """A flat dict of paths to bytearrays, plus a set of directories."""

    def __init__(self):
        self.files = {}
        self.dirs = {"/"}
        self.steps = 0  # steps taken since creation: measures how many an operation takes
        self._budget = None
        self._fill = None
        self._off = False
        self._cwd = "/"

    # Fault control.

    def cut_after(self, n, fill=None):
        """Lose power after `n` more steps; None disarms."""
        self._budget = n
        self._fill = fill

    def power_on(self):
        self._off = False
        self._budget = None

    def is_off(self):
        return self._off

    def snapshot(self):
        return ({p: bytes(d) for p, d in self.files.items()}, set(self.dirs))

    def restore(self, snap):
        self.files = {p: bytearray(d) for p, d in snap[0].items()}
        self.dirs = set(snap[1])
        self._off = False
        self._budget = None

    def _alive(self):
        if self._off:
            raise PowerCut()

    def _spend(self, n):
        """Take up to n steps; returns how many happened before the power went off."""
        self._alive()
        if self._budget is not None and self._budget < n:
            n = self._budget
            self._budget = 0
            self._off = True
        elif self._budget is not None:
            self._budget -= n
        self.steps += n
        return n

    def _step(self):
        if self._spend(1) == 0:
            raise PowerCut()

    def _parent_exists(self, path):
        parent = path[: path.rfind("/")] or "/"
        return parent in self.dirs

    # The VFS protocol.

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def open(self, path, mode):
        self._alive()
        if "r" in mode and "+" not in mode:
            if path not in self.files:
                raise _err(errno.ENOENT)
            return _File(self, self.files[path], False, False)
        if not self._parent_exists(path) or path in self.dirs:
            raise _err(errno.ENOENT)
        if "w" in mode or path not in self.files:
            if "r" in mode and path not in self.files:
                raise _err(errno.ENOENT)
            self._step()
            self.files[path] = bytearray()
        return _File(self, self.files[path], "a" in mode, True)

    def stat(self, path):
        self._alive()
        if path in self.dirs or path == "":
            return (_DIR, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        if path in self.files:
            return (_FILE, 0, 0, 0, 0, 0, len(self.files[path]), 0, 0, 0)
        raise _err(errno.ENOENT)

    def ilistdir(self, path):
        self._alive()
        if path not in self.dirs:
            raise _err(errno.ENOENT)
        prefix = path.rstrip("/") + "/"
        out = []
        for d in self.dirs:
            if d != "/" and d.startswith(prefix) and "/" not in d[len(prefix) :]:
                out.append((d[len(prefix) :], _DIR, 0, 0))
        for f, data in self.files.items():
            if f.startswith(prefix) and "/" not in f[len(prefix) :]:
                out.append((f[len(prefix) :], _FILE, 0, len(data)))
        return iter(out)

    def mkdir(self, path):
        self._alive()
        if path in self.dirs or path in self.files:
            raise _err(errno.EEXIST)
        if not self._parent_exists(path):
            raise _err(errno.ENOENT)
        self._step()
        self.dirs.add(path)

    def rmdir(self, path):
        self._alive()
        if path not in self.dirs:
            raise _err(errno.ENOENT)
        if list(self.ilistdir(path)):
            raise _err(errno.EACCES)  # not empty; MicroPython's errno has no ENOTEMPTY
        self._step()
        self.dirs.discard(path)

    def remove(self, path):
        self._alive()
        if path not in self.files:
            raise _err(errno.ENOENT)
        self._step()
        del self.files[path]

    def rename(self, old, new):
        self._alive()
        if old not in self.files or new in self.dirs or not self._parent_exists(new):
            raise _err(errno.ENOENT)
        self._step()
        self.files[new] = self.files.pop(old)

    def chdir(self, path):
        self._alive()
        if path not in self.dirs:
            raise _err(errno.ENOENT)
        self._cwd = path

    def getcwd(self):
        return self._cwd

    def statvfs(self, path):
        used = sum(len(d) for d in self.files.values())
        return (4096, 4096, 512, 512 - used // 4096, 512 - used // 4096, 0, 0, 0, 0, 255)
