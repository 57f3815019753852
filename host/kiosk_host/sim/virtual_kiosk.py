"""`kiosk-host virtual-kiosk`: the real firmware under CPython, on simulated hardware.

The firmware's own modules run unchanged; the simulated `machine` and `network` stand in for
the ESP32's, a folder stands in for its flash (so a restart keeps the outbox), and standard
input stands in for the customer: `press N`, `hold N MS`, `chord A B MS`, `sleep MS`,
`net down`, `net up`, `net add SSID KEY` (another Wi-Fi network in the air), `power-cut`
(now, or `power-cut N`: once N more events are acknowledged), `quit`. Every screen change is
printed as `SCREEN <name>: <text>`. Given the folder `kiosk-host provision` wrote, it runs as that
kiosk: its identity, account, letter, board and broker (TLS with its CA included), on a
simulated Wi-Fi of the provisioned name and key.

It takes firmware updates over the air as the device does (docs/ota.md): its flash folder
holds the slots (`fw/`), the pointer and the boot guard (`boots`), and at each start it does
what the device's loader does: the factory `fwslot` counts a trial boot or rolls it back, and
the slot that runs goes first on the module path. A restart (the `reboot` command, a switch to
an update, a crash while starting) runs the same command again in the same process, as the
chip resets: standard input stays, and lines typed but not yet acted on are carried over.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import select
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote, urlparse

from kiosk_host import __version__
from kiosk_host.errors import UserError
from kiosk_host.shipped import BOARDS, FIRMWARE
from kiosk_host.sim.screen_lines import screen_line

SIMHW = Path(__file__).resolve().parent / "hardware"
_PERIOD_MASK = (1 << 30) - 1
_HALF = 1 << 29


class RealTime:
    """The `time`-like source of the firmware's Clock, and of the simulated hardware, in real
    time: ticks wrap at 2**30 as on the ESP32."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000)

    def ticks_ms(self) -> int:
        return self.elapsed_ms() & _PERIOD_MASK

    def ticks_add(self, ticks: int, delta: int) -> int:
        return (ticks + delta) & _PERIOD_MASK

    def ticks_diff(self, end: int, start: int) -> int:
        d = (end - start) & _PERIOD_MASK
        return d - 2 * _HALF if d >= _HALF else d

    def time(self) -> int:
        return int(time.time())


def module(name: str) -> Any:
    """A firmware or simulated-hardware module, by the name it has on the kiosk."""
    return importlib.import_module(name)


PENDING_INPUT = "VIRTUAL_KIOSK_INPUT"  # lines typed before a restart and not yet acted on


def load_firmware() -> None:
    """Put the firmware, the boards and the simulated hardware on the module path."""
    for path in (BOARDS, SIMHW, FIRMWARE, SIMHW / "cpython"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))

    async def sleep_ms(ms: int) -> None:
        await asyncio.sleep(ms / 1000)

    asyncio.sleep_ms = sleep_ms  # type: ignore[attr-defined]  # MicroPython's spelling
    if not hasattr(time, "ticks_ms"):  # the colour panels' drivers time their reset so
        ticks = RealTime()
        time.ticks_ms = ticks.ticks_ms  # type: ignore[attr-defined]
        time.ticks_diff = ticks.ticks_diff  # type: ignore[attr-defined]
        time.sleep_ms = lambda ms: time.sleep(ms / 1000)  # type: ignore[attr-defined]


@dataclass
class Options:
    store: str
    device: str
    broker: str
    board: str = "esp32_devkitc_ssd1306"
    state_dir: Path | None = None
    letter: str = "A"
    outbox_records: int = 2000  # as on the device
    ca: Path | None = None  # the CA certificate to trust, for an mqtts:// broker
    identity: Path | None = None  # a folder `kiosk-host provision` wrote: it wins over the above


class KioskSetupError(UserError, ValueError):
    """Options a virtual kiosk cannot start from; the message says what to fix."""


def state_folder(opts: Options) -> Path:
    """The kiosk's flash: its outbox, settings, slots and boot guard."""
    return opts.state_dir or Path(f".virtual-kiosks/{opts.store}/{opts.device}")


def _guard_count(path: Path) -> int:
    """The boot guard's count of starts that have not yet run long enough to count as good."""
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


@dataclass
class Boot:
    """What the start left for the firmware: its slots and its boot guard (the factory's)."""

    slots: Any
    guard: Any


def boot(state: Path) -> Boot:
    """The device loader's part, on the kiosk's flash folder: the factory's `fwslot` and
    `bootguard` imported before any slot is on the module path, the trial boot counted (a
    trial past its boots rolled back, with the boot guard's last error), and the slot that
    runs first on the module path."""
    load_firmware()
    state.mkdir(parents=True, exist_ok=True)
    slots = module("fwslot").Slots(str(state / "fw"))
    guard = module("bootguard").BootGuard(str(state / "boots"))
    trial = slots.trying()
    folder = slots.boot(guard.last_error() if _guard_count(state / "boots") > 0 else None)
    if trial and not slots.trying():
        guard.reset()  # rolled back: the version now running starts a fresh count
    if folder:
        # No __pycache__ in a slot: it is to hold the release's files only, and a compiled
        # copy is trusted by its source's size and time, which a later release written into
        # the same slot within the same second could share.
        sys.dont_write_bytecode = True
        sys.path.insert(0, folder)
    return Boot(slots, guard)


def restart() -> NoReturn:
    """Reset the chip: the same command again, in this process (its standard input and
    output stay); the flash folder is all that is kept."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def provisioned(opts: Options) -> tuple[Options, dict[str, Any] | None]:
    """The options with the store, device, letter and board of the provisioned kiosk in
    `opts.identity`, and its identity as the firmware reads it (None without a folder)."""
    if opts.identity is None:
        return opts, None
    folder = opts.identity
    try:
        ident: dict[str, Any] = json.loads((folder / "identity.json").read_text())
        board = json.loads((folder / "board.json").read_text())["board"]
    except (OSError, ValueError, KeyError) as why:
        raise KioskSetupError(
            f"--identity {folder}: not a provisioned kiosk's folder ({why})"
        ) from None
    if ident.get("ca"):
        ident["ca"] = str((folder / ident["ca"]).resolve())
    store, device, letter = ident["store"], ident["device"], ident["letter"]
    opts = Options(store, device, opts.broker, board, opts.state_dir, letter, opts.outbox_records)
    return opts, ident


class VirtualKiosk:
    """One kiosk: firmware objects on simulated hardware, driven by text commands."""

    SCAN_MS = 2  # faster than the device's 10 ms, so that scripted presses run quickly
    DEBOUNCE_MS = 6

    def __init__(
        self,
        opts: Options,
        out: Callable[[str], None],
        started: Boot | None = None,
        restart: Callable[[], None] = restart,
    ) -> None:
        folder = opts.identity
        opts, identity = provisioned(opts)
        state = state_folder(opts)
        started = started or boot(state)
        self.guard = started.guard
        self.restart = restart
        network = module("network")
        module("simclock").clock = RealTime()
        Buttons = module("buttons").Buttons
        Clock = module("clock").Clock
        ConfigFile = module("config").ConfigFile
        Kiosk = module("kiosk").Kiosk
        Link = module("link").Link
        Outbox = module("outbox").Outbox
        Ui = module("ui").Ui
        Events = module("wire").Events

        self.out = out
        self.opts = opts
        self.state = state
        self.board: Any = importlib.import_module(opts.board.replace("-", "_"))
        display = self.board.make_display()
        self.clock = Clock(module("simclock").clock)
        self.outbox = Outbox(str(state / "outbox"), opts.outbox_records)
        self.config_file = ConfigFile(str(state / "config.json"))
        self.pins = self.board.button_pins()
        if not (state / "config.json").exists():
            conf = default_config(opts.device, len(self.pins))
            if folder is not None:  # deployed with the kiosk, as on the device
                conf = json.loads((folder / "config.json").read_text())
            self.config_file.save(json.dumps(conf).encode())
        self.kiosk = Kiosk(
            self.clock,
            self.outbox,
            Events(opts.store, opts.device),
            lambda texts: Ui(display, texts, self._screen),
            len(self.pins),
            opts.letter,
        )
        Buttons.SCAN_MS = self.SCAN_MS
        Buttons.DEBOUNCE_MS = self.DEBOUNCE_MS
        self.buttons = Buttons(self.pins, self.board.BUTTON_ACTIVE_LOW, self.clock, self.kiosk)
        for i in range(len(self.pins)):
            self._drive(i, down=False)
        self.kiosk.configure(*self.config_file.load())
        url = urlparse(opts.broker or "")  # none when --identity gives the broker
        self.network = network
        network.access_point["connect_ms"] = 50
        ident = {
            "store": opts.store,
            "device": opts.device,
            "host": url.hostname or "127.0.0.1",
            "port": url.port or (8883 if url.scheme == "mqtts" else 1883),
            "user": unquote(url.username) if url.username else None,
            "password": unquote(url.password) if url.password else None,
            "ssid": network.access_point["ssid"],
            "key": network.access_point["key"],
            "fw": __version__,
            "board": self.board.NAME,
            "ca": str(opts.ca) if opts.ca else None,
        }
        if identity is not None:
            ident = {**identity, "board": self.board.NAME}
            # the simulated air carries the shop's Wi-Fi as the kiosk was provisioned for it
            network.access_point.update(ssid=ident["ssid"], key=ident["key"])
        saved = self._load_wifi()
        if saved is not None:  # a Wi-Fi the kiosk was moved to since, kept on its flash
            network.others[ident["ssid"]] = ident["key"]
            ident.update(saved)
            network.access_point.update(saved)
        hw = {
            "ntp": lambda: int(time.time()),
            "heap_free": lambda: 100_000,  # CPython has no small heap to report
            "rssi": lambda: network.access_point["rssi"] if network.access_point["up"] else None,
            "identify": lambda seconds: None,
            "reboot": self._reboot,
            "save_config": self.config_file.save,
            "load_ids": self._load_ids,
            "save_ids": self._save_ids,
            "save_wifi": self._save_wifi,
            "slots": started.slots,
        }
        ident["takes"] = "py"  # the sources: the firmware runs under CPython
        running = started.slots.version(ident["fw"])
        module("logring").add(f"boot: virtual kiosk, firmware {running}", 0)
        self.link = Link(self.kiosk, self.outbox, self.clock, network.WLAN(), ident, hw)

    # -- hardware the firmware asks for --------------------------------------------------------

    def _screen(self, name: str, text: str) -> None:
        self.out(screen_line(name, text))

    def _load_ids(self) -> list[str]:
        try:
            ids: list[str] = json.loads((self.state / "cmd-ids.json").read_text())
            return ids
        except (OSError, ValueError):
            return []

    def _save_ids(self, ids: list[str]) -> None:
        tmp = self.state / "cmd-ids.json.new"
        tmp.write_text(json.dumps(ids))
        tmp.replace(self.state / "cmd-ids.json")

    def _load_wifi(self) -> dict[str, str] | None:
        try:
            saved = json.loads((self.state / "wifi.json").read_text())
            return {"ssid": str(saved["ssid"]), "key": str(saved["key"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_wifi(self, ssid: str, key: str) -> None:
        tmp = self.state / "wifi.json.new"
        tmp.write_text(json.dumps({"ssid": ssid, "key": key}))
        tmp.replace(self.state / "wifi.json")

    def _reboot(self) -> None:
        self._screen("reboot", "restarting")
        self.restart()

    def _cut_after_acks(self, n: int) -> None:
        """`power-cut N`: the power goes once the broker has acknowledged N more events, so
        that a test can cut it in the middle of a drain, however fast the drain is."""
        sent = self.outbox.sent
        left = [n]

        def counting(seq: int) -> None:
            sent(seq)
            left[0] -= 1
            if left[0] <= 0:
                os._exit(137)

        self.outbox.sent = counting

    # -- the customer's side -------------------------------------------------------------------

    def _drive(self, index: int, down: bool) -> None:
        pressed = 0 if self.board.BUTTON_ACTIVE_LOW else 1
        self.pins[index].drive(pressed if down else 1 - pressed)

    async def _settle(self, index: int, down: bool) -> None:
        """Wait until the scanner has taken the button's new level in (bounded)."""
        for _ in range(200):
            await asyncio.sleep(self.SCAN_MS / 1000)
            if (self.buttons.state[index] != 0) == down:
                return

    def _buttons_problem(self, verb: str, args: list[int]) -> str | None:
        """Why a `press`, `hold` or `chord` line names no buttons of this kiosk, or None."""
        usage = {"press": "press N", "hold": "hold N MS", "chord": "chord A B MS"}.get(verb)
        if usage is None:
            return None
        n = len(self.pins)
        if len(args) < len(usage.split()) - 1:
            return f"{verb}: give {usage}, with buttons 1 to {n} (left to right)"
        for button in args[: 2 if verb == "chord" else 1]:
            if not 1 <= button <= n:
                return f"{verb} {button}: no such button; this kiosk has buttons 1 to {n}"
        return None

    async def command(self, line: str) -> bool:
        """Carry out one line of input; False when the kiosk should stop."""
        words = line.split()
        if not words:
            return True
        verb, args = words[0], [int(w) for w in words[1:] if w.lstrip("-").isdigit()]
        why = self._buttons_problem(verb, args)
        if why is not None:
            print(f"virtual-kiosk: {why}", file=sys.stderr, flush=True)
            return True  # a slip of the keyboard: the kiosk carries on
        if verb == "press":
            i = args[0] - 1
            self._drive(i, True)
            await self._settle(i, True)
            self._drive(i, False)
            await self._settle(i, False)
        elif verb == "hold":
            i = args[0] - 1
            self._drive(i, True)
            await asyncio.sleep(args[1] / 1000)
            self._drive(i, False)
            await self._settle(i, False)
        elif verb == "chord":
            a, b = args[0] - 1, args[1] - 1
            self._drive(a, True)
            self._drive(b, True)
            await asyncio.sleep(args[2] / 1000)
            self._drive(a, False)
            self._drive(b, False)
            await self._settle(a, False)
        elif verb == "sleep":
            await asyncio.sleep(args[0] / 1000)
        elif line.strip() == "net down":
            self.network.access_point["up"] = False
        elif line.strip() == "net up":
            self.network.access_point["up"] = True
        elif words[:2] == ["net", "add"] and len(words) in (3, 4):
            self.network.others[words[2]] = words[3] if len(words) == 4 else ""
        elif verb == "power-cut" and args:
            self._cut_after_acks(args[0])
        elif verb == "power-cut":
            os._exit(137)  # as the power goes: no goodbye to the broker, nothing flushed
        elif verb == "quit":
            await self.link.client.disconnect()
            return False
        else:
            print(f"virtual-kiosk: unknown command {line.strip()!r}", file=sys.stderr)
        return True

    async def run(self, lines: Typed) -> None:
        app = module("app")

        run = app.run(self.kiosk, self.buttons, self.clock, guard=self.guard, link=self.link)
        tasks = [asyncio.create_task(run)]
        self.typed = lines
        try:
            while True:
                line = await lines.get()
                if line is None:  # end of input: keep serving until killed
                    await asyncio.gather(*tasks)
                if line is not None and not await self.command(line):
                    return
        finally:
            for task in tasks:
                task.cancel()


def default_config(device: str, buttons: int) -> dict[str, Any]:
    """The settings a virtual kiosk starts with until the host sends its own: the product's
    defaults, but no response interval, since its customers are scripts that press fast."""
    return {
        "v": 1,
        "prompt": "How did we do today?",
        "language": "en",
        "scale": buttons,
        "low_threshold": 1 if buttons == 3 else 2,
        "response_interval_s": 0,
        "follow_up_timeout_s": 20,
        "code_display_s": 30,
        "confirm_timeout_s": 60,
        "telemetry_interval_s": 60,
        "station": device,
        "staff": [],
    }


class Typed:
    """Standard input, line by line. Read from the descriptor itself (no buffer of its own
    that a restart would lose), so that what is typed but not yet acted on can be handed to
    the next start (`handed_over`), and whatever is still in the pipe stays there for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, earlier: str = "") -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.lines: deque[str | None] = deque(earlier.splitlines(keepends=True))
        self.partial = b""
        self.ready = asyncio.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            select.select([0], [], [])  # waits without taking anything from the pipe
            with self.lock:
                data = os.read(0, 4096)
                self.partial += data
                *whole, self.partial = self.partial.split(b"\n")
                self.lines.extend(w.decode(errors="replace") + "\n" for w in whole)
                if not data:
                    if self.partial:
                        self.lines.append(self.partial.decode(errors="replace"))
                    self.lines.append(None)
            self.loop.call_soon_threadsafe(self.ready.set)
            if not data:
                return

    async def get(self) -> str | None:
        """The next line; None at the end of the input."""
        while True:
            with self.lock:
                if self.lines:
                    return self.lines.popleft()
                self.ready.clear()
            await self.ready.wait()

    def handed_over(self) -> str:
        """What was read but not acted on; nothing more is read after this (the process is
        about to be replaced)."""
        self.lock.acquire()
        return "".join(x for x in self.lines if x is not None) + self.partial.decode(
            errors="replace"
        )


def _print(line: str) -> None:
    print(line, flush=True)


async def serve(opts: Options) -> None:
    lines = Typed(asyncio.get_running_loop(), os.environ.pop(PENDING_INPUT, ""))

    def again() -> NoReturn:
        """A restart, with what was typed and not yet acted on."""
        os.environ[PENDING_INPUT] = lines.handed_over()
        restart()

    named, _ = provisioned(opts)
    started = boot(state_folder(named))
    try:
        kiosk = VirtualKiosk(opts, _print, started, again)
    except UserError:
        raise  # options it cannot start from: said on one line, as every command does
    except Exception as e:
        # A release that fails on import or at start: counted and recorded as the device's
        # loader does, then the chip resets; its trial boots run out and it is rolled back.
        traceback.print_exc()
        more = started.guard.enter()
        started.guard.record(f"{type(e).__name__}: {e}")
        if not more:
            raise  # failing time after time: the kiosk stops, as the device's does
        again()
    gc.collect()
    await kiosk.run(lines)
