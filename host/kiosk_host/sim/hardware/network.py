"""Simulated `network` module: a station interface whose access point a test turns on and off."""

import simclock

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202

# The simulated access point, shared by every WLAN object as the air is.
access_point = {"ssid": "shop", "key": "secret", "up": True, "rssi": -61, "connect_ms": 1500}
# More networks in the same air, by name: their keys. They come and go with the access point
# above (`up`), and share its signal and its time to connect.
others = {}


class WLAN:
    """Connects `connect_ms` of simulated time after connect(), while the access point is up."""

    def __init__(self, interface: int = STA_IF) -> None:
        self.interface = interface
        self._active = False
        self._ssid = None
        self._key = None
        self._since = 0

    def active(self, is_active: int = -1) -> bool:
        if is_active != -1:
            self._active = bool(is_active)
        return self._active

    def connect(self, ssid: str, key: str = "") -> None:
        if not self._active:
            raise OSError("Wifi Not Started")
        self._ssid = ssid
        self._key = key
        self._since = simclock.clock.elapsed_ms()

    def disconnect(self) -> None:
        self._ssid = None

    def status(self, param: str = ""):
        if param == "rssi":
            if not self.isconnected():
                raise OSError("Wifi Not Connected")
            return access_point["rssi"]
        if self._ssid is None or not self._active:
            return STAT_IDLE
        key = access_point["key"] if self._ssid == access_point["ssid"] else others.get(self._ssid)
        if not access_point["up"] or key is None:
            return STAT_NO_AP_FOUND
        if self._key != key:
            return STAT_WRONG_PASSWORD
        if simclock.clock.elapsed_ms() - self._since < access_point["connect_ms"]:
            return STAT_CONNECTING
        return STAT_GOT_IP

    def isconnected(self) -> bool:
        return self.status() == STAT_GOT_IP

    def ifconfig(self) -> tuple:
        if self.isconnected():
            return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, param: str = "", **kw):
        if param == "mac":
            return b"\x24\x0a\xc4\x00\x00\x01"
        return None
