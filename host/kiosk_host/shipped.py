"""Where the files shared with the kiosk live: the contract, the firmware and the board files.

In a checkout they are at its top (`mqtt_schemas/`, `firmware/`, `boards/`); an installed
`kiosk-host` carries copies inside the package, in `_shipped/`, where the wheel build puts them.
`CHECKOUT` is the checkout the host runs from, or None when it is installed.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_PACKED = _PACKAGE / "_shipped"
CHECKOUT: Path | None = None if _PACKED.is_dir() else _PACKAGE.parents[1]
ROOT = _PACKED if CHECKOUT is None else CHECKOUT
MQTT_SCHEMAS = ROOT / "mqtt_schemas"
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
BROKER_SETTINGS = _PACKAGE / "broker"  # the shipped mosquitto.conf and ACL
