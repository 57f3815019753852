"""Prints one line: the size of the kiosk's ROMFS partition 0 (-1 when it has none) and the
sha256 of its first n bytes (None when they do not fit)."""

import binascii
import hashlib
import json


def romfs(mark: str, n: int) -> None:
    size = -1
    digest = None
    # Ports built without ROMFS have no rom_ioctl (before 1.23, no vfs); a port with it may
    # have no partitions.
    try:
        import vfs

        ioctl = getattr(vfs, "rom_ioctl", None)
    except ImportError:
        ioctl = None
    if ioctl is not None and ioctl(1) > 0:
        dev = ioctl(2, 0)
        if not isinstance(dev, int):
            m = memoryview(dev)
            size = len(m)
            if n <= size:
                d = hashlib.sha256()
                # Small slices: the partition is mapped memory, and the heap stays small.
                for i in range(0, n, 256):
                    d.update(m[i : min(i + 256, n)])
                digest = binascii.hexlify(d.digest()).decode()
    print(mark + json.dumps({"size": size, "sha256": digest}))
