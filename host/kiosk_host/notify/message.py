"""What one alert says to a person: subject, plain text and HTML, in the store's language.

`render` takes an alert as published on kiosk/v1/{store}/alerts (mqtt_schemas/schemas/
alert.json: `type`, `severity`, `store`, `ts`, `case`, `device`, `deadline`, `text`, `id`) and
writes it for a store manager: what happened (the headline), the case code set apart, the
store, the station or kiosk, the deadline in the store's local time, what to do next, the
host's own text as the details, and a link to the store's page on the dashboard when its
base URL is given. The texts live in `catalogue.py`; the bodies are the Jinja templates in
`templates/` (HTML autoescaped). The payload may carry one key more than the contract's: a
case's `station`, which the alert itself names only in its text; without it the kiosk
stands for the station.

Languages are catalogue codes (`en`, `de`, `fr`, `es`, `nl`); a tag such as `de-AT` or
`de_CH` uses its language, and anything else falls back to English.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

import jinja2

from kiosk_host.errors import UserError
from kiosk_host.notify.catalogue import (
    CASE_TYPES,
    CATALOGUES,
    DEFAULT_LANGUAGE,
    KIOSK_TYPES,
    TYPES,
)

_TEMPLATES = Path(__file__).resolve().parent / "templates"
# Where on the store's page each kind of alert is looked after (dashboard/templates/store.html).
_ANCHOR: Final = {"case": "cases-card", "kiosk": "devices", "store": "alerts-card"}
_COLOUR: Final = {"info": "#1b6e3a", "warning": "#8a5a00", "critical": "#b00020"}
# Runs of whitespace a subject is kept on one line by; not the no-break spaces French puts
# before its colons, which str.split() would take for whitespace too.
_LINE_BREAKS: Final = re.compile(r"[^\S\u00a0\u202f]+")


@dataclass(frozen=True)
class Rendered:
    """One alert written for people, in one language: the e-mail's `subject`, `text` and
    `html`, and the pieces a chat message is built from."""

    type: str
    severity: str  # info, warning or critical
    language: str  # the catalogue used: the e-mail's Content-Language
    store: str
    subject: str  # one line
    headline: str  # what happened, in one line
    case: str | None  # the case code, to show prominently
    facts: tuple[tuple[str, str], ...]  # (label, value): store, station, kiosk, deadline, ...
    advice: str  # what to do next
    details: str | None  # the host's own text of the alert
    url: str | None  # the store's page on the dashboard
    labels: Mapping[str, str]  # case, severity, details, next, link, footer: in the language
    text: str  # the plain-text body
    html: str  # the HTML body


def language_of(code: str) -> str:
    """The catalogue for a language code or tag ("de", "de-AT", "DE_ch"); English otherwise."""
    primary = code.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in CATALOGUES else DEFAULT_LANGUAGE


def render(
    alert_payload: Mapping[str, Any], language: str, tz: tzinfo, dashboard_url: str | None
) -> Rendered:
    """The alert written for a person in `language`, times in the store's zone `tz`, linking
    to the store's page under `dashboard_url` (the dashboard's base URL) when given.

    ValueError for a payload without its `type`, `store` or `ts`, or a case alert without its
    case and deadline (a defect of the caller); UserError for a dashboard URL that is not
    http(s)://HOST[/PATH]."""
    lang = language_of(language)
    words = CATALOGUES[lang]
    type_ = _text_field(alert_payload, "type")
    store = _text_field(alert_payload, "store")
    at = alert_payload.get("ts")
    if not isinstance(at, int):
        raise ValueError(f"alert {alert_payload.get('id')!r}: no time (ts)")
    case, device = alert_payload.get("case"), alert_payload.get("device")
    station, deadline = alert_payload.get("station"), alert_payload.get("deadline")
    if type_ in CASE_TYPES and (not case or not isinstance(deadline, int)):
        raise ValueError(f"{type_} alert {alert_payload.get('id')!r}: no case or no deadline")
    kind = type_ if type_ in TYPES else "other"
    severity = str(alert_payload.get("severity") or "info")
    due = _local(words, deadline, tz) if isinstance(deadline, int) else ""
    values = {
        "store": store,
        "case": case or "",
        "station": station or device or "",
        "device": device or "",
        "deadline": due,
        "left": _span(deadline - at) if isinstance(deadline, int) else "",
        "where": words["where.kiosk"].format(device=device) if device else words["where.store"],
        "type": type_,
    }
    facts = [(words["label.store"], store)]
    if station:
        facts.append((words["label.station"], str(station)))
    if device:
        facts.append((words["label.kiosk"], str(device)))
    if due:
        facts.append((words["label.deadline"], due))
    facts.append((words["label.raised"], _local(words, at, tz)))
    labels = {key: words[f"label.{key}"] for key in ("case", "severity", "details", "next")}
    labels |= {
        "link": words["link"],
        "footer": words["footer"],
        "severity_value": words.get(f"severity.{severity}", severity),
    }
    text = alert_payload.get("text")
    subject = _LINE_BREAKS.sub(" ", words[f"{kind}.subject"].format_map(values)).strip()
    if not isinstance(text, str) or not text or text in subject:
        text = None  # nothing the subject does not say already (a text in this language)
    draft = Rendered(
        type=type_,
        severity=severity,
        language=lang,
        store=store,
        subject=subject,
        headline=words[f"{kind}.headline"].format_map(values),
        case=case or None,
        facts=tuple(facts),
        advice=words[f"{kind}.advice"].format_map(values),
        details=text,
        url=_page(dashboard_url, store, type_) if dashboard_url else None,
        labels=labels,
        text="",
        html="",
    )
    context = {f.name: getattr(draft, f.name) for f in fields(draft)}
    context["colour"] = _COLOUR.get(severity, _COLOUR["info"])
    return replace(
        draft,
        text=_ENV.get_template("alert.txt").render(context),
        html=_ENV.get_template("alert.html").render(context),
    )


def _text_field(alert: Mapping[str, Any], key: str) -> str:
    value = alert.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"alert {alert.get('id')!r}: no {key}")
    return value


def _local(words: Mapping[str, str], unix_s: int, tz: tzinfo) -> str:
    """A time as the store's clock shows it, in the language: "Tue 4 Mar 14:05 (CET)"."""
    t = datetime.fromtimestamp(unix_s, tz)
    shown = words["date"].format(
        weekday=words["days"].split()[t.weekday()],
        day=t.day,
        month=words["months"].split()[t.month - 1],
        time=f"{t:%H:%M}",
    )
    return f"{shown} ({t.tzname() or 'UTC'})"


def _span(seconds: int) -> str:
    """Time left, to the minute rounded up, so that "0 min" never shows: "3 h 20 min"."""
    minutes = max(1, -(-seconds // 60))
    h, m = divmod(minutes, 60)
    return " ".join(part for part in (f"{h} h" if h else "", f"{m} min" if m else "") if part)


def _page(base: str, store: str, type_: str) -> str:
    """The store's page on the dashboard, at the part of it the alert is about."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UserError(
            f"dashboard URL {base!r}: use http(s)://HOST[:PORT][/PATH], the address the "
            "managers open the dashboard at"
        )
    where = "case" if type_ in CASE_TYPES else "kiosk" if type_ in KIOSK_TYPES else "store"
    return f"{base.rstrip('/')}/stores/{quote(store, safe='')}#{_ANCHOR[where]}"


def mail_templates(folder: Path) -> jinja2.Environment:
    """The templates of e-mails in `folder`: HTML escaped, a missing value an error (never an
    empty gap in a message), blocks without the blank lines their tags leave."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


_ENV = mail_templates(_TEMPLATES)
