"""Writes the deployment's flag and resets the kiosk, which then stays stopped (see main.py)."""

import machine


def stop_kiosk(flag: str) -> None:
    # Reset even when the flag cannot be written (a full flash): the survey then says so.
    try:
        with open(flag, "w") as f:
            f.write("deploy")
    except OSError:
        pass
    machine.reset()
