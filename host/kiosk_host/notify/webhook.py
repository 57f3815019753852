"""Alerts to webhooks: a JSON POST in the receiver's format, signed, and what its answer means.

Formats (`FORMATS`):

* `plain`: the alert's own fields (mqtt_schemas/schemas/alert.json, as given) and `message`,
  the rendered text: `language`, `subject`, `headline`, `text` and `url` (None without a
  dashboard URL).
* `slack`: a Slack incoming-webhook message: `text` (the notification's fallback) and
  `blocks`, a header, the case code and facts as a section, what to do, the host's details
  as context, and a button to the dashboard (https://docs.slack.dev/messaging/sending-
  messages-using-incoming-webhooks; `&`, `<` and `>` are escaped as Slack's formatting
  rules ask, https://docs.slack.dev/messaging/formatting-message-text#escaping).
* `teams`: a Microsoft Teams message with one Adaptive Card attachment (`type` "message",
  `attachments[0].contentType` "application/vnd.microsoft.card.adaptive", the card in
  `content`, version 1.2), the shape both a channel's incoming webhook and the Workflows app's
  "Send webhook alerts to a channel" take ("Send adaptive cards using an incoming webhook",
  https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/
  connectors-using#send-adaptive-cards-using-an-incoming-webhook).

Every request carries `Idempotency-Key: DELIVERY_ID`, the same on each attempt at the same
delivery, so that a receiver drops a copy. With a secret, it is signed:
`Kiosk-Signature: t=UNIX_S,v1=HEX`, HEX the HMAC-SHA256 with the secret of
`f"{t}.".encode() + body`; `verify` checks it as a receiver does (docs/alerts.md).

The answer: 2xx is delivered; 408, 429, 5xx, a refused connection and a timeout are worth
another try (after Retry-After when the receiver sends one); a 3xx or any other 4xx is not.
A webhook URL is a secret of its own (whoever has a Slack or Teams one may post to the
channel), so failures name only its scheme and host.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import ssl
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from kiosk_host.errors import UserError
from kiosk_host.notify.delivery import DeliveryFailed, check_delivery_id
from kiosk_host.notify.message import Rendered

FORMATS: Final = ("plain", "slack", "teams")
SIGNATURE_HEADER: Final = "Kiosk-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
TOLERANCE_S: Final = 300
_RETRY_STATUS: Final = frozenset({408, 429})
_TEAMS_COLOUR: Final = {"info": "Good", "warning": "Warning", "critical": "Attention"}
_SLACK_HEADER_MAX: Final = 150  # Slack: a header block's text, at most 150 characters


class WebhookSetupError(UserError, ValueError):
    """A webhook URL or format that cannot work; the message says what to write."""


def check_target(url: str, fmt: str) -> None:
    """WebhookSetupError unless `url` is http(s)://HOST[...] and `fmt` one of FORMATS."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookSetupError(
            f"webhook URL {_origin(url)}: use https://HOST/PATH (http:// only on a trusted "
            "network: the body is signed, not encrypted)"
        )
    if fmt not in FORMATS:
        raise WebhookSetupError(f"webhook format {fmt!r}: use one of {', '.join(FORMATS)}")


def body_of(fmt: str, rendered: Rendered, payload: Mapping[str, Any]) -> bytes:
    """The JSON body in format `fmt`, as UTF-8 bytes: exactly the bytes that are signed."""
    if fmt == "slack":
        doc = _slack(rendered)
    elif fmt == "teams":
        doc = _teams(rendered)
    else:
        doc = {**payload, "message": _plain(rendered)}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(secret: bytes, body: bytes, t: int) -> str:
    """The Kiosk-Signature header's value for `body` sent at `t` (Unix s)."""
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: bytes, header: str, body: bytes, now: float, tolerance_s: int = TOLERANCE_S
) -> bool:
    """Whether `header` (a Kiosk-Signature) signs `body`, the raw bytes received, with
    `secret`, at a time within `tolerance_s` of `now`: the recipe in docs/alerts.md. Several
    `v1=` (a receiver between two secrets) pass when one matches; a malformed header fails."""
    pairs = [item.strip().partition("=") for item in header.split(",")]
    stamps = [value for key, _, value in pairs if key == "t"]
    if len(stamps) != 1 or not stamps[0].isdecimal() or abs(now - int(stamps[0])) > tolerance_s:
        return False
    expected = hmac.new(secret, stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(
        hmac.compare_digest(value.encode(), expected.encode())
        for key, _, value in pairs
        if key == "v1"
    )


def post_webhook(
    url: str,
    fmt: str,
    secret: bytes | None,
    rendered: Rendered,
    payload: Mapping[str, Any],
    delivery_id: str,
    now: int,
    *,
    ca: Path | None = None,
    timeout_s: float = 10.0,
    client: httpx.Client | None = None,
) -> None:
    """POST one alert to `url` in format `fmt`, signed with `secret` at `now` (Unix s) when
    given, keyed by `delivery_id`. `client` (with its own TLS settings) is reused when given;
    otherwise a client of this call trusts `ca` (PEM) or the system's CAs. Returns when the
    receiver answered 2xx; DeliveryFailed otherwise. WebhookSetupError for a URL or format
    that cannot work."""
    check_target(url, fmt)
    body = body_of(fmt, rendered, payload)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "kiosk-host",
        IDEMPOTENCY_HEADER: check_delivery_id(delivery_id),
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, body, now)
    where = _origin(url)
    try:
        if client is not None:
            answer = client.post(url, content=body, headers=headers, timeout=timeout_s)
        else:
            with httpx.Client(verify=_tls(str(ca) if ca else None), timeout=timeout_s) as own:
                answer = own.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        raise DeliveryFailed(f"{where} did not answer in time", retry=True) from None
    except httpx.TransportError as why:
        if _bad_certificate(why):
            raise DeliveryFailed(
                f"the certificate of {where} does not verify: a setup mistake, check the URL's "
                "host and the CA file",
                retry=False,
                misconfigured=True,
            ) from None
        raise DeliveryFailed(f"cannot reach {where}: {_said(why)}", retry=True) from None
    _judge(answer, where, fmt, now)


@functools.cache
def _tls(ca: str | None) -> ssl.SSLContext:
    """The TLS settings trusting `ca` (else the system's CAs), read once per process: loading
    a CA bundle takes longer than a post."""
    return ssl.create_default_context(cafile=ca)


def _judge(answer: httpx.Response, where: str, fmt: str, now: int) -> None:
    status = answer.status_code
    said = f"{where} answered {status} {answer.reason_phrase}{_excerpt(answer)}"
    if 200 <= status < 300:
        # Teams' older connectors answer a throttled post with 200 and this text in the body.
        if fmt == "teams" and "HTTP error 429" in answer.text:
            raise DeliveryFailed(f"{where} throttled the post (HTTP error 429)", retry=True)
        return
    if status in _RETRY_STATUS or status >= 500:
        after = _retry_after(answer.headers.get("Retry-After"), now)
        raise DeliveryFailed(said, retry=True, retry_after_s=after)
    if 300 <= status < 400:
        raise DeliveryFailed(
            f"{said}: the webhook moved; set its new URL", retry=False, misconfigured=True
        )
    raise DeliveryFailed(said, retry=False, misconfigured=status in (401, 403, 404, 410))


def _retry_after(value: str | None, now: int) -> int | None:
    """Retry-After in seconds from `now`: a number of seconds, or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdecimal():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int(when.timestamp()) - now)


def _plain(r: Rendered) -> dict[str, Any]:
    return {
        "language": r.language,
        "subject": r.subject,
        "headline": r.headline,
        "text": r.text,
        "url": r.url,
    }


def _slack(r: Rendered) -> dict[str, Any]:
    lines = [f"*{_esc(r.labels['case'])}:* `{_esc(r.case)}`"] if r.case else []
    lines += [f"*{_esc(label)}:* {_esc(value)}" for label, value in r.facts]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(r.headline)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*{_esc(r.labels['next'])}:* {_esc(r.advice)}"},
        },
    ]
    if r.details:
        details = f"{_esc(r.labels['details'])}: {_esc(r.details)}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": details}]})
    if r.url:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": r.labels["link"]},
            "url": r.url,
        }
        blocks.append({"type": "actions", "elements": [button]})
    return {"text": _esc(r.subject), "blocks": blocks}


def _teams(r: Rendered) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": r.labels["severity_value"],
            "weight": "Bolder",
            "size": "Small",
            "color": _TEAMS_COLOUR.get(r.severity, "Default"),
        },
        {
            "type": "TextBlock",
            "text": r.headline,
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        },
    ]
    if r.case:
        body.append({"type": "TextBlock", "text": r.labels["case"], "isSubtle": True})
        body.append(
            {
                "type": "TextBlock",
                "text": r.case,
                "size": "ExtraLarge",
                "weight": "Bolder",
                "fontType": "Monospace",
                "spacing": "None",
            }
        )
    body.append({"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in r.facts]})
    body.append({"type": "TextBlock", "text": f"{r.labels['next']}: {r.advice}", "wrap": True})
    if r.details:
        text = f"{r.labels['details']}: {r.details}"
        body.append({"type": "TextBlock", "text": text, "wrap": True, "isSubtle": True})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.2",
        "lang": r.language,
        "fallbackText": r.subject,
        "body": body,
    }
    if r.url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": r.labels["link"], "url": r.url}]
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}


def _esc(text: str | None) -> str:
    """Text for Slack's mrkdwn: its control characters escaped, so that `<!channel>` in an
    alert's text is shown, not obeyed."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str) -> str:
    return text if len(text) <= _SLACK_HEADER_MAX else text[: _SLACK_HEADER_MAX - 1] + "…"


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL: its path and query may hold the webhook's secret."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"


def _bad_certificate(why: BaseException) -> bool:
    seen: BaseException | None = why
    for _ in range(10):
        if seen is None or isinstance(seen, ssl.SSLCertVerificationError):
            break
        seen = seen.__cause__ or seen.__context__
    return isinstance(seen, ssl.SSLCertVerificationError)


def _said(why: BaseException) -> str:
    """The innermost cause in words ("Connection refused"), else the error itself."""
    root = why
    for _ in range(10):  # a chain is short; the bound only guards against a cycle
        below = root.__cause__ or root.__context__
        if below is None:
            break
        root = below
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    return str(why) or type(why).__name__


def _excerpt(answer: httpx.Response) -> str:
    """The start of the answer's text, for the person reading the failure."""
    text = " ".join(answer.text.split())[:200]
    return f": {text}" if text else ""
