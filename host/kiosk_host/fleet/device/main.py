"""The kiosk's /main.py: starts the compiled firmware, unless a deployment is on."""

# Written by `kiosk-host deploy`: MicroPython runs only a source main.py, so this one starts
# the compiled firmware: from /rom when the board's ROMFS partition holds it (its code then
# runs from flash, not from the heap), else from /lib; board.mpy is in /lib either way.
# While /deploying exists a deployment is under way: the kiosk stays stopped, without its
# watchdog, and the REPL is free; the deployment removes the file and resets the kiosk.
# (The flag's name is FLAG in kiosk_host/fleet/device_scripts.py.)
# An update received over the air runs from its slot in /fw, or from the ROMFS partition it
# was written into (mounted at /rom1 or /rom2), ahead of the factory firmware on sys.path,
# once fwslot (always the factory's, from partition 0 or /lib) has counted its trial boot; a
# trial that keeps failing is rolled back there (docs/ota.md, "Boot, trial and rollback").
import os
import sys


def exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def guard_count(path: str) -> int:
    """The boot guard's count of starts that have not yet run long enough to count as good."""
    try:
        with open(path) as f:
            return int(f.read() or 0)
    except (OSError, ValueError):
        return 0


if exists("/deploying"):
    print("kiosk: a deployment is under way; the kiosk starts when it is done")
else:
    sys.path.insert(0, "/lib")  # so that `main` is the firmware's, not this file
    if exists("/rom/main.mpy"):
        sys.path.insert(0, "/rom")
    import bootguard
    import fwslot
    import machine

    guard = bootguard.BootGuard("/boots")
    slots = fwslot.Slots("/fw")
    trial = slots.trying()
    folder = slots.boot(guard.last_error() if guard_count("/boots") > 0 else None)
    if trial and not slots.trying():
        guard.reset()  # rolled back: the version now running starts a fresh count
    part = slots.rom()
    try:
        if folder and part:
            # A release in a ROMFS partition: mounted, its code runs in place from flash.
            # A partition that does not mount fails the start as an import would.
            import vfs

            import rompart

            folder = "/rom" + str(part)
            rompart.RomParts(vfs).mount(part, folder)
        if folder:
            sys.path.insert(0, folder)
        import main  # noqa: F401
    except Exception as e:
        # The simulated machine's reset() raises instead of restarting the chip: let it end
        # the run as a restart would.
        if isinstance(e, getattr(machine, "ResetRequested", ())):
            raise
        # A release that fails on import never reaches its own boot guard: count and record
        # the start here, so that its trial boots run out and name the error, and restart.
        sys.print_exception(e)
        again = guard.enter()
        guard.record(type(e).__name__ + ": " + str(e))
        if not again:
            raise  # failing time after time: the REPL stays free for a deployment
        machine.reset()
