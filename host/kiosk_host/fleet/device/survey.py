"""Prints one line: the sha256 and size of the given files, the modules in /lib, the free space."""

import binascii
import hashlib
import json
import os


def _h(p: str):
    try:
        d = hashlib.sha256()
        b = bytearray(512)
        m = memoryview(b)
        n = 0
        with open(p, "rb") as f:
            while True:
                k = f.readinto(b)
                if not k:
                    break
                d.update(m[:k])
                n += k
        return [binascii.hexlify(d.digest()).decode(), n]
    except OSError:
        return None


def survey(mark: str, paths: list, flag: str) -> None:
    try:
        lib = [e[0] for e in os.ilistdir("/lib") if e[1] == 0x8000]
    except OSError:
        lib = None
    s = os.statvfs("/")
    files = {p: _h(p) for p in paths}
    stopped = _h(flag) is not None
    print(
        mark
        + json.dumps({"files": files, "lib": lib, "bsize": s[0], "free": s[3], "stopped": stopped})
    )
