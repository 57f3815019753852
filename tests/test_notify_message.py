"""An alert written for a person: every type in English, German and Dutch, every kiosk
language with texts of its own, French typography, local times, the link."""

from __future__ import annotations

import json
import re
import runpy
import string
import unicodedata
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kiosk_host.errors import UserError
from kiosk_host.notify.catalogue import CASE_TYPES, CATALOGUES, KIOSK_TYPES, TYPES
from kiosk_host.notify.message import language_of, render
from kiosk_host.rules.recovery import Alert, Case, case_alerts, near_alerts, praise_alert
from kiosk_host.rules.stores import LANGUAGES, StoreConfig
from kiosk_host.wire.contract import Contract, Message
from tests.vm.mpvm import FIRMWARE_DIR

BERLIN = ZoneInfo("Europe/Berlin")
T0 = int(datetime(2026, 3, 3, 13, 5, tzinfo=UTC).timestamp())  # Tue 3 Mar 14:05 in Berlin
DAY = 86_400


def payload(type_: str, **extra: Any) -> dict[str, Any]:
    """An alert payload of `type_` as the host publishes it."""
    about_case = type_ in CASE_TYPES
    device = "till-kiosk" if about_case or type_ in KIOSK_TYPES else None
    alert = Alert(
        type_,  # any type: also one the catalogue does not know
        "warning",
        "store-12",
        "A7K36" if about_case else None,
        device,
        T0 + DAY if about_case else None,
        f"the host's own words about {type_}",
        T0,
    )
    return alert.to_payload() | extra


@pytest.mark.parametrize("type_", TYPES)
def test_every_type_has_its_own_english_german_and_dutch_texts(type_: str) -> None:
    english = render(payload(type_, station="till-1"), "en", BERLIN, "https://k.example")
    german = render(payload(type_, station="till-1"), "de", BERLIN, "https://k.example")
    dutch = render(payload(type_, station="till-1"), "nl", BERLIN, "https://k.example")
    other = render(payload("something_new"), "en", BERLIN, None)
    for r, lang in ((english, "en"), (german, "de"), (dutch, "nl")):
        assert r.language == lang
        assert r.subject.startswith("[store-12] ")
        assert r.headline != other.headline
        for part in (r.subject, r.headline, r.advice, r.text, r.html):
            assert "{" not in part and "}" not in part.replace("{#", "")
        if type_ in CASE_TYPES:
            # The case code: in the subject, the headline, and set apart in both bodies.
            assert "A7K36" in r.subject and "A7K36" in r.headline
            assert re.search(r"^(Case code|Fallcode|Zaakcode): +A7K36$", r.text, re.M)
            assert ">A7K36</span>" in r.html
            assert "till-1" in r.text
        if type_ in KIOSK_TYPES:
            assert "till-kiosk" in r.subject
    assert english.subject != german.subject and english.advice != german.advice
    if type_ != "kiosk_offline":  # "Kiosk till-kiosk is offline" in Dutch as in English
        assert dutch.subject not in (english.subject, german.subject)
    assert dutch.advice not in (english.advice, german.advice)
    assert dutch.text.split("\n", 1)[0] == dutch.headline
    assert english.text.split("\n", 1)[0] == english.headline


def test_each_catalogue_has_every_text_and_each_formats() -> None:
    keys = set(CATALOGUES["en"])
    fields = {"store", "case", "station", "device", "deadline", "left", "where", "type"}
    dates = {"weekday", "day", "month", "time"}
    for lang, words in CATALOGUES.items():
        assert set(words) == keys, lang
        assert len(words["days"].split()) == 7 and len(words["months"].split()) == 12, lang
        for key, pattern in words.items():
            used = {name for _, name, _, _ in string.Formatter().parse(pattern) if name}
            assert used <= (dates if key == "date" else fields), (lang, key, used)
    assert set(CATALOGUES) == set(LANGUAGES)  # every language a store may have


def _as_the_kiosk_spells_it(text: str) -> str:
    """`text` in the kiosk's ASCII-only font (firmware/texts_*.py): umlauts as ae, oe, ue, no
    accents, no inverted marks, plain spaces."""
    for letter, spelt in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("\u202f", " ")):
        text = text.replace(letter, spelt)
    bare = unicodedata.normalize("NFKD", text.replace("¿", "").replace("¡", ""))
    return "".join(c for c in bare if not unicodedata.combining(c))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_kiosks_own_words_are_quoted_as_the_kiosk_shows_them(lang: str) -> None:
    kiosk = runpy.run_path(str(FIRMWARE_DIR / f"texts_{lang}.py"))
    words = CATALOGUES[lang]
    assert kiosk["MAKE_IT_RIGHT"] in _as_the_kiosk_spells_it(words["case_opened.advice"])
    for button in ("WOW", "FIXED"):
        assert kiosk[button] in _as_the_kiosk_spells_it(words["deadline_near.advice"])
    if lang in ("en", "nl"):  # the kiosk spells these in full: word for word
        assert f"“{kiosk['MAKE_IT_RIGHT']}”" in words["case_opened.advice"]
        assert f"“{kiosk['WOW']}”" in words["deadline_near.advice"]


def test_french_puts_a_narrow_no_break_space_before_its_signs_and_only_french() -> None:
    for key, pattern in CATALOGUES["fr"].items():
        for before, sign in re.findall(r"(.)([:;!?»])", pattern):
            assert before == "\u202f", (key, sign)
        assert all(after == "\u202f" for after in re.findall(r"«(.)", pattern)), key
    french = render(payload("case_opened", station="till-1"), "fr", BERLIN, None)
    assert "till-1\u202f: à régler avant mer. 4 mars 14:05 (CET)" in french.subject
    assert "«\u202fPouvons-nous arranger cela\u202f?\u202f»" in french.html
    for lang, words in CATALOGUES.items():
        if lang != "fr":
            assert not any("\u202f" in pattern for pattern in words.values()), lang


@pytest.mark.parametrize(
    ("code", "used"),
    [("de", "de"), ("de-AT", "de"), ("DE_ch", "de"), ("fr", "fr"), ("es-MX", "es"),
     ("en-GB", "en"), ("nl", "nl"), ("nl-BE", "nl"), ("NL_nl", "nl"), ("it", "en"), ("", "en"),
     ("klingon", "en")],
)  # fmt: skip
def test_a_language_tag_picks_its_catalogue_else_english(code: str, used: str) -> None:
    assert language_of(code) == used
    assert render(payload("breached"), code, UTC, None).language == used


def test_the_deadline_is_in_the_stores_local_time_on_either_side_of_dst() -> None:
    winter = render(payload("case_opened"), "en", BERLIN, None)
    assert "Wed 4 Mar 14:05 (CET)" in winter.subject  # 13:05 UTC
    assert ("Deadline", "Wed 4 Mar 14:05 (CET)") in winter.facts
    assert ("Raised", "Tue 3 Mar 14:05 (CET)") in winter.facts
    summer = dict(payload("case_opened"), deadline=T0 + 120 * DAY)  # 1 Jul, after the change
    german = render(summer, "de", BERLIN, None)
    assert "Mi, 1. Juli 15:05 (CEST)" in german.subject  # 13:05 UTC in Berlin's summer
    dutch = render(summer, "nl", ZoneInfo("Europe/Amsterdam"), None)
    assert "vóór wo 1 jul 15:05 (CEST)" in dutch.subject
    assert ("Gemeld", "di 3 mrt 14:05 (CET)") in dutch.facts
    assert "13:05 (UTC)" in render(summer, "en", UTC, None).subject


def test_deadline_near_says_how_long_is_left() -> None:
    near = dict(payload("deadline_near"), ts=T0 + DAY - (3 * 3600 + 20 * 60))
    assert "3 h 20 min left" in render(near, "en", BERLIN, None).subject
    assert "noch 3 h 20 min" in render(near, "de", BERLIN, None).subject
    assert "nog 3 h 20 min, tot " in render(near, "nl", BERLIN, None).subject
    last = dict(payload("deadline_near"), ts=T0 + DAY - 10)
    assert "1 min left" in render(last, "en", BERLIN, None).subject


def test_the_link_goes_to_the_part_of_the_stores_page_the_alert_is_about() -> None:
    base = "https://kiosk.example.com/shop/"
    assert render(payload("breached"), "en", UTC, base).url == (
        "https://kiosk.example.com/shop/stores/store-12#cases-card"
    )
    assert render(payload("kiosk_offline"), "en", UTC, base).url.endswith("#devices")
    assert render(payload("praise"), "en", UTC, base).url.endswith("#alerts-card")
    plain = render(payload("breached"), "de", UTC, base)
    assert plain.url is not None and plain.url in plain.text and f'href="{plain.url}"' in plain.html
    assert "Dashboard der Filiale öffnen" in plain.html
    dutch = render(payload("breached"), "nl", UTC, base)
    assert dutch.url == plain.url and "Dashboard van de winkel openen" in dutch.html
    without = render(payload("breached"), "en", UTC, None)
    assert without.url is None and "http" not in without.text and "href" not in without.html
    for bad in ("kiosk.example.com", "ftp://kiosk.example.com", "https://k.example/?a=1"):
        with pytest.raises(UserError, match="dashboard URL"):
            render(payload("breached"), "en", UTC, bad)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def test_the_html_escapes_what_the_alert_carries() -> None:
    hostile = payload("seq_regression", text='<script>alert("x")</script> & <b>bold</b>')
    hostile["device"] = "till-kiosk"
    r = render(hostile, "en", UTC, None)
    parser = _Text()
    parser.feed(r.html)
    assert "script" not in parser.tags and "b" not in parser.tags
    assert '<script>alert("x")</script> & <b>bold</b>' in "".join(parser.data)
    assert "<script>" in r.text  # the plain text is plain


def test_the_hosts_real_alerts_render_and_match_the_contract(contract: Contract) -> None:
    cfg = StoreConfig(tz=BERLIN)
    case = Case("store-12", "A7K36", "till-kiosk", "till-1", 7, T0, T0 + DAY)
    raised = [
        *case_alerts(cfg, None, case, T0),
        *near_alerts(cfg, case, T0 + DAY - 3600, already_sent=False),
        *case_alerts(cfg, case, Case(**{**case.__dict__, "state": "breached"}), T0 + DAY),
    ]
    praise = praise_alert(cfg, [4] * 10, T0, store="store-12")
    assert praise is not None
    raised.append(praise)
    assert {"case_opened", "deadline_near", "breached", "praise"} <= {a.type for a in raised}
    for alert in raised:
        published = alert.to_payload()
        checked = contract.validate("kiosk/v1/store-12/alerts", json.dumps(published).encode())
        assert isinstance(checked, Message), checked
        r = render({**published, "station": "till-1"}, "de", BERLIN, None)
        assert r.details == alert.text and alert.text in r.text
        if alert.case:
            assert "A7K36" in r.subject and "Station:  till-1" in r.text


def test_a_payload_without_what_the_message_needs_is_refused() -> None:
    with pytest.raises(ValueError, match="no store"):
        render({**payload("praise"), "store": None}, "en", UTC, None)
    with pytest.raises(ValueError, match="no case or no deadline"):
        render({**payload("breached"), "case": None}, "en", UTC, None)
    with pytest.raises(ValueError, match="no time"):
        render({k: v for k, v in payload("praise").items() if k != "ts"}, "en", UTC, None)
