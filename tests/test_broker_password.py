"""The broker password comes from a file, the environment or provision's account file, never
from the command line; what a command is given is merged into the URL in its own memory."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from kiosk_host.cli.common import PASSWORD_ENV, broker_url
from kiosk_host.errors import UserError


def password(url: str) -> str | None:
    return urlparse(url).password


def test_the_password_file_wins_then_the_environment_then_the_account_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "password"
    given.write_text("from-the-file\nignored\n")
    accounts = tmp_path / "aggregator.json"
    accounts.write_text(json.dumps({"user": "kiosk-host", "password": "from-the-account"}))
    url = "mqtt://kiosk-host@127.0.0.1:1883"
    monkeypatch.setenv(PASSWORD_ENV, "from-the-environment")
    assert password(broker_url(url, str(given), accounts)) == "from-the-file"
    assert password(broker_url(url, None, accounts)) == "from-the-environment"
    monkeypatch.delenv(PASSWORD_ENV)
    assert password(broker_url(url, None, accounts)) == "from-the-account"
    other = "mqtt://someone-else@127.0.0.1:1883"
    assert password(broker_url(other, None, accounts)) is None  # another user's: not used
    odd = tmp_path / "odd"
    odd.write_text("p@ss:w/rd%\n")
    merged = broker_url(url, str(odd), None)
    assert urlparse(merged).hostname == "127.0.0.1" and urlparse(merged).port == 1883
    assert password(merged) is not None and "p%40ss%3Aw%2Frd%25" in merged


@pytest.mark.parametrize(
    "url",
    ["notaurl", "http://example.com", "mqtt://", "mqtt://host:99999", "mqtt://host:port"],
)
def test_what_is_no_broker_address_is_refused_without_showing_a_password(url: str) -> None:
    with pytest.raises(UserError, match="is not a broker address"):
        broker_url(url, None, None)
    with pytest.raises(UserError) as refused:
        broker_url("ftp://user:hunter2@host", None, None)
    assert "hunter2" not in str(refused.value)


def test_an_empty_or_missing_password_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(UserError, match="first line is empty"):
        broker_url("mqtt://u@h:1", str(empty), None)
    with pytest.raises(UserError, match="No such file"):
        broker_url("mqtt://u@h:1", str(tmp_path / "missing"), None)
