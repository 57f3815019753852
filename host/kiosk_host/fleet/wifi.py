"""A kiosk's shop Wi-Fi changed without provisioning it again: over USB, or over MQTT on trial.

Over USB (`over_usb`) a device script (device/set_wifi.py) puts the new name and key into the
kiosk's /identity.json, a new file renamed over the old, and the kiosk restarts on them. Over
MQTT (`over_mqtt`) a `wifi` command asks the kiosk to try the new network for a minute: it
keeps it only if it reaches the broker over it, else it goes back to the old one, and its
status says which (status.json, `wifi`). The command carries the key, so it goes only over
TLS unless the operator says otherwise. Either way the kiosk keeps its identity (store,
device, letter, broker account), and its provisioned folder on this machine takes the new
name and key too, so that a later deployment copies them rather than the old ones.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kiosk_host.errors import UserError
from kiosk_host.fleet.commands import Broker, command, send_command
from kiosk_host.fleet.device_scripts import MARK, call
from kiosk_host.fleet.mpremote import Mpremote
from kiosk_host.fleet.provision import DEFAULT_DEVICES_DIR, check_wifi
from kiosk_host.fleet.serial_port import probe
from kiosk_host.secret_file import first_line
from kiosk_host.wire import topics
from kiosk_host.wire.contract import Contract, Message
from kiosk_host.wire.identifiers import check_identifier

KEY_ENV = "KIOSK_WIFI_PASSWORD"
IDENTITY = "/identity.json"  # on the kiosk
TRIAL_S = 60  # how long the kiosk tries a new network (the firmware's wifi_trial.TRIAL_MS)
WAIT_S = 120.0  # for the kiosk's answer: its trial, and its way back to the old network


class WifiError(UserError, ValueError):
    """A change of Wi-Fi that cannot be made as asked; the message says what to do."""


@dataclass(frozen=True)
class Changed:
    """What a change of Wi-Fi did, without the key: safe to print."""

    store: str
    device: str
    ssid: str
    how: str  # "usb" or "mqtt"
    result: str | None  # written (usb), joined or wifi_failed (mqtt); None: no answer in time
    reason: str | None = None  # why wifi_failed
    old_ssid: str | None = None  # what the kiosk had, when known
    provisioned: Path | None = None  # the provisioned identity.json updated here, if any
    kiosk_state: str | None = None  # online / offline when the command was sent (mqtt)

    @property
    def ok(self) -> bool:
        return self.result in ("written", "joined")

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "device": self.device,
            "ssid": self.ssid,
            "how": self.how,
            "result": self.result,
            "reason": self.reason,
            "old_ssid": self.old_ssid,
            "provisioned": None if self.provisioned is None else str(self.provisioned),
        }

    def lines(self, where: str, devices_dir: Path) -> list[str]:
        kiosk = f"{self.store}/{self.device}"
        was = f" (was {self.old_ssid})" if self.old_ssid else ""
        if self.result == "written":
            out = [
                f"{kiosk}: Wi-Fi {self.ssid}{was} written into {IDENTITY} on {where}, whole; the "
                "kiosk restarted on it (if it cannot join, run this again with the right name "
                "and key)"
            ]
        elif self.result == "joined":
            out = [f"{kiosk} joined {self.ssid} and reached the broker over it: it keeps it"]
        elif self.result == "wifi_failed":
            return [
                f"{kiosk} did not keep {self.ssid}: {self.reason}; it is back on its old Wi-Fi"
                " and nothing was changed here"
            ]
        else:
            state = self.kiosk_state or "not known to the broker"
            return [
                f"{kiosk} did not say within the wait how {self.ssid} went (it was {state} when "
                f"the command was sent): it tries the new network for {TRIAL_S} s once it has "
                "the command, and its status then says whether it kept it; the provisioned "
                "folder here was not changed (run this again once the kiosk is online)"
            ]
        if self.provisioned is not None:
            out.append(f"updated {self.provisioned}, so that a later deployment keeps it")
        else:
            folder = devices_dir / self.store / self.device
            out.append(
                f"no provisioned kiosk in {folder}: nothing updated here (a deployment from "
                "another folder would put its own Wi-Fi back)"
            )
        return out


# -- the name and key -----------------------------------------------------------------------


def check(ssid: str, key: str) -> None:
    """The rules provisioning applies: a name of 1 to 32 bytes, a WPA2 key or none."""
    try:
        check_wifi(ssid, key)
    except UserError as why:
        text = str(why).replace("--wifi-pass", "the key").replace("--wifi-ssid", "--ssid")
        raise WifiError(text) from None


def read_key(
    key_file: str | None,
    open_network: bool,
    ssid: str,
    ask: Callable[[str], str] = getpass.getpass,
    interactive: bool | None = None,
) -> str:
    """The new network's key: from `key_file` (its first line), else $KIOSK_WIFI_PASSWORD,
    else asked twice on the terminal; empty only for an open network (`open_network`)."""
    if open_network:
        if key_file or os.environ.get(KEY_ENV):
            raise WifiError(f"--open is a network without a key: leave out the key ({KEY_ENV})")
        return ""
    if key_file:
        return first_line(key_file, "--wifi-password-file")
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV]
    if not (sys.stdin.isatty() if interactive is None else interactive):
        raise WifiError(
            f"no key for {ssid}: give --wifi-password-file FILE or ${KEY_ENV} (there is no "
            "terminal to ask on), or --open for a network without one"
        )
    key = ask(f"key of the Wi-Fi {ssid}: ")
    if ask("the same again: ") != key:
        raise WifiError("the two keys differ: nothing was changed; run it again")
    if not key:
        raise WifiError("no key given: for a network without one, give --open")
    return key


# -- the provisioned folder -----------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    """Replace `path` whole, readable by its owner only (it holds secrets)."""
    tmp = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def provisioned_identity(devices_dir: Path, store: str, device: str) -> dict[str, Any] | None:
    """The identity provisioning wrote for the kiosk here, or None when there is none."""
    path = devices_dir / store / device / "identity.json"
    try:
        ident = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return ident if isinstance(ident, dict) and ident.get("device") == device else None


def update_provisioned(
    devices_dir: Path, store: str, device: str, ssid: str, key: str
) -> Path | None:
    """The provisioned identity.json with the new name and key, the rest as it was; its path,
    or None when the kiosk was not provisioned in `devices_dir`."""
    ident = provisioned_identity(devices_dir, store, device)
    if ident is None:
        return None
    path = devices_dir / store / device / "identity.json"
    _write(path, json.dumps({**ident, "ssid": ssid, "key": key}, indent=2) + "\n")
    return path


# -- over USB --------------------------------------------------------------------------------


def over_usb(
    port: str,
    ssid: str,
    key: str,
    devices_dir: Path = DEFAULT_DEVICES_DIR,
    mpremote: str | None = None,
) -> Changed:
    """Write the new name and key into the kiosk's identity on `port`, then restart it."""
    check(ssid, key)
    probe(port)
    mp = Mpremote(port, mpremote, [key])
    answer = mp.answer(call("set_wifi", MARK, IDENTITY, ssid, key), "writing the Wi-Fi settings")
    if "error" in answer:
        raise WifiError(
            f"the kiosk on {port} has no readable {IDENTITY} ({answer['error']}): it was "
            "never deployed; provision and deploy it (`kiosk-host deploy`) instead"
        )
    mp.run(["reset"], "restarting the kiosk", 30)
    store, device = str(answer.get("store")), str(answer.get("device"))
    updated = None
    if provisioned_identity(devices_dir, store, device) is not None:
        updated = update_provisioned(devices_dir, store, device, ssid, key)
    old = answer.get("old")
    return Changed(store, device, ssid, "usb", "written", None, str(old) if old else None, updated)


# -- over MQTT -------------------------------------------------------------------------------


def check_secure(
    url: str, insecure: bool, store: str, device: str, ident: dict[str, Any] | None
) -> None:
    """Refuse to send a key where it would travel unencrypted, unless told `insecure`."""
    if insecure:
        return
    if urlparse(url).scheme != "mqtts":
        raise WifiError(
            "--broker is plain mqtt://: the Wi-Fi key would cross the network unencrypted, "
            "readable by anyone on it. Give mqtts://HOST:PORT with --ca, change it over USB "
            "(kiosk-host wifi --port PORT), or add --insecure if you accept that risk"
        )
    if ident is not None and not ident.get("ca"):
        raise WifiError(
            f"{store}/{device} talks to its broker over plain MQTT (provisioned without --ca): "
            "the broker would hand it the key unencrypted. Change it over USB (kiosk-host wifi "
            "--port PORT), or add --insecure if you accept that risk"
        )


def outcome(raw: bytes, topic: str, cid: str) -> dict[str, Any] | None:
    """The `wifi` member of a kiosk status that answers the command `cid`, else None."""
    result = Contract.load().validate(topic, raw)
    if not isinstance(result, Message) or result.shape != "status":
        return None
    said = result.payload.get("wifi")
    return said if isinstance(said, dict) and said.get("id") == cid else None


def over_mqtt(
    broker: Broker,
    store: str,
    device: str,
    ssid: str,
    key: str,
    devices_dir: Path = DEFAULT_DEVICES_DIR,
    wait_s: float = WAIT_S,
) -> Changed:
    """Send a `wifi` command and wait (up to `wait_s`) for the kiosk's status to say how it
    went; on `joined`, the provisioned folder takes the new name and key."""
    check_identifier("--store", store)
    check_identifier("--device", device)
    check(ssid, key)
    status = topics.topic("status", store=store, device=device)
    cmd = command("wifi", ssid=ssid, key=key)
    sent = send_command(broker, store, device, cmd)
    # After the command: its status is retained, so an answer that came first is kept there.
    broker.listen([status])
    deadline = time.monotonic() + wait_s
    seen = 0
    while time.monotonic() < deadline:
        for topic, raw in broker.heard(seen):
            seen += 1
            said = outcome(raw, topic, cmd["id"])
            if said is None:
                continue
            if said["result"] != "joined":
                reason = str(said.get("reason") or "no reason given")
                return Changed(store, device, ssid, "mqtt", "wifi_failed", reason,
                               kiosk_state=sent.kiosk_state)  # fmt: skip
            updated = update_provisioned(devices_dir, store, device, ssid, key)
            return Changed(store, device, ssid, "mqtt", "joined", None, None, updated,
                           sent.kiosk_state)  # fmt: skip
        broker.check_connected()
        time.sleep(0.05)
    return Changed(store, device, ssid, "mqtt", None, kiosk_state=sent.kiosk_state)
