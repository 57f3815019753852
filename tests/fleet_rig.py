"""A provisioned fleet on a real mosquitto: certificates, provisioning, clients, the aggregator."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.broker import HOST, Mosquitto
from tests.cli_run import run_cli
from tests.virtual_kiosks import KIOSK_HOST, wait_until

WIFI = ("shop-floor", "not-the-default-key")


def kiosk_host(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`kiosk-host ARGS` in its own process, as a person types it."""
    return subprocess.run(
        [str(KIOSK_HOST), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A CA of the test's own: (certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return cert, key


def make_server_cert(folder: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """The broker's certificate for 127.0.0.1 and localhost, signed by `ca`: (cert, key)."""
    cert, key, csr = folder / "broker.pem", folder / "broker.key", folder / "broker.csr"
    ext = folder / "broker.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    )
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return cert, key


def provision(
    broker_dir: Path, out: Path, store: str, device: str, broker: str, *extra: str
) -> dict[str, Any]:
    """`kiosk-host provision` of one kiosk (in this process); its --json answer."""
    done = run_cli([
        "provision", "--store", store, "--device", device, "--board", "esp32_devkitc_ssd1306",
        "--wifi-ssid", WIFI[0], "--wifi-pass", WIFI[1], "--broker", broker,
        "--out", str(out), "--broker-dir", str(broker_dir), "--json", *extra,
    ])  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def identity(out: Path) -> dict[str, Any]:
    ident: dict[str, Any] = json.loads((out / "identity.json").read_text())
    return ident


def account_url(broker_dir: Path, broker_url: str, credentials: str) -> str:
    """The broker URL with the user name and password of a host account provisioning wrote
    into `broker_dir`/`credentials`, as an operator gives it."""
    creds = json.loads((broker_dir / credentials).read_text())
    scheme, _, where = broker_url.partition("://")
    return f"{scheme}://{creds['user']}:{creds['password']}@{where}"


def aggregator_url(broker_dir: Path, broker_url: str) -> str:
    """The broker URL with the aggregator's account (kiosk-host): for `serve` only."""
    return account_url(broker_dir, broker_url, "aggregator.json")


def fleet_url(broker_dir: Path, broker_url: str) -> str:
    """The broker URL with the fleet tools' account (kiosk-fleet): config push, commands."""
    return account_url(broker_dir, broker_url, "fleet.json")


def host_account(broker_dir: Path, name: str) -> tuple[str, str]:
    """Another aggregator's account, kiosk-host-NAME, made by `kiosk-host provision
    --aggregator --name NAME` (a test's watcher: it reads everything, as an aggregator does,
    on a session of its own): (user, password)."""
    done = kiosk_host("provision", "--aggregator", "--name", name, "--broker-dir",
                      str(broker_dir), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    creds = json.loads(Path(json.loads(done.stdout)["credentials"]).read_text())
    return creds["user"], creds["password"]


class Client:
    """A paho client with a user name, optionally over TLS; keeps what it receives, and counts
    the times the broker closed its connection. It does not reconnect: a client cut off stays
    off, so that a test sees it."""

    def __init__(
        self,
        port: int,
        client_id: str,
        user: str | None = None,
        password: str | None = None,
        ca: Path | None = None,
        clean: bool = True,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.refused: str | None = None
        self.acks: dict[int, list[int]] = {}
        self.published: set[int] = set()  # message ids the broker acknowledged (PUBACK)
        self.cut_off = 0  # connections the broker closed, not this client
        self.session_present: bool | None = None
        self._closing = False
        self._lock = threading.Lock()
        self._answered = threading.Event()
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            reconnect_on_failure=False,
        )
        if user is not None:
            c.username_pw_set(user, password)
        if ca is not None:
            c.tls_set(ca_certs=str(ca))
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c
        c.connect(HOST, port, keepalive=10)
        c.loop_start()
        wait_until(self._answered.is_set, 10, f"the broker to answer {client_id}")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any = None) -> None:  # fmt: skip
        if rc.is_failure:
            self.refused = str(rc)
            client.disconnect()
        else:
            self.session_present = bool(flags.session_present)
        self._answered.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any = None) -> None:  # fmt: skip
        if not self._closing and self.refused is None:
            with self._lock:
                self.cut_off += 1

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, rc: Any,
                    props: Any = None) -> None:  # fmt: skip
        with self._lock:
            self.published.add(mid)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, codes: Any,
                      props: Any = None) -> None:  # fmt: skip
        with self._lock:
            self.acks[mid] = [c.value for c in codes]

    def subscribe(self, *filters: str) -> list[int]:
        """Subscribe at QoS 1; the broker's granted QoS per filter (128: refused)."""
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        assert mid is not None
        wait_until(lambda: mid in self.acks, 10, f"SUBACK for {filters}")
        return self.acks[mid]

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> int:
        """Publish at QoS 1 and wait for the PUBACK; the message id."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        return info.mid

    def connected(self) -> bool:
        return self.client.is_connected()

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _, _ in self.messages]

    def close(self) -> None:
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()


class Serve:
    """`kiosk-host serve` in its own process; stopped with SIGTERM, as a service manager does."""

    def __init__(self, broker: str, db: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [str(KIOSK_HOST), "serve", "--broker", broker, "--db", str(db), *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> str:
        """Stop it; what it wrote on standard output and error."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
        return out + err


def devices(db: Path, *extra: str) -> list[dict[str, Any]]:
    """`kiosk-host devices --json`."""
    done = kiosk_host("devices", "--db", str(db), "--json", *extra)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def device(db: Path, store: str, name: str) -> dict[str, Any]:
    """The kiosk's row of `devices`, {} until the aggregator has heard of it (until then
    `devices --store` refuses the store as a likely typo)."""
    found = [d for d in devices(db) if (d["store"], d["device"]) == (store, name)]
    return found[0] if found else {}


def broker_with(folder: Path, broker_dir: Path, tls: Sequence[Path] | None = None) -> Mosquitto:
    """A mosquitto that lets in exactly whom provisioning wrote into `broker_dir`."""
    pair = (tls[0], tls[1]) if tls else None
    return Mosquitto(folder, auth_dir=broker_dir, tls=pair)


# -- a store's own broker, as `kiosk-host broker init` sets it up ----------------------------


@contextlib.contextmanager
def open_folder(prefix: str) -> Iterator[Path]:
    """A new folder that every user may enter, as a store machine's broker folder is: run by
    root, mosquitto becomes the `mosquitto` user, who cannot enter pytest's private
    temporary folders. A broker left running in it is stopped, and the folder removed."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for pid_file in folder.glob("**/state/mosquitto.pid"):
            stop_broker(pid_file)
        shutil.rmtree(folder, ignore_errors=True)


def broker_pid(pid_file: Path) -> int | None:
    """The pid of the mosquitto that wrote `pid_file`, while it runs."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _running(pid, "mosquitto") else None


def _running(pid: int, name: str | None = None) -> bool:
    """Whether process `pid` (named `name`, when given) runs: neither gone nor a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm, _, rest = stat.partition("(")[2].rpartition(")")
    return (name is None or comm == name) and rest.split()[:1] != ["Z"]


def stop_broker(pid_file: Path, timeout: float = 10) -> None:
    """SIGTERM to the mosquitto of `pid_file`, SIGKILL if it is still there after `timeout`."""
    pid = broker_pid(pid_file)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
