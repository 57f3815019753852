"""The kiosk's log ring on MicroPython: the newest 16 lines, each cut to 80 printable bytes,
repeats counted, no allocation per line beyond its text, and a payload the contract accepts."""

from __future__ import annotations

import json

from kiosk_host.wire.contract import Contract, Message
from tests.broker import Mosquitto
from tests.test_firmware_wifi_trial import run
from tests.vm.mpvm import MicroPythonVM

TOPIC = "kiosk/v1/store-12/till-1/log"


def log_payload(mpvm: MicroPythonVM, script: str) -> tuple[dict[str, object], list[str]]:
    """Run `script` (MicroPython, with `logring` imported), then the payload it would send."""
    code = (
        "import logring\n"
        f"{script}\n"
        "print('LOG', bytes(logring.payload('store-12', 'till-1', 'c-1', None, 999000)).decode())\n"
    )
    out = mpvm.run(code, ["logring"]).ok().splitlines()
    (line,) = [o for o in out if o.startswith("LOG ")]
    raw = line[len("LOG ") :].encode()
    result = Contract.load().validate(TOPIC, raw)
    assert isinstance(result, Message), f"{result}: {raw!r}"
    return result.payload, [o for o in out if not o.startswith("LOG ")]


def test_the_ring_keeps_the_newest_lines_each_cut_to_80_printable_characters(
    mpvm: MicroPythonVM,
) -> None:
    script = (
        "for i in range(40):\n"
        "    logring.add('line %d' % i, 1000 * i)\n"
        "logring.add('x' * 100, 50000)\n"
        "logring.add('Caf\\u00e9 \"quoted\" back\\\\slash\\ttab', 60000)\n"
        "logring.add(b'bytes too', 2 ** 40)\n"
        "print('ADDED', logring.added())\n"
    )
    log, lines = log_payload(mpvm, script)
    assert lines == ["ADDED 43"]
    texts = [str(line["text"]) for line in log["lines"]]  # type: ignore[attr-defined]
    assert len(texts) == 16 and log["lost"] == 43 - 16
    assert texts[:3] == ["line 27", "line 28", "line 29"]  # the oldest ones went
    assert texts[-3:] == ["x" * 80, "Caf?? 'quoted' back/slash?tab", "bytes too"]
    times = [line["up_ms"] for line in log["lines"]]  # type: ignore[attr-defined]
    assert times[0] == 27000 and times[-1] == 2**40  # past a small int, and past 32 bits
    assert (log["id"], log["ts"], log["up_ms"]) == ("c-1", None, 999000)


def test_a_line_that_comes_again_in_a_row_is_counted_not_stored_again(
    mpvm: MicroPythonVM,
) -> None:
    script = (
        "logring.add('boot: firmware 1.0.0, after watchdog', 0)\n"
        "for t in (1000, 18000, 35000):\n"
        "    logring.add('Wi-Fi: no connection to shop', t)\n"
        "logring.add('link: connected', 40000)\n"
        "logring.add('Wi-Fi: no connection to shop', 90000)\n"
    )
    log, _ = log_payload(mpvm, script)
    assert log["lines"] == [
        {"up_ms": 0, "text": "boot: firmware 1.0.0, after watchdog"},
        {"up_ms": 1000, "last_ms": 35000, "count": 3, "text": "Wi-Fi: no connection to shop"},
        {"up_ms": 40000, "text": "link: connected"},
        {"up_ms": 90000, "text": "Wi-Fi: no connection to shop"},  # not in a row: a line
    ]
    assert log["lost"] == 0


def test_a_full_ring_of_the_longest_lines_fits_the_contracts_size() -> None:
    # The largest log a kiosk can send: every line 80 characters, repeated, at the largest
    # uptime the contract allows; the payload built as logring builds it.
    big = 2**53 - 1
    line = {"up_ms": big, "last_ms": big, "count": 2**32 - 1, "text": "x" * 80}
    log = {"v": 1, "store": "s" * 32, "device": "d" * 32, "id": "i" * 36, "ts": 4102444800,
           "up_ms": big, "lost": 2**32 - 1, "lines": [line] * 16}  # fmt: skip
    raw = json.dumps(log, separators=(",", ":")).encode()
    result = Contract.load().validate("kiosk/v1/" + "s" * 32 + "/" + "d" * 32 + "/log", raw)
    assert isinstance(result, Message), str(result)


def test_adding_a_line_allocates_nothing_but_its_text(mpvm: MicroPythonVM) -> None:
    code = [
        "import gc, logring\ntext = b'link: OSError: [Errno 113] EHOSTUNREACH'\n"
        "other = b'config: applied'\n",
        "gc.collect()\nbefore = gc.mem_alloc()\n"
        "for i in range(2000):\n"
        "    logring.add(text if i % 2 else other, i)\n"
        "print('ALLOC', gc.mem_alloc() - before, logring.added())\n",
    ]
    out = mpvm.run(code, ["logring"]).ok().split()
    assert out[0] == "ALLOC" and out[2] == "2000"
    assert int(out[1]) <= 64  # 2000 lines stored, a few bytes at most of the loop's own


def test_the_link_answers_a_logs_command_once_on_its_own_topic(
    mpvm: MicroPythonVM, mosquitto: Mosquitto
) -> None:
    cmd = {"v": 1, "cmd": "logs", "id": "l-vm-1", "ts": 1763900000}
    answered = "link.up and link.log_for is None and 'l-vm-1' in link.ids"
    _, sent, _, _ = run(mpvm, mosquitto, "logs-vm", cmd, {}, 10, watch="log", done=answered)
    (log,) = sent  # validated by the contract on the way in
    assert (log["store"], log["device"], log["id"]) == ("logs-vm", "till-1", "l-vm-1")
    texts = [line["text"] for line in log["lines"]]
    assert texts[-1] == "link: connected"
