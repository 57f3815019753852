"""The board's ROMFS partitions: how many, an image written into one and read back, one mounted.

A release received over the air as a ROMFS image goes into a partition the kiosk does not run
from, so that its code runs in place from flash, as the deployed firmware's does, instead of
being loaded into the heap (docs/ota.md, "Releases in ROMFS"). Everything goes through
`vfs.rom_ioctl`, the calls `mpremote romfs deploy` makes: 1 the number of partitions, 2 one's
memory, 3 erase ahead of a write, 4 write, 5 the write done, 6 the erase block. The `vfs`
module is handed in, so that the VM's tests hand in partitions of their own (MicroPython's
WebAssembly port cannot write its one partition).
"""

from micropython import const

_SLICE = const(512)  # bytes copied at a time from the staged image into the partition
_PREPARE = const(32768)  # bytes erased per call where the erase block is smaller than the partition
PARTITIONS = const(3)  # 0 runs the deployed firmware; 1 and 2 take releases in turn


class RomParts:
    """ROMFS partitions through `vfs` (MicroPython's module, or one with the same calls)."""

    def __init__(self, vfs) -> None:
        self.vfs = vfs

    def count(self) -> int:
        """How many partitions there are (0 where ROMFS is not built in, or `vfs` is None)."""
        try:
            n = self.vfs.rom_ioctl(1)
        except (AttributeError, OSError):
            return 0
        return n if n > 0 else 0

    def view(self, n: int):
        """Partition `n`'s memory, read in place."""
        dev = self.vfs.rom_ioctl(2, n)
        if isinstance(dev, int):
            raise OSError(-dev)
        return memoryview(dev)

    def size(self, n: int) -> int:
        return len(self.view(n))

    def _call(self, *args) -> int:
        r = self.vfs.rom_ioctl(*args)
        if r < 0:
            raise OSError(-r)
        return r

    def write(self, n: int, path: str, length: int) -> None:
        """Erase partition `n` and copy the first `length` bytes of the file at `path` into it,
        the last write padded with zeros to the partition's least write (as mpremote does)."""
        size = self.size(n)
        block = self.vfs.rom_ioctl(6, n)
        if block <= 0:
            block = size
        least = 1
        if block < size:
            # Erased in pieces: one call erasing the whole image can outlast a watchdog.
            off = 0
            while off < length:
                piece = (min(length - off, _PREPARE) + block - 1) // block * block
                least = max(least, self._call(3, n, off, piece))
                off += piece
        else:
            least = max(least, self._call(3, n, length))
        step = (_SLICE + least - 1) // least * least
        buf = bytearray(step)
        off = 0
        with open(path, "rb") as f:
            while off < length:
                got = f.readinto(buf)
                if not got:
                    raise OSError(5)  # the file is shorter than said
                got = min(got, length - off)
                for i in range(got, step):
                    buf[i] = 0  # the last write only
                self._call(4, n, off, buf)
                off += got
        self._call(5, n)

    def mount(self, n: int, path: str) -> None:
        """Mount partition `n` at `path`, read-only: its modules then import in place."""
        self.vfs.mount(self.vfs.VfsRom(self.view(n)), path)
