"""The kiosk's recent log lines: a ring in RAM, filled once at start, sent when the host asks.

Every buffer is made when the module loads, so a line costs no allocation beyond its own
text. Each line keeps its first 80 bytes, printable ASCII only (anything else, and the two
characters JSON would escape, become '?', "'" and '/'), so that the payload needs no escaping
and its size is bounded. A line equal to the one before it is counted, not stored again: a
kiosk that cannot reach its Wi-Fi for an hour leaves one line, not the whole ring.
"""

from array import array

from micropython import const

LINES = const(16)
WIDTH = const(80)

_text = bytearray(LINES * WIDTH)
_len = bytearray(LINES)
_first = array("Q", bytes(8 * LINES))  # uptime in ms when the line was first added
_last = array("Q", bytes(8 * LINES))  # and when it last came again
_count = array("I", bytes(4 * LINES))
_added = 0  # lines stored since boot; the newest is at (_added - 1) % LINES


def add(text, up_ms: int) -> None:
    """Keep `text` (str or bytes) as the newest line, at uptime `up_ms`."""
    global _added
    b = text.encode() if isinstance(text, str) else text
    n = min(len(b), WIDTH)
    if _added:
        i = (_added - 1) % LINES
        o = i * WIDTH
        if _len[i] == n and _count[i] < 0xFFFFFFFF:
            j = 0
            while j < n and _text[o + j] == _clean(b[j]):
                j += 1
            if j == n:
                _count[i] += 1
                _last[i] = up_ms
                return
    i = _added % LINES
    o = i * WIDTH
    for j in range(n):
        _text[o + j] = _clean(b[j])
    _len[i] = n
    _first[i] = up_ms
    _last[i] = up_ms
    _count[i] = 1
    _added += 1


def _clean(c: int) -> int:
    """A byte as the ring keeps it: '"' as "'", a backslash as '/', the unprintable as '?'."""
    if c == 34:
        return 39
    if c == 92:
        return 47
    return 63 if c < 32 or c > 126 else c


def is_id(s) -> bool:
    """True for a command id as the contract has it: 1 to 36 letters, digits and hyphens."""
    if not isinstance(s, str) or not 0 < len(s) <= 36:
        return False
    return all("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c == "-" for c in s)


def added() -> int:
    """Lines stored since boot (repeats of the line before not counted)."""
    return _added


def payload(store: str, device: str, cid: str, ts, up_ms: int) -> bytes:
    """The log message (log.json): every line kept, oldest first, for the command `cid`."""
    kept = min(_added, LINES)
    start = _added - kept
    head = (
        '{"v":1,"store":"%s","device":"%s","id":"%s","ts":%s,"up_ms":%d,"lost":%d,"lines":['
        % (store, device, cid, "null" if ts is None else str(ts), up_ms, start)
    ).encode()
    parts: list = [head]
    for k in range(start, _added):
        i = k % LINES
        o = i * WIDTH
        if _count[i] > 1:
            meta = '%s{"up_ms":%d,"last_ms":%d,"count":%d,"text":"' % (
                "," if k > start else "",
                _first[i],
                _last[i],
                _count[i],
            )
        else:
            meta = '%s{"up_ms":%d,"text":"' % ("," if k > start else "", _first[i])
        parts.append(meta.encode())
        parts.append(bytes(_text[o : o + _len[i]]))
        parts.append(b'"}')
    parts.append(b"]}")
    return b"".join(parts)
