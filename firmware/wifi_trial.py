"""A new shop Wi-Fi tried for a minute: kept once the broker answers over it, else the old back.

Loaded only when the host sends a `wifi` command. While the new name and key are tried they
live in RAM alone; the flash keeps the old ones until the kiosk has reached the broker over
the new network, and then takes the new ones in one rename (`store`), so that a power cut at
any moment brings the kiosk back on the old settings or on the new, never on a mix.
"""

import json
import os

from micropython import const

TRIAL_MS = const(60000)  # to join the new network and reach the broker over it
REASON_MAX = const(120)


def problem(ssid, key):
    """What is wrong with a Wi-Fi name and key sent by the host, or None."""
    if not isinstance(ssid, str) or not 0 < len(ssid.encode()) <= 32:
        return "wifi: the name must be 1 to 32 bytes"
    if not isinstance(key, str) or not (key == "" or 8 <= len(key) <= 63):
        return "wifi: the key must be 8 to 63 characters, or none for an open network"
    return None


def said(cid: str, result: str, ssid, why) -> bytes:
    """The `wifi` member the kiosk's status carries: how the last change went (status.json)."""
    return (
        ',"wifi":{"id":'
        + json.dumps(cid)
        + ',"result":"'
        + result
        + '","ssid":'
        + json.dumps(ssid if isinstance(ssid, str) else None)
        + ',"reason":'
        + json.dumps(None if why is None else why[:REASON_MAX])
        + "}}"
    ).encode()


def store(path: str, ssid: str, key: str) -> None:
    """Put `ssid` and `key` into the identity file at `path`, everything else as it was: the
    whole file written anew beside it, then renamed over it (atomic on littlefs)."""
    with open(path, "rb") as f:
        ident = json.loads(f.read())
    ident["ssid"] = ssid
    ident["key"] = key
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(json.dumps(ident).encode())
    os.rename(tmp, path)


class Trial:
    """One change of network, driven by the link: `step` starts it, then gives up on it when
    its time is over; `keep` makes it stay once the broker has answered over it."""

    def __init__(self, cid: str, ssid: str, key: str) -> None:
        self.cid = cid
        self.ssid = ssid
        self.key = key
        self.old = ("", "")  # (ssid, key) to go back to, once started
        self.on = False  # the link is on the new network's name and key
        self.deadline = 0

    def left_ms(self, link) -> int:
        return -link.clock.since_ms(self.deadline)

    def step(self, link) -> None:
        if not self.on:
            i = link.ident
            self.old = (i["ssid"], i["key"])
            i["ssid"] = self.ssid
            i["key"] = self.key
            self.deadline = link.clock.after_ms(TRIAL_MS)
            self.on = True
            link.wlan.disconnect()
            link.log("wifi: trying " + self.ssid)
        elif self.left_ms(link) <= 0:
            self.back(link, link.error or "no connection in time")

    def keep(self, link) -> None:
        """The broker answered over the new network: its name and key go to the flash."""
        try:
            link.hw["save_wifi"](self.ssid, self.key)
        except OSError as e:
            self.back(link, "the new settings could not be stored: OSError: %s" % e)
            return
        link.trial = None
        link.wifi_said = said(self.cid, "joined", self.ssid, None)
        link.log("wifi: joined " + self.ssid + ", kept")

    def back(self, link, why: str) -> None:
        """Back to the old network; the status says why the new one was not kept."""
        link.trial = None
        i = link.ident
        i["ssid"], i["key"] = self.old
        link.wlan.disconnect()
        link.wifi_said = said(self.cid, "wifi_failed", self.ssid, why)  # sent on reconnecting
        link.log("wifi: back to " + i["ssid"] + ": " + why)
