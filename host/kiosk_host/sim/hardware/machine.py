"""Simulated `machine` module: pins, buses that record what was sent, a watchdog and reset."""

import simclock

# A logic analyser on every line the firmware drives. While a test sets `trace` to a list,
# each level the firmware sets on a pin and each bus write is appended in the order they
# happen, so that a panel emulator can tell commands from data by the D/C line:
#   ("pin", pin_id, level)   a level set by the firmware (constructor value, value(), on(), off())
#   ("spi", bus_id, data)    bytes written on an SPI bus
#   ("i2c", bus_id, addr, data)   one I2C write transaction to `addr`
trace = None


class ResetRequested(Exception):
    """Raised by reset(): on a device the chip restarts; in simulation the run ends here."""


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, pin_id: int, mode: int = -1, pull: int = -1, value: int = -1) -> None:
        self.id = pin_id
        self.mode = mode
        self.pull = pull
        # An input with a pull-up reads 1 until something drives it low, as on the device.
        self._level = 1 if pull == Pin.PULL_UP else 0
        self._irq = None
        if value != -1:
            self._set(value)

    def _set(self, v) -> None:
        self._level = 1 if v else 0
        if trace is not None:
            trace.append(("pin", self.id, self._level))

    def value(self, v: int = -1) -> int:
        if v != -1:
            self._set(v)
        return self._level

    def on(self) -> None:
        self._set(1)

    def off(self) -> None:
        self._set(0)

    def __call__(self, v: int = -1) -> int:
        return self.value(v)

    def irq(self, handler=None, trigger: int = 3, hard: bool = False) -> None:
        """As the ESP32's: `handler(pin)` on each edge in `trigger`. Here it runs at once, from
        drive(), whether `hard` or not: the simulated edge comes between two steps of the
        firmware, as an interrupt does, and the scheduler's delay is not modelled."""
        self._irq = (handler, trigger)

    def drive(self, level: int) -> None:
        """Set the level from outside (a simulated button); fires the IRQ as the edge says."""
        old, self._level = self._level, 1 if level else 0
        if self._irq is None or old == self._level:
            return
        handler, trigger = self._irq
        if handler is None:
            return
        rising = self._level == 1
        if (rising and trigger & Pin.IRQ_RISING) or (not rising and trigger & Pin.IRQ_FALLING):
            handler(self)


class _RecordingBus:
    """Keeps every write, so that a test can compare a driver's bytes with a datasheet.

    Setting `recording` to False, on one bus or on the class (`machine.SPI.recording =
    False`), stops keeping them and allocating for them: while a test measures the heap,
    paints many screens, or follows the module-level `trace` instead.
    """

    recording = True

    def __init__(self) -> None:
        self.log: list = []

    def clear(self) -> None:
        self.log = []


class I2C(_RecordingBus):
    def __init__(self, bus_id: int = 0, scl=None, sda=None, freq: int = 400000) -> None:
        super().__init__()
        self.id = bus_id
        self.freq = freq
        self.devices: list = []

    def scan(self) -> list:
        return list(self.devices)

    def writeto(self, addr: int, buf, stop: bool = True) -> int:
        self._record(addr, buf)
        return 1

    def writevto(self, addr: int, vector, stop: bool = True) -> int:
        if self.recording or trace is not None:
            self._record(addr, b"".join(bytes(b) for b in vector))
        return 1

    def _record(self, addr: int, buf) -> None:
        if self.recording:
            self.log.append((addr, bytes(buf)))
        if trace is not None:
            trace.append(("i2c", self.id, addr, bytes(buf)))


SoftI2C = I2C


class SPI(_RecordingBus):
    def __init__(self, bus_id: int = 1, baudrate: int = 1000000, **kw) -> None:
        super().__init__()
        self.id = bus_id
        self.baudrate = baudrate

    def write(self, buf) -> None:
        if self.recording:
            self.log.append(bytes(buf))
        if trace is not None:
            trace.append(("spi", self.id, bytes(buf)))


class WDT:
    """A watchdog on the simulated clock: check() raises ResetRequested once it has starved."""

    def __init__(self, id: int = 0, timeout: int = 5000) -> None:
        self.timeout = timeout
        self.fed = 0
        self._last = simclock.clock.elapsed_ms()

    def feed(self) -> None:
        self.check()
        self.fed += 1
        self._last = simclock.clock.elapsed_ms()

    def check(self) -> None:
        if simclock.clock.elapsed_ms() - self._last > self.timeout:
            raise ResetRequested(f"watchdog starved for more than {self.timeout} ms")


_UID = b"\x24\x0a\xc4\x00\x00\x01"
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_reset_cause = PWRON_RESET


def unique_id() -> bytes:
    return _UID


def reset_cause() -> int:
    return _reset_cause


def reset() -> None:
    raise ResetRequested("machine.reset()")


def soft_reset() -> None:
    raise ResetRequested("machine.soft_reset()")


def freq(hz: int = 0) -> int:
    return 240000000
