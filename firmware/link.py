"""The kiosk's link to the host: Wi-Fi, MQTT, status, telemetry, time, commands and the drain.

One asyncio task that never blocks the buttons: every wait is an await with a bound, and
the outbox drain yields to the scheduler every few events. Wi-Fi and MQTT come back with
exponential backoff and jitter, so a shop full of kiosks does not hammer a restarted broker
in step. Events leave the outbox in sequence order and only their PUBACK removes them.
"""

import asyncio
import json
import random

import wire
from mqtt import MQTTClient, MQTTError, tls_context


class Link:
    WINDOW = 8  # events published and not yet acknowledged, at most
    DRAIN_BATCH = 4  # events published between two yields to the buttons and the screen
    BACKOFF_MIN_MS = 500
    BACKOFF_MAX_MS = 60000
    WIFI_WAIT_MS = 15000  # one attempt to join, then a pause of WIFI_RETRY_MS
    WIFI_RETRY_MS = 2000
    CONNECT_WAIT_S = 10
    TICK_MS = 20
    NTP_RETRY_MS = 60000  # until the clock is set; then every NTP_EVERY_MS
    NTP_EVERY_MS = 6 * 3600 * 1000
    REBOOT_DELAY_MS = 500  # so that the reboot command's PUBACK goes out first
    KEEP_IDS = 8  # command ids remembered, so that a redelivered command is acted on once

    def __init__(self, kiosk, outbox, clock, wlan, ident: dict, hw: dict) -> None:
        """`ident`: store, device, broker host and port, ssid, key, user, password, fw,
        board, and ca (the path of the CA certificate) when the broker speaks TLS. `hw`:
        callables for what only the device can do: ntp() -> Unix seconds, heap_free(),
        rssi() -> dBm or None, identify(seconds), reboot(), save_config(raw), load_ids() ->
        list, save_ids(list)."""
        self.kiosk = kiosk
        self.outbox = outbox
        self.clock = clock
        self.wlan = wlan
        self.ident = ident
        self.hw = hw
        self.topics = wire.Topics(ident["store"], ident["device"])
        self.client = MQTTClient(
            ident["store"] + "/" + ident["device"],  # device ids repeat across stores
            ident["host"],
            ident.get("port", 1883),
            user=ident.get("user"),
            password=ident.get("password"),
            clean=False,  # commands sent while the kiosk was away still arrive
            will=(self.topics.status, wire.STATUS_WILL, 1, True),
            ssl=tls_context(ident["ca"]) if ident.get("ca") else None,
            on_message=self._on_message,
            on_puback=self._on_puback,
        )
        self.inflight = {}  # packet id -> seq
        self.after = 0  # the highest seq published in this run
        self.backoff = self.BACKOFF_MIN_MS
        self.ids = list(hw["load_ids"]())
        self.status_due = False
        self.wake = asyncio.Event()  # set by a PUBACK or the tick: the session loop's turn
        self.reboot_at = None
        self.next_ntp = clock.ticks_ms()
        self.next_telemetry = clock.ticks_ms()
        self.up = False  # MQTT session established
        self.error = None  # why the link last went down, for a technician

    # -- the supervisor ---------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            if not await self._wifi():
                # Wi-Fi comes and goes with the shop; the broker is not to blame, so the
                # next try is soon and the broker's backoff starts afresh.
                self.backoff = self.BACKOFF_MIN_MS
                await asyncio.sleep_ms(self.WIFI_RETRY_MS)
                continue
            try:
                await self._session()
            except (OSError, MQTTError, asyncio.TimeoutError) as e:
                self.error = repr(e)
            self.up = False
            self.client.close()
            if self.wlan.isconnected():
                wait = self.backoff // 2 + random.getrandbits(16) % (self.backoff // 2 + 1)
                self.backoff = min(self.backoff * 2, self.BACKOFF_MAX_MS)
                await asyncio.sleep_ms(wait)

    async def _wifi(self) -> bool:
        """Join the shop's Wi-Fi if not joined; False when it did not come up in time."""
        w = self.wlan
        if w.isconnected():
            return True
        w.active(True)
        w.connect(self.ident["ssid"], self.ident["key"])
        start = self.clock.ticks_ms()
        while not w.isconnected():
            if self.clock.since_ms(start) > self.WIFI_WAIT_MS:
                self.error = "Wi-Fi: no connection to " + self.ident["ssid"]
                return False
            await asyncio.sleep_ms(100)
        return True

    async def _session(self) -> None:
        c = self.client
        await asyncio.wait_for(c.connect(), self.CONNECT_WAIT_S)
        t = self.topics
        for topic in (t.config, t.cmd, t.cases):
            await c.subscribe(topic, 1)
        if not self.clock.synced():
            self._sync_time()  # so that the status already carries the time
        await self._status()
        reader = asyncio.create_task(c.run())
        ticker = asyncio.create_task(self._tick())
        self.up = True
        self.error = None
        started = self.clock.ticks_ms()
        try:
            while c.connected and self.wlan.isconnected():
                await self._drain()
                await self._chores()
                if self.clock.since_ms(started) > self.BACKOFF_MAX_MS:
                    self.backoff = self.BACKOFF_MIN_MS  # a session that lasted: start afresh
                # Until a PUBACK frees the window, or the next tick: a backlog drains at
                # the broker's pace, an idle link wakes only every TICK_MS.
                await self.wake.wait()
                self.wake.clear()
        finally:
            reader.cancel()
            ticker.cancel()
        if not self.wlan.isconnected():
            raise OSError("Wi-Fi lost")
        raise OSError("MQTT connection lost")

    async def _drain(self) -> None:
        """Publish the oldest events not yet in flight, up to the window."""
        sent = 0
        while len(self.inflight) < self.WINDOW:
            rec = self.outbox.peek(self.after)
            if rec is None:
                return
            seq, payload = rec
            pid = await self.client.publish(self.topics.event, payload, 1)
            self.inflight[pid] = seq
            self.after = seq
            sent += 1
            if sent % self.DRAIN_BATCH == 0:
                await asyncio.sleep_ms(0)  # a long backlog must not starve the buttons

    def _on_puback(self, pid: int) -> None:
        seq = self.inflight.pop(pid, None)
        if seq is not None:
            self.outbox.ack(seq)
            self.wake.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep_ms(self.TICK_MS)
            self.wake.set()

    async def _chores(self) -> None:
        clock = self.clock
        if self.status_due:
            self.status_due = False
            await self._status()
        if clock.since_ms(self.next_telemetry) >= 0:
            conf = self.kiosk.config
            every = conf.telemetry_interval_s if conf else 60
            self.next_telemetry = clock.after_ms(every * 1000)
            await self._telemetry()
        if clock.since_ms(self.next_ntp) >= 0:
            self._sync_time()
        if self.reboot_at is not None and clock.since_ms(self.reboot_at) >= 0:
            await self.client.disconnect()
            self.hw["reboot"]()

    def _sync_time(self) -> None:
        clock = self.clock
        self.next_ntp = clock.after_ms(self.NTP_RETRY_MS)
        try:
            clock.set_wall(self.hw["ntp"]())
            self.next_ntp = clock.after_ms(self.NTP_EVERY_MS)
        except OSError:
            pass  # tried again in NTP_RETRY_MS; events carry ts null until then

    async def _status(self) -> None:
        i = self.ident
        payload = wire.status_online(
            i["fw"], i["board"], self.clock.wall(), self.clock.uptime_ms(), self.kiosk.config_error
        )
        await self.client.publish(self.topics.status, payload, 1, True)

    async def _telemetry(self) -> None:
        k = self.kiosk
        payload = wire.telemetry(
            self.clock.wall(),
            self.clock.uptime_ms(),
            self.hw["heap_free"](),
            self.hw["rssi"](),
            self.outbox.depth(),
            self.outbox.dropped(),
            k.suppressed,
            k.config_error,
        )
        await self.client.publish(self.topics.telemetry, payload, 0)

    # -- what the host sends ----------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        t = self.topics
        if topic == t.config:
            if payload and self.kiosk.apply_config(payload):
                self.hw["save_config"](payload)
            self.status_due = True  # the status says whether it was applied, and why not
        elif topic == t.cmd:
            self._command(payload)
        elif topic == t.cases:
            self._cases(payload)

    def _command(self, payload: bytes) -> None:
        try:
            cmd = json.loads(payload)
            name = cmd["cmd"]
            cid = cmd["id"]
        except (ValueError, KeyError, TypeError):
            self.error = "cmd: not a command"
            return
        if cid in self.ids:
            return  # redelivered: already acted on
        self.ids.append(cid)
        del self.ids[: -self.KEEP_IDS]
        self.hw["save_ids"](self.ids)
        if name == "confirm_recovery" and wire.is_case_code(cmd.get("case")):
            self.kiosk.confirm_recovery(cmd["case"])
        elif name == "identify":
            seconds = cmd.get("seconds", 10)
            self.kiosk.identify(self.ident["device"], seconds * 1000)
            self.hw["identify"](seconds)
        elif name == "reboot":
            self.reboot_at = self.clock.after_ms(self.REBOOT_DELAY_MS)
        else:
            self.error = "cmd: unknown or malformed " + str(name)

    def _cases(self, payload: bytes) -> None:
        try:
            cases = json.loads(payload)["cases"] if payload else []
            self.kiosk.set_cases([(c["code"], c["deadline"]) for c in cases])
        except (ValueError, KeyError, TypeError):
            self.error = "cases: not a case list"
