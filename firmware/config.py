"""The kiosk's settings: checked key by key, kept on flash, the last good one stays in force.

The checks mirror mqtt_schemas/schemas/config.json, so that a config the host could publish
by mistake is refused on the kiosk with the key and what was expected, in words that fit on
its screen.
"""

import json
import os

from wire import is_identifier

LANGUAGES = ("en", "de", "fr", "es", "nl")
# (key, lowest, highest) of every integer setting
_INTS = (
    ("scale", 3, 5),
    ("low_threshold", 1, 4),
    ("response_interval_s", 0, 600),
    ("follow_up_timeout_s", 5, 120),
    ("code_display_s", 5, 300),
    ("confirm_timeout_s", 5, 300),
    ("telemetry_interval_s", 10, 3600),
)
_KEYS = ("v", "prompt", "language", "station", "staff") + tuple(k for k, _, _ in _INTS)
STAFF_MAX = 32
NAME_MAX = 24
PROMPT_MAX = 80


def _text(value, most: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= most


def problem(d) -> str | None:
    """What is wrong with the settings `d` (a parsed JSON value), or None when nothing is."""
    if not isinstance(d, dict):
        return "config: expected a JSON object"
    for key in _KEYS:
        if key not in d:
            return key + ": missing"
    for key in d:
        if key not in _KEYS:
            return key + ": unknown setting"
    if d["v"] != 1 or type(d["v"]) is not int:
        return "v: expected 1"
    for key, low, high in _INTS:
        value = d[key]
        if type(value) is not int or not low <= value <= high:
            return "%s: expected %d..%d, got %s" % (key, low, high, json.dumps(value))
    if d["low_threshold"] >= d["scale"]:
        return "low_threshold: expected below scale %d" % d["scale"]
    if not _text(d["prompt"], PROMPT_MAX):
        return "prompt: expected 1..%d characters" % PROMPT_MAX
    if d["language"] not in LANGUAGES:
        return "language: expected one of " + " ".join(LANGUAGES)
    if not is_identifier(d["station"]):
        return "station: expected an id like till-1"
    staff = d["staff"]
    if not isinstance(staff, list) or len(staff) > STAFF_MAX:
        return "staff: expected a list of at most %d" % STAFF_MAX
    for i, person in enumerate(staff):
        where = "staff[%d]" % i
        if not isinstance(person, dict) or len(person) != 2:
            return where + ": expected {id, name}"
        if not is_identifier(person.get("id")):
            return where + ".id: expected an id like ana"
        if not _text(person.get("name"), NAME_MAX):
            return where + ".name: expected 1..%d characters" % NAME_MAX
    return None


class Config:
    """Settings that passed `problem`, as attributes."""

    def __init__(self, d) -> None:
        self.prompt = d["prompt"]
        self.language = d["language"]
        self.scale = d["scale"]
        self.low_threshold = d["low_threshold"]
        self.response_interval_ms = d["response_interval_s"] * 1000
        self.follow_up_timeout_ms = d["follow_up_timeout_s"] * 1000
        self.code_display_ms = d["code_display_s"] * 1000
        self.confirm_timeout_ms = d["confirm_timeout_s"] * 1000
        self.telemetry_interval_s = d["telemetry_interval_s"]
        self.station = d["station"]
        self.staff = tuple((p["id"], p["name"]) for p in d["staff"])

    def staff_name(self, staff_id) -> str | None:
        for sid, name in self.staff:
            if sid == staff_id:
                return name
        return None


def parse(raw: bytes):
    """(Config, None) for good settings, or (None, what is wrong) for anything else."""
    try:
        d = json.loads(raw)
    except ValueError:
        return None, "config: not valid JSON"
    why = problem(d)
    return (None, why) if why else (Config(d), None)


class ConfigFile:
    """The last good settings on flash, replaced whole so that a power cut keeps old or new."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self):
        """(Config, None), or (None, why) when the file is missing or broken."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError:
            return None, "config: none on this kiosk yet"
        return parse(raw)

    def save(self, raw: bytes) -> None:
        tmp = self.path + ".new"
        with open(tmp, "wb") as f:
            f.write(raw)
        os.rename(tmp, self.path)
