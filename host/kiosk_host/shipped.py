"""Where the files shared with the kiosk live: at the top of the checkout the host runs from."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MQTT_SCHEMAS = ROOT / "mqtt_schemas"
FIRMWARE = ROOT / "firmware"
