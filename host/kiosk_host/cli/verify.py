"""`kiosk-host verify`: the roll-ups the views read, recounted from the events and compared."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, tzinfo
from typing import Any

from kiosk_host.cli.common import storage, stores
from kiosk_host.errors import UserError
from kiosk_host.rules.stores import Stores
from kiosk_host.storage.sqlite import QUARTER_S, RollupCheck, RollupDifference

SHOWN = 20  # differing rows named


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], db: argparse.ArgumentParser
) -> None:
    """The `verify` command."""
    verify = commands.add_parser(
        "verify",
        parents=[db],
        help="check the ratings' roll-ups against a recount from the events (--repair: rebuild)",
        description="The dashboard, reports and recognition read the ratings per quarter of an "
        "hour from roll-ups kept as events are stored. This recounts them from the events in "
        "one read transaction (safe while serve writes) and compares both ways. Exit 0 when "
        "they match, 1 naming up to 20 rows that differ; --repair rebuilds them in one "
        "transaction.",
    )
    verify.add_argument(
        "--repair", action="store_true", help="rebuild the roll-ups from the events if they differ"
    )
    verify.add_argument("--json", action="store_true", help="the outcome as one JSON object")
    verify.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    db = storage(args)
    try:
        found = db.rollup_check(SHOWN)
        repaired = db.rebuild_rollups() if args.repair and found.differing else None
        try:
            settings = stores(args, db)
        except UserError:  # settings that no longer parse: quarters are shown in UTC
            settings = Stores({})
    finally:
        db.close()
    if args.json:
        print(json.dumps(_json(found, repaired, settings), indent=2))
    else:
        for line in _lines(found, repaired, settings):
            print(line)
    return 1 if found.differing and repaired is None else 0


def _lines(found: RollupCheck, repaired: RollupCheck | None, settings: Stores) -> list[str]:
    if not found.differing:
        return [f"roll-ups match the events: {found.ratings} ratings in {found.rows} rows"]
    out = [f"roll-ups differ from the events in {found.differing} rows:"]
    out += [f"  {_line(d, settings)}" for d in found.first]
    if found.differing > len(found.first):
        out.append(f"  and {found.differing - len(found.first)} more")
    if repaired is not None:
        out.append(
            f"repaired: rebuilt from the events, {repaired.ratings} ratings in {repaired.rows} rows"
        )
    else:
        out.append("kiosk-host verify --repair rebuilds them from the events")
    return out


def _line(d: RollupDifference, settings: Stores) -> str:
    staff = d.staff or "(nobody signed in)"
    where = "outside hours, " if d.outside else ""
    return (
        f"{d.store} {_local(d.quarter, settings.get(d.store).tz)} {d.station} {staff}"
        f" {where}score {d.score}/{d.scale or '?'}: {d.stored} stored vs {d.counted} counted"
    )


def _local(quarter: int, tz: tzinfo) -> str:
    """The quarter's start in the store's time zone, e.g. 2026-11-23T14:15+01:00."""
    return datetime.fromtimestamp(quarter * QUARTER_S, tz).isoformat(timespec="minutes")


def _json(found: RollupCheck, repaired: RollupCheck | None, settings: Stores) -> dict[str, Any]:
    again = None if repaired is None else {"ratings": repaired.ratings, "rows": repaired.rows}
    return {
        "match": not found.differing,
        "ratings": found.ratings,
        "rows": found.rows,
        "differing": found.differing,
        "differences": [_difference(d, settings) for d in found.first],
        "repaired": again,
    }


def _difference(d: RollupDifference, settings: Stores) -> dict[str, Any]:
    return {
        "store": d.store,
        "quarter": d.quarter,
        "local": _local(d.quarter, settings.get(d.store).tz),
        "station": d.station,
        "staff": d.staff or None,
        "outside": d.outside,
        "score": d.score,
        "scale": d.scale,
        "stored": d.stored,
        "counted": d.counted,
    }
