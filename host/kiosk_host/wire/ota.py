"""The update-over-the-air messages: a release's manifest and its chunks, signed for one kiosk.

The contract's `ota` channel (mqtt_schemas/asyncapi.yaml) carries them, host to kiosk; the
kiosk's signature checks are in firmware/ota.py. Each message is signed with HMAC-SHA256
under the kiosk's own key (`ota_key` in its identity.json, made by `kiosk-host provision`),
over a text that names the kiosk, so that a message for one kiosk is worthless to another and
nothing on the broker can be changed unnoticed. docs/ota.md describes the exchange.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

CHUNK = 2048  # bytes of a file per chunk: a 2.8 KB message, well inside the kiosk's 4 KB
# compiled modules for MicroPython; sources for the virtual kiosk; one ROMFS image of the
# compiled modules, for a kiosk with a ROMFS partition to write it into
KINDS = ("mpy", "py", "romfs")
ROMFS_FILE = "firmware.romfs"  # a romfs release's one file
ROMFS_HEADER = b"\xd2\xcd\x31"  # how MicroPython's ROMFS image starts (mpremote's romfs.py)
ID = re.compile(r"[a-z0-9-]{1,32}")
VERSION = re.compile(r"[!#-\[\]-~]{1,40}")  # printable ASCII but space, quote and backslash
PATH = re.compile(r"[A-Za-z0-9_]{1,24}\.(mpy|py|romfs)")
MAX_FILES = 48
MAX_SIZE = 200_000


class OtaError(ValueError):
    """A release that cannot be sent as it is; the message says what."""


@dataclass(frozen=True)
class File:
    """One file of a release, as the manifest lists it."""

    path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def chunks(self, size: int = CHUNK) -> int:
        """How many chunks carry it (none for an empty file)."""
        return -(-len(self.data) // size)


def key_from_hex(text: str) -> bytes:
    """A kiosk's `ota_key` (64 hex characters) as its 32 bytes."""
    if not re.fullmatch(r"[0-9a-f]{64}", text or ""):
        raise OtaError("ota_key is not 64 lowercase hex characters: provision the kiosk again")
    return bytes.fromhex(text)


def manifest_text(
    store: str, device: str, rid: str, version: str, kind: str, chunk: int, files: Sequence[File]
) -> bytes:
    """What a manifest's `mac` signs."""
    head = f"kiosk-ota-manifest\n{store}\n{device}\n{rid}\n{version}\n{kind}\n{chunk}\n"
    body = "".join(f"{f.path} {len(f.data)} {f.sha256}\n" for f in files)
    return (head + body).encode()


def chunk_text(rid: str, file: int, n: int, data: bytes) -> bytes:
    """What a chunk's `mac` signs."""
    return f"kiosk-ota-chunk\n{rid}\n{file}\n{n}\n".encode() + data


def sign(key: bytes, text: bytes) -> str:
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def check_release(rid: str, version: str, kind: str, chunk: int, files: Sequence[File]) -> None:
    """Refuse what the kiosk would refuse, before anything is sent."""
    if not ID.fullmatch(rid):
        raise OtaError(f"release id {rid!r}: 1 to 32 of a-z, 0-9 and -")
    if not VERSION.fullmatch(version):
        raise OtaError(f"version {version!r}: 1 to 40 printable characters, no space or quote")
    if kind not in KINDS:
        raise OtaError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    if not 256 <= chunk <= 4096:
        raise OtaError(f"chunk {chunk}: from 256 to 4096 bytes")
    if not 1 <= len(files) <= MAX_FILES:
        raise OtaError(f"{len(files)} files: a release has 1 to {MAX_FILES}")
    if kind == "romfs" and [f.path for f in files] != [ROMFS_FILE]:
        raise OtaError(f"a romfs release is one file, {ROMFS_FILE}")
    for f in files:
        if not PATH.fullmatch(f.path) or not f.path.endswith("." + kind):
            raise OtaError(f"{f.path}: not a module name of kind {kind}")
        if len(f.data) > MAX_SIZE:
            raise OtaError(f"{f.path}: {len(f.data):,} bytes, more than {MAX_SIZE:,}")
    if len({f.path for f in files}) != len(files):
        raise OtaError("a file is named twice")
    if kind == "romfs":
        _check_romfs(files[0].data)


def _check_romfs(image: bytes) -> None:
    """Refuse what is not a whole ROMFS image: its header, then its length in 7-bit groups
    (most significant first), then that many bytes."""
    if not image.startswith(ROMFS_HEADER):
        raise OtaError(f"{ROMFS_FILE} is not a ROMFS image (it does not start with its header)")
    size, at = 0, len(ROMFS_HEADER)
    while at < len(image) and at < 8:
        size = (size << 7) | (image[at] & 0x7F)
        at += 1
        if not image[at - 1] & 0x80:
            break
    else:
        raise OtaError(f"{ROMFS_FILE} is not a ROMFS image (its length is cut off)")
    if at + size != len(image):
        raise OtaError(
            f"{ROMFS_FILE}: its header says {at + size:,} bytes, the file has {len(image):,}"
        )


def manifest_message(
    key: bytes,
    store: str,
    device: str,
    rid: str,
    version: str,
    kind: str,
    files: Sequence[File],
    chunk: int = CHUNK,
) -> bytes:
    """The manifest message for one kiosk."""
    check_release(rid, version, kind, chunk, files)
    mac = sign(key, manifest_text(store, device, rid, version, kind, chunk, files))
    body = {
        "v": 1,
        "op": "manifest",
        "id": rid,
        "version": version,
        "kind": kind,
        "chunk": chunk,
        "files": [{"path": f.path, "size": len(f.data), "sha256": f.sha256} for f in files],
        "mac": mac,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def chunk_message(
    key: bytes, rid: str, files: Sequence[File], file: int, n: int, size: int = CHUNK
) -> bytes:
    """Chunk `n` of file number `file`, signed."""
    data = files[file].data[n * size : (n + 1) * size]
    body = {
        "v": 1,
        "op": "chunk",
        "id": rid,
        "file": file,
        "n": n,
        "data": base64.b64encode(data).decode(),
        "mac": sign(key, chunk_text(rid, file, n, data)),
    }
    return json.dumps(body, separators=(",", ":")).encode()
