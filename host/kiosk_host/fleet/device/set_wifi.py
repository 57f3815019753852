"""Puts a new Wi-Fi name and key into /identity.json, whole: written beside it, then renamed."""

import json
import os


def set_wifi(mark: str, path: str, ssid: str, key: str) -> None:
    try:
        with open(path) as f:
            ident = json.load(f)
    except (OSError, ValueError) as e:
        print(mark + json.dumps({"error": type(e).__name__ + ": " + str(e)}))
        return
    if not isinstance(ident, dict):
        print(mark + json.dumps({"error": "not a JSON object"}))
        return
    old = ident.get("ssid")
    ident["ssid"] = ssid
    ident["key"] = key
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(ident, f)
    os.rename(tmp, path)  # atomic on littlefs: the old file or the new, never a mix
    print(
        mark + json.dumps({"store": ident.get("store"), "device": ident.get("device"), "old": old})
    )
