"""ROMFS partitions for the MicroPython VM, written as NOR flash is and cut by the same power.

A stand-in for the `vfs` module as firmware/rompart.py uses it: `rom_ioctl` (1 how many, 2 a
partition's memory, 3 erase ahead of a write, 4 write, 5 the write done, 6 the erase block),
and the real `VfsRom` and `mount`, so that a partition written here mounts and its modules
import. MicroPython's WebAssembly port has one read-only partition, so the tests hand the
firmware these instead. An erase sets whole blocks to 0xFF; a write can only clear bits, as
NOR flash, so a write over bytes not erased leaves a mix. Each erased block and each byte
written is a step of the fault-injecting flash given (tests/vm/faultfs.py): a power cut there
stops an erase between blocks and a write at a byte, and raises PowerCut.

This file runs on MicroPython (it is loaded into the VM as /lib/romsim.py).
"""

import vfs as _vfs
from faultfs import PowerCut

EINVAL = 22


class RomSim:
    """`count` partitions of `size` bytes, erased, the images given written from the first."""

    BLOCK = 4096
    LEAST = 4  # the least write, in bytes

    def __init__(self, fs, images=(), size=65536, count=3):
        self.fs = fs
        self.parts = [bytearray(b"\xff" * size) for _ in range(count)]
        for i in range(len(images)):
            self.parts[i][: len(images[i])] = images[i]
        self.VfsRom = _vfs.VfsRom
        self.mount = _vfs.mount
        self.umount = _vfs.umount
        self.writes = 0  # partition writes (ioctl 4) made, to tell a resume from a rewrite
        self.erased_at = None  # the flash's step count at the last erase, to aim a cut at it

    def snapshot(self):
        return [bytes(p) for p in self.parts]

    def restore(self, snap):
        for i in range(len(snap)):
            self.parts[i][:] = snap[i]

    def rom_ioctl(self, op, n=0, *args):
        if op == 1:
            return len(self.parts)
        if not 0 <= n < len(self.parts):
            return -EINVAL
        p = self.parts[n]
        if op == 2:
            return memoryview(p)
        if op == 6:
            return self.BLOCK
        if op == 3:
            off, length = (0, args[0]) if len(args) == 1 else args
            if off % self.BLOCK or length <= 0 or off + length > len(p):
                return -EINVAL
            end = min(len(p), (off + length + self.BLOCK - 1) // self.BLOCK * self.BLOCK)
            self.erased_at = self.fs.steps
            for b in range(off, end, self.BLOCK):
                if self.fs._spend(1) == 0:
                    raise PowerCut()
                for i in range(b, b + self.BLOCK):
                    p[i] = 0xFF
            return self.LEAST
        if op == 4:
            off, buf = args
            if off % self.LEAST or len(buf) % self.LEAST or off + len(buf) > len(p):
                return -EINVAL
            self.writes += 1
            done = self.fs._spend(len(buf))
            for i in range(done):
                p[off + i] &= buf[i]
            if done < len(buf):
                raise PowerCut()
            return 0
        if op == 5:
            return 0
        return -EINVAL
