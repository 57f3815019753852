"""The kiosk's link to the host: Wi-Fi, MQTT, status, telemetry, time, commands and the drain.

One asyncio task that never blocks the buttons: every wait is an await with a bound, and
the outbox drain yields to the scheduler every few events. Wi-Fi and MQTT come back with
exponential backoff and jitter, so a shop full of kiosks does not hammer a restarted broker
in step. Events leave the outbox in sequence order; the broker's PUBACK only marks one
sent, and the host's mark (its ack topic, after the commit) lets it go.

The supervisor cannot die: whatever one attempt raises (a refused or reset connection, a
closed stream, a refused CONNACK, a failed TLS verification, which mbedTLS reports as
ValueError, garbage from the peer, a MemoryError) is recorded as `error`, shown to a
technician and sent in telemetry, and the link tries again after a backoff. Only
cancellation ends it.
"""

import asyncio
import json
import random

import logring
import wire
from mqtt import MQTTClient, tls_context


class Link:
    WINDOW = 8  # events published and not yet acknowledged, at most
    DRAIN_BATCH = 4  # events published between two yields to the buttons and the screen
    BACKOFF_MIN_MS = 500
    BACKOFF_MAX_MS = 60000
    WIFI_WAIT_MS = 15000  # one attempt to join, then a pause of WIFI_RETRY_MS
    WIFI_RETRY_MS = 2000
    CONNECT_WAIT_S = 10  # the whole connect, over the client's own deadline per phase
    SUBACK_WAIT_MS = 10000  # the subscriptions taken, or the session is not up
    PUBACK_WAIT_MS = 30000  # events in flight without a PUBACK this long: the link is dead
    # Events sent and still not covered by the host's mark this long go again (a broker that
    # lost them, or the host's session with them), then after twice as long, up to the max.
    RESEND_MIN_MS = 30000
    RESEND_MAX_MS = 3600000
    ERROR_MAX = 120  # characters of an error kept, for the screen and the telemetry
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
        list, save_ids(list), save_wifi(ssid, key) (a new Wi-Fi kept, see wifi_trial), and
        slots: the firmware's slots on flash (fwslot.Slots), or None where the kiosk takes no
        update over the air; rom: the board's ROMFS partitions (rompart.RomParts), where the
        kiosk takes its updates as ROMFS images."""
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
        self.after = 0  # the highest seq published in this session
        self.backoff = self.BACKOFF_MIN_MS
        self.ids = list(hw["load_ids"]())
        self.status_due = False
        self.wake = asyncio.Event()  # set by a PUBACK or the tick: the session loop's turn
        self.reboot_at = None
        self.next_ntp = clock.ticks_ms()
        self.next_telemetry = clock.ticks_ms()
        self.up = False  # MQTT session established
        self.error = None  # why the link last failed ("Class: text"), for a technician
        self.failures = 0  # attempts and sessions that ended in an error, since boot
        self.restarts = 0  # times the app had to start run() again (counted by app.py)
        self.acked_at = 0  # ticks of the last PUBACK, or of the first event put in flight
        self.read_error = None  # what ended this session's reader
        self.marked_at = 0  # ticks of the last mark that moved, or of the last resend
        self.resend_ms = self.RESEND_MIN_MS
        self.drained = False  # every event kept has gone out in this session
        self.trial = None  # a new Wi-Fi being tried (wifi_trial.Trial), or None
        self.wifi_said = None  # how the last Wi-Fi change went, for the status
        self.log_for = None  # the id of a `logs` command to answer
        self.log_topic = self.topics.status[:-6] + "log"
        self.slots = hw.get("slots")
        # The version running: a slot's, once an update was switched to, else the factory's.
        self.fw = self.slots.version(ident["fw"]) if self.slots else ident["fw"]
        self.trying = bool(self.slots and self.slots.trying())  # until confirmed online
        self.ota = None  # the update being received (ota.Receiver), once one was sent

    # -- the supervisor ---------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                self._trial_over()
                if self.trial is not None:
                    self.trial.step(self)  # starts it, or gives it up once its time is over
                if not await self._wifi():
                    # Wi-Fi comes and goes with the shop; the broker is not to blame, so the
                    # next try is soon and the broker's backoff starts afresh.
                    self.backoff = self.BACKOFF_MIN_MS
                    await asyncio.sleep_ms(self.WIFI_RETRY_MS)
                    continue
                await self._session()
            except asyncio.CancelledError:
                # A BaseException on CPython 3.8+ and on MicroPython, but said here in so many
                # words: the one thing that may end the supervisor is being cancelled.
                self._down()
                raise
            except Exception as e:  # anything else is one failed attempt, never the end
                self._failed(e)
            self._down()
            try:
                if self.wlan.isconnected():
                    wait = self.backoff // 2 + random.getrandbits(16) % (self.backoff // 2 + 1)
                    self.backoff = min(self.backoff * 2, self.BACKOFF_MAX_MS)
                    if self.trial is not None:
                        wait = min(wait, self.WIFI_RETRY_MS)  # a trial has only a minute
                    await asyncio.sleep_ms(wait)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._failed(e)
                await asyncio.sleep_ms(self.BACKOFF_MAX_MS)

    def _failed(self, e) -> None:
        """Record why an attempt failed: class and text, for the screen and the telemetry."""
        self.failures += 1
        self.set_error(describe(e, self.ERROR_MAX))

    def set_error(self, why) -> None:
        self.error = why
        self.kiosk.link_problem(why)
        if why:
            self.log(why)

    def log(self, text) -> None:
        """A line in the kiosk's log ring, which the host reads with a `logs` command."""
        logring.add(text, self.clock.uptime_ms())

    def _down(self) -> None:
        self.up = False
        self.client.close()

    async def _wifi(self) -> bool:
        """Join the shop's Wi-Fi if not joined; False when it did not come up in time."""
        w = self.wlan
        if w.isconnected():
            return True
        w.active(True)
        w.connect(self.ident["ssid"], self.ident["key"])
        start = self.clock.ticks_ms()
        limit = self.WIFI_WAIT_MS
        if self.trial is not None and self.trial.on:
            limit = min(limit, self.trial.left_ms(self))
        while not w.isconnected():
            self._trial_over()
            if self.clock.since_ms(start) > limit:
                self.set_error("Wi-Fi: no connection to " + self.ident["ssid"])
                return False
            await asyncio.sleep_ms(100)
        return True

    async def _session(self) -> None:
        c = self.client
        await asyncio.wait_for(c.connect(), self.CONNECT_WAIT_S)
        if self.trying:
            # The broker answered: the version on trial is kept, before any message is read
            # (an update received now goes into the slot that held the old version).
            self.slots.confirm()
            self.trying = False
            self.log("ota: " + self.fw + " confirmed")
        # The reader runs from the start, so that SUBACKs (and a refusal) are read while the
        # session is set up, and its end, whatever it raised, is retrieved below.
        self.read_error = None
        reader = asyncio.create_task(self._read())
        ticker = None
        failed = None
        try:
            t = self.topics
            for topic in (t.config, t.cmd, t.cases, t.ack):
                await c.subscribe(topic, 1)
            # Optional: a broker whose ACL predates updates over the air refuses it (mosquitto
            # answers 0x80), and the kiosk must still serve its customers there.
            await c.subscribe(t.ota, 1, True)
            start = self.clock.ticks_ms()
            while c.subacks:
                if reader.done():
                    break  # its end says why, below
                if self.clock.since_ms(start) > self.SUBACK_WAIT_MS:
                    raise OSError("MQTT: no SUBACK")
                await asyncio.sleep_ms(self.TICK_MS)
            if not reader.done():
                if not self.clock.synced():
                    self._sync_time()  # so that the status already carries the time
                if self.trial is not None and self.trial.on:
                    self.trial.keep(self)  # the broker answered over the new Wi-Fi
                self.log("link: connected")
                if c.refused:
                    self.log("ota: the broker refuses " + t.ota + ": no updates over the air")
                await self._status()
                ticker = asyncio.create_task(self._tick())
                self.up = True
                # The screen's line goes; `error` stays for telemetry, which is sent only
                # now that the link is up, so that the host learns why it was down.
                self.kiosk.link_problem(None)
                self.next_telemetry = self.clock.ticks_ms()  # a sample now: why it was down
            started = self.clock.ticks_ms()
            # Everything the outbox keeps goes again, from the host's mark on: the broker
            # acknowledges before its disk has it, so it may have lost what it acknowledged.
            self.after = 0
            self.drained = False
            self.marked_at = started
            self.acked_at = started
            while c.connected and self.wlan.isconnected() and not reader.done():
                if self.trial is not None and not self.trial.on:
                    # Off to the new Wi-Fi (run() switches): offline said now and a clean
                    # goodbye, so that no last will comes after the new session's status.
                    await c.publish(self.topics.status, wire.STATUS_WILL, 1, True)
                    await c.disconnect()
                    break
                if (
                    self.drained
                    and self.outbox.depth()
                    and self.clock.since_ms(self.marked_at) > self.resend_ms
                ):
                    self.after = 0  # nothing heard of them for long: they go again
                    self.drained = False
                    self.marked_at = self.clock.ticks_ms()
                    self.resend_ms = min(self.resend_ms * 2, self.RESEND_MAX_MS)
                await self._drain()
                await self._chores()
                if self.clock.since_ms(started) > self.BACKOFF_MAX_MS:
                    self.backoff = self.BACKOFF_MIN_MS  # a session that lasted: start afresh
                if self.inflight and self.clock.since_ms(self.acked_at) > self.PUBACK_WAIT_MS:
                    raise OSError("MQTT: no PUBACK")
                # Until a PUBACK frees the window, or the next tick: a backlog drains at
                # the broker's pace, an idle link wakes only every TICK_MS.
                await self.wake.wait()
                self.wake.clear()
        except Exception as e:
            failed = e
        finally:
            if ticker is not None:
                ticker.cancel()
            c.close()  # so that the reader ends now if it has not
            await reap(reader)
        if failed is None and self.trial is not None and not self.trial.on:
            return  # left for a new Wi-Fi, not a failure
        # What ended the reader is the cause; a write that failed after it is only its echo.
        why = self.read_error
        if why is not None:
            raise why
        if failed is not None:
            raise failed
        if not self.wlan.isconnected():
            raise OSError("Wi-Fi lost")
        raise OSError("MQTT connection lost")

    async def _drain(self) -> None:
        """Publish the oldest events not yet in flight, up to the window."""
        sent = 0
        while len(self.inflight) < self.WINDOW:
            rec = self.outbox.peek(self.after)
            if rec is None:
                self.drained = True
                return
            seq, payload = rec
            if not self.inflight:
                self.acked_at = self.clock.ticks_ms()  # the PUBACK deadline starts now
            # Not under a wait_for of its own: that would put a task between publish() and
            # this line, where the PUBACK's callback could run before the id is recorded.
            # A write that hangs is the keepalive's to end (no packet out for 1.5 periods).
            pid = await self.client.publish(self.topics.event, payload, 1)
            self.inflight[pid] = seq
            self.after = seq
            sent += 1
            if sent % self.DRAIN_BATCH == 0:
                await asyncio.sleep_ms(0)  # a long backlog must not starve the buttons

    async def _read(self) -> None:
        # The reader's exception is caught in its own task: left in a task that nobody is
        # awaiting when it ends, MicroPython prints it as not retrieved.
        try:
            await self.client.run()
        except Exception as e:
            self.read_error = e
        self.wake.set()  # the session loop sees the end now, not at the next tick

    def _on_puback(self, pid: int) -> None:
        seq = self.inflight.pop(pid, None)
        if seq is not None:
            self.acked_at = self.clock.ticks_ms()
            self.outbox.sent(seq)  # kept until the host's mark covers it
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
        if self.log_for is not None:
            cid = self.log_for
            self.log_for = None
            i = self.ident
            payload = logring.payload(i["store"], i["device"], cid, clock.wall(), clock.uptime_ms())
            await self.client.publish(self.log_topic, payload, 1)
        if self.reboot_at is not None and clock.since_ms(self.reboot_at) >= 0:
            await self.client.disconnect()
            self.hw["reboot"]()
        r = self.ota
        if r is not None and r.ready() and self.kiosk.idle():
            # Staged, and nobody at the kiosk: the next boot tries the new version.
            self.ota = None
            version = r.version
            self.slots.switch(version, r.rid, r.part)
            self.log("ota: switching to " + version)
            await self.client.disconnect()
            self.hw["reboot"]()

    def _trial_over(self) -> None:
        """A version on trial that has not come online in its time goes back to the old one."""
        s = self.slots
        if self.trying and self.clock.uptime_ms() > s.TRIAL_MS:
            self.trying = False
            why = "not online within %d s" % (s.TRIAL_MS // 1000)
            s.rollback(why)
            self.log("ota: " + self.fw + " " + why + ", rolled back")
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
            self.fw,
            i["board"],
            self.clock.wall(),
            self.clock.uptime_ms(),
            self.kiosk.config_error,
            self.outbox.kept_from(),
            None if self.slots is None else i.get("takes", "mpy"),
            self._ota_state(),
        )
        if self.wifi_said is not None:
            payload = payload[:-1] + self.wifi_said  # the object's last member
        await self.client.publish(self.topics.status, payload, 1, True)

    def _ota_state(self):
        """The status's `ota` member: the update being received; else how the last one
        ended, from the flash (rolled back, or running and confirmed); else None."""
        if self.ota is not None:
            return self.ota.state()
        s = self.slots
        if s is None:
            return None
        f = s.failed()
        if f is not None:
            said = (f.get("id"), f.get("version"), "ota_failed", f.get("reason"))
        else:
            p = s.pointer()
            if p is None or p.get("trial"):
                return None
            said = (p.get("id"), p.get("version"), "done", None)
        if not (isinstance(said[0], str) and isinstance(said[1], str)):
            return None
        return wire.ota_state(said[0], said[1], said[2], None, said[3])

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
            self.error,
            self.restarts,
            self.outbox.capacity(),
        )
        await self.client.publish(self.topics.telemetry, payload, 0)

    # -- what the host sends ----------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            self._dispatch(topic, payload)
        except Exception as e:
            # Set aside, never the session's end: the PUBACK goes once this returns, and a
            # message whose handling raised (a flash that cannot be written, memory short,
            # a case nobody foresaw) would otherwise come again on every reconnect.
            self.error = describe(e, 80)
            self.log("message on " + topic + " set aside: " + self.error)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        t = self.topics
        if topic == t.config:
            if payload and self.kiosk.apply_config(payload):
                self.hw["save_config"](payload)
                self.log("config: applied")
            elif payload:
                self.log("config: refused: " + str(self.kiosk.config_error))
            self.status_due = True  # the status says whether it was applied, and why not
        elif topic == t.cmd:
            self._command(payload)
        elif topic == t.cases:
            self._cases(payload)
        elif topic == t.ack:
            self._stored(payload)
        elif topic == t.ota:
            self._update(payload)

    def _update(self, payload: bytes) -> None:
        """A firmware update's manifest or chunk: to the receiver, loaded at the first."""
        if self.ota is None:
            import ota  # loaded only for an update

            takes = self.ident.get("takes", "mpy")
            self.ota = ota.Receiver(self.slots, self.ident, takes, self.log, self.hw.get("rom"))
        if self.ota.on_message(payload):
            self.status_due = True
            self.wake.set()

    def _stored(self, payload: bytes) -> None:
        """The host's mark: every event up to it is stored, so the outbox lets them go."""
        mark = wire.parse_ack(payload)
        if mark is None:
            if payload:  # empty: a cleared retained mark, nothing said
                self.error = "ack: not a mark"
            return
        depth = self.outbox.depth()
        self.outbox.stored(mark)
        if self.outbox.depth() != depth:
            self.marked_at = self.clock.ticks_ms()
            self.resend_ms = self.RESEND_MIN_MS
        self.wake.set()

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
        elif name == "logs" and logring.is_id(cid):
            self.log_for = cid
        elif name == "wifi" and logring.is_id(cid):
            import wifi_trial  # loaded only for a change of Wi-Fi

            ssid, key = cmd.get("ssid"), cmd.get("key")
            why = wifi_trial.problem(ssid, key)
            if why is None:
                self.trial = wifi_trial.Trial(cid, ssid, key)
            else:
                self.wifi_said = wifi_trial.said(cid, "wifi_failed", ssid, why)
                self.status_due = True
        else:
            self.error = "cmd: unknown or malformed " + str(name)

    def _cases(self, payload: bytes) -> None:
        try:
            cases = json.loads(payload)["cases"] if payload else []
            self.kiosk.set_cases([(c["code"], c["deadline"]) for c in cases])
        except (ValueError, KeyError, TypeError):
            self.error = "cases: not a case list"


def describe(e, most: int) -> str:
    """An exception as "Class: text", at most `most` characters, for a technician."""
    text = str(e)
    name = type(e).__name__
    return (name + ": " + text if text else name)[:most]


async def reap(task):
    """Wait for `task` to end (cancelling it if need be) and return what it raised, or None."""
    if not task.done():
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        me = asyncio.current_task()
        c = getattr(me, "cancelling", None)  # CPython: our own cancellation is not the task's
        if c and c():
            raise
    except Exception as e:
        return e
    return None
