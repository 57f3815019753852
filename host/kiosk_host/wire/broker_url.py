"""A broker URL, mqtt[s]://[USER:PASSWORD@]HOST[:PORT], made into a paho client's settings."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

import paho.mqtt.client as paho

from kiosk_host.errors import UserError


class BrokerUrlError(UserError, ValueError):
    """A broker URL, or a CA certificate with it, that cannot be used as given."""


def default_port(scheme: str) -> int:
    """MQTT's registered port: 8883 over TLS, else 1883."""
    return 8883 if scheme == "mqtts" else 1883


def client_options(client: paho.Client, broker: str, ca: str | None = None) -> tuple[str, int]:
    """Set a paho client's account and TLS from a broker URL (TLS trusting the CA certificate
    `ca`, else the system's); returns the host and port to connect to."""
    u = urlparse(broker)
    if u.username:
        password = unquote(u.password) if u.password is not None else None
        client.username_pw_set(unquote(u.username), password)
    if u.scheme == "mqtts":
        client.tls_set(ca_certs=ca)  # the broker's name is checked against its certificate
    elif ca is not None:
        raise BrokerUrlError("--ca is for a TLS broker: give --broker mqtts://HOST:PORT")
    return u.hostname or "127.0.0.1", u.port or default_port(u.scheme)


def public_url(broker: str) -> str:
    """The broker URL without its user name and password, for messages."""
    u = urlparse(broker)
    return f"{u.scheme}://{u.hostname}:{u.port or default_port(u.scheme)}"
