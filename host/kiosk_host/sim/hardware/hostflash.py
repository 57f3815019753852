"""Simulated flash for the serial kiosk: a MicroPython VFS whose files live in a host folder.

Written for the serial kiosk's bridge (`serial_kiosk.mjs`), which registers the `kioskhost`
module: its file calls work on that folder and answer MicroPython's errno values (ENOENT is
2 here, not the WebAssembly port's 44), so that mpremote reads the errors it expects. The
folder has the flash partition's size; a write past it fails with ENOSPC, as on littlefs.
Mount it with `vfs.mount(HostFlash(), "/")`.
"""

import binascii
import io

import kioskhost  # pyright: ignore[reportMissingImports] - registered by the bridge

_DIR = 0x4000
_FILE = 0x8000
_EBADF = 9


def _num(r) -> int:
    """A host call's number, or the OSError it stands for (a negative number is -errno)."""
    if r < 0:
        raise OSError(-r)
    return r


def _text(r) -> str:
    """A host call's text, or the OSError it stands for (a number: -errno)."""
    if isinstance(r, int):
        raise OSError(-r)
    return r


class _File(io.IOBase):
    """An open file: reads and writes go to the host file at once, at the file's position."""

    def __init__(self, handle: int, text: bool) -> None:
        self._h = handle
        self._text = text

    def _handle(self) -> int:
        if self._h < 0:
            raise OSError(_EBADF)
        return self._h

    def read(self, n: int = -1):
        data = binascii.unhexlify(_text(kioskhost.fread(self._handle(), -1 if n is None else n)))
        return data.decode() if self._text else data

    def readinto(self, buf) -> int:
        data = binascii.unhexlify(_text(kioskhost.fread(self._handle(), len(buf))))
        buf[: len(data)] = data
        return len(data)

    def readline(self, limit: int = -1):
        data = binascii.unhexlify(_text(kioskhost.freadline(self._handle(), limit)))
        return data.decode() if self._text else data

    def write(self, buf) -> int:
        if isinstance(buf, str):
            buf = buf.encode()
        return _num(kioskhost.fwrite(self._handle(), binascii.hexlify(buf).decode()))

    def seek(self, offset: int, whence: int = 0) -> int:
        return _num(kioskhost.fseek(self._handle(), offset, whence))

    def tell(self) -> int:
        return self.seek(0, 1)

    def flush(self) -> None:
        self._handle()

    def close(self) -> None:
        if self._h >= 0:
            kioskhost.fclose(self._h)
            self._h = -1

    def ioctl(self, op: int, arg) -> int:
        if op == 4:  # MP_STREAM_CLOSE
            self.close()
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class HostFlash:
    """The VFS protocol over the bridge's folder; paths are resolved against its own cwd."""

    def __init__(self) -> None:
        self._cwd = "/"

    def _abs(self, path: str) -> str:
        if path.startswith("/"):
            return path
        return self._cwd.rstrip("/") + "/" + path

    def mount(self, readonly, mkfs) -> None:
        pass

    def umount(self) -> None:
        pass

    def open(self, path: str, mode: str):
        return _File(_num(kioskhost.fopen(self._abs(path), mode)), "b" not in mode)

    def stat(self, path: str) -> tuple:
        mode, size, mtime = _text(kioskhost.stat(self._abs(path))).split()
        kind = _DIR if mode == "d" else _FILE
        t = int(mtime)
        return (kind, 0, 0, 0, 0, 0, int(size), t, t, t)

    def ilistdir(self, path: str):
        listing = _text(kioskhost.listdir(self._abs(path)))
        out = []
        for line in listing.split("\n") if listing else ():
            mode, size, name = line.split(" ", 2)
            out.append((name, _DIR if mode == "d" else _FILE, 0, int(size)))
        return iter(out)

    def mkdir(self, path: str) -> None:
        _num(kioskhost.mkdir(self._abs(path)))

    def rmdir(self, path: str) -> None:
        _num(kioskhost.rmdir(self._abs(path)))

    def remove(self, path: str) -> None:
        _num(kioskhost.remove(self._abs(path)))

    def rename(self, old: str, new: str) -> None:
        _num(kioskhost.rename(self._abs(old), self._abs(new)))

    def chdir(self, path: str) -> None:
        p = self._abs(path)
        if self.stat(p)[0] != _DIR:
            raise OSError(20)  # ENOTDIR
        self._cwd = p

    def getcwd(self) -> str:
        return self._cwd

    def statvfs(self, path: str) -> tuple:
        bsize, blocks, free = (int(x) for x in _text(kioskhost.statvfs()).split())
        return (bsize, bsize, blocks, free, free, 0, 0, 0, 0, 255)
