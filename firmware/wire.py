"""The kiosk's side of the MQTT contract: topics and payloads, byte for byte as mqtt_schemas/ says.

Payloads are formatted by hand rather than with json.dumps so that the field order is fixed
and no dict is built per event; every identifier is checked with `is_identifier` when the
config is loaded, so none needs JSON escaping here.
"""

import json

from micropython import const

_ID_MAX = const(32)
# Recovery-code alphabet: digits and capitals without the look-alikes 0/O and 1/I/L.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
# Kiosk letters: capitals without the look-alikes I, L and O, so 23 kiosks per store. Each is
# a character of CODE_ALPHABET, so the check covers the letter by its index there (A is 8).
KIOSK_LETTERS = "ABCDEFGHJKMNPQRSTUVWXYZ"
_CODE_LEN = const(5)
_CODES = const(29791)  # 31 ** 3 codes per kiosk letter
_SPREAD = const(7919)  # coprime with 31, so consecutive sequence numbers give unlike codes
KINDS = ("rating", "follow_up", "recovery_confirm", "staff_signin", "staff_signout")
OUTCOMES = ("wow", "fixed", "not_fixed")


def is_identifier(s) -> bool:
    """True for a store, device, station or staff id: ^[a-z0-9][a-z0-9-]{0,31}$."""
    if not isinstance(s, str) or not 0 < len(s) <= _ID_MAX:
        return False
    return all("a" <= c <= "z" or "0" <= c <= "9" or (c == "-" and i > 0) for i, c in enumerate(s))


def is_case_code(s) -> bool:
    """True for a recovery code: a kiosk letter, three characters of CODE_ALPHABET and the
    check character, so that one mistyped character or two swapped neighbours are refused."""
    if not isinstance(s, str) or len(s) != _CODE_LEN or s[0] not in KIOSK_LETTERS:
        return False
    total = 0
    for i in range(_CODE_LEN):
        v = CODE_ALPHABET.find(s[i])
        if v < 0:
            return False
        total += (i + 1) * v
    return total % 31 == 0


def case_code(letter: str, seq: int) -> str:
    """The recovery code for the rating `seq`: unique over any 29,791 consecutive events.

    The fifth character makes the sum of each character's index in CODE_ALPHABET times its
    position (1 to 5) a multiple of 31. 31 is prime, so a single wrong character or two
    swapped neighbours always breaks that sum.
    """
    n = seq * _SPREAD % _CODES
    a = CODE_ALPHABET
    body = letter + a[n // 961] + a[n // 31 % 31] + a[n % 31]
    total = 0
    for i in range(4):
        total += (i + 1) * a.find(body[i])
    # 5 * 6 = 30 = -1 (mod 31): a check of 6 * total brings the whole sum to 0
    return body + a[6 * total % 31]


def _num(x) -> str:
    return "null" if x is None else str(x)


def _id_or_null(x) -> str:
    return "null" if x is None else '"' + x + '"'


class Topics:
    """One kiosk's topics, built once at start so that publishing builds no strings."""

    def __init__(self, store: str, device: str) -> None:
        base = "kiosk/v1/" + store + "/" + device + "/"
        self.event = base + "event"
        self.status = base + "status"
        self.telemetry = base + "telemetry"
        self.config = base + "config"
        self.cmd = base + "cmd"
        self.ack = base + "ack"
        self.ota = base + "ota"
        self.cases = "kiosk/v1/" + store + "/cases"


def parse_ack(payload):
    """The seq of an ack payload ({"v":1,"seq":N}, ack.json), or None if it is not one."""
    try:
        p = json.loads(payload)
        seq = p["seq"]
        ok = p["v"] == 1 and len(p) == 2 and type(seq) is int and 0 <= seq < 1 << 32
    except (ValueError, KeyError, TypeError):
        return None
    return seq if ok else None


class Events:
    """Encodes this kiosk's events as the bytes that go to the outbox and onto the wire."""

    def __init__(self, store: str, device: str) -> None:
        self._ids = '","store":"' + store + '","device":"' + device + '","seq":'

    def _head(self, kind: str, seq: int, ts, up_ms: int) -> str:
        return (
            '{"v":1,"kind":"'
            + kind
            + self._ids
            + str(seq)
            + ',"ts":'
            + _num(ts)
            + ',"up_ms":'
            + str(up_ms)
        )

    def rating(self, seq, ts, up_ms, score: int, scale: int, station: str, staff) -> bytes:
        return (
            self._head("rating", seq, ts, up_ms)
            + ',"score":'
            + str(score)
            + ',"scale":'
            + str(scale)
            + ',"station":"'
            + station
            + '","staff":'
            + _id_or_null(staff)
            + "}"
        ).encode()

    def follow_up(self, seq, ts, up_ms, rating_seq: int, code) -> bytes:
        """The answer to "Let us make it right?": accepted when a code was shown, else None."""
        tail = ',"accepted":false}' if code is None else ',"accepted":true,"code":"' + code + '"}'
        return (
            self._head("follow_up", seq, ts, up_ms) + ',"rating_seq":' + str(rating_seq) + tail
        ).encode()

    def recovery_confirm(self, seq, ts, up_ms, case: str, outcome: str) -> bytes:
        return (
            self._head("recovery_confirm", seq, ts, up_ms)
            + ',"case":"'
            + case
            + '","outcome":"'
            + outcome
            + '"}'
        ).encode()

    def staff(self, seq, ts, up_ms, signin: bool, staff: str, station: str) -> bytes:
        kind = "staff_signin" if signin else "staff_signout"
        return (
            self._head(kind, seq, ts, up_ms)
            + ',"staff":"'
            + staff
            + '","station":"'
            + station
            + '"}'
        ).encode()


def status_online(
    fw: str, board: str, ts, up_ms: int, config_error, kept_from=None, takes=None, ota=None
) -> bytes:
    """`kept_from`: the oldest seq the outbox keeps, so the host's mark passes what it let go;
    `takes`: the kind of update the kiosk takes, where it takes any; `ota`: the last update's
    state, a JSON object's text (`ota_state`)."""
    return (
        '{"v":1,"state":"online","fw":"'
        + fw
        + '","board":"'
        + board
        + '","ts":'
        + _num(ts)
        + ',"up_ms":'
        + str(up_ms)
        + ',"config_error":'
        + json.dumps(config_error)
        + ("" if kept_from is None else ',"kept_from":' + str(kept_from))
        + ("" if takes is None else ',"takes":"' + takes + '"')
        + ("" if ota is None else ',"ota":' + ota)
        + "}"
    ).encode()


def ota_state(rid: str, version: str, state: str, want, reason, progress=None) -> str:
    """The status's `ota` member: how the last update goes. `rid` and `version` are checked
    when the manifest comes in (or come from the kiosk's own flash), so need no escaping;
    `progress`: (chunks done, chunks in all) of the update being received."""
    return (
        '{"id":"'
        + rid
        + '","version":"'
        + version
        + '","state":"'
        + state
        + '","want":'
        + ("null" if want is None else "[%d,%d]" % want)
        + ',"reason":'
        + json.dumps(None if reason is None else reason[:160])
        + ("" if progress is None else ',"progress":[%d,%d]' % progress)
        + "}"
    )


# The last will is fixed when the kiosk connects, so it carries no time.
STATUS_WILL = b'{"v":1,"state":"offline"}'


def telemetry(
    ts,
    up_ms,
    heap_free,
    rssi,
    outbox,
    dropped,
    suppressed,
    config_error,
    link_error=None,
    restarts=0,
    outbox_max=0,
) -> bytes:
    """`link_error`: why the link last failed ("Class: text"), or None; `restarts`: how often
    the app had to start the link task again since boot; `outbox_max`: the outbox's size in
    records (left out when 0), so that the host can tell a manager it is filling."""
    return (
        '{"v":1,"ts":'
        + _num(ts)
        + ',"up_ms":'
        + str(up_ms)
        + ',"heap_free":'
        + str(heap_free)
        + ',"rssi":'
        + _num(rssi)
        + ',"outbox":'
        + str(outbox)
        + ',"dropped":'
        + str(dropped)
        + ',"suppressed":'
        + str(suppressed)
        + ',"config_error":'
        + json.dumps(config_error)
        + ',"link_error":'
        + json.dumps(link_error)
        + ',"link_restarts":'
        + str(restarts)
        + (',"outbox_max":' + str(outbox_max) if outbox_max else "")
        + "}"
    ).encode()
