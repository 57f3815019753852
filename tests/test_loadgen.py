"""`kiosk-host loadgen`: kiosks' load over real connections, stored by ingest as reported."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from kiosk_host.aggregator.receiver import Ingest
from kiosk_host.sim.loadgen import Event, Mix, case_code, fleet
from kiosk_host.storage.sqlite import Storage
from kiosk_host.wire.contract import Contract, Message
from kiosk_host.wire.identifiers import is_case_code
from tests.broker import Mosquitto, free_port
from tests.cli_run import run_cli
from tests.fleet_rig import make_ca, make_server_cert
from tests.virtual_kiosks import suback, wait_until
from tests.vm.mpvm import MicroPythonVM

LOAD = ["loadgen", "--stores", "2", "--kiosks-per-store", "3", "--rate", "200", "--duration", "2"]


def plan(events: int, seed: int, stores: int = 3, per_store: int = 4) -> list[Event]:
    """The events a run would send, every follow-up taken as acknowledged at once."""
    mix = Mix(fleet(stores, per_store), seed, seq_from=1, rate=200)
    return [mix.next(i, lambda _: True) for i in range(events)]


@pytest.mark.e2e  # loadgen's kiosks, the broker and the aggregator, each a process
def test_a_short_run_is_stored_event_for_event_as_reported(
    mosquitto: Mosquitto, tmp_path: Path, contract: Contract
) -> None:
    storage = Storage(tmp_path / "kiosk.db")
    ingest = Ingest(mosquitto.url, storage.path, "agg-loadgen")
    subscribed = suback(ingest.client)
    ingest.start()
    try:
        assert subscribed.wait(10), "no SUBACK for the aggregator"
        run = run_cli([*LOAD, "--broker", mosquitto.url, "--prefix", "lg", "--seed", "5", "--json"])
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        stores = report["stores"]
        wait_until(
            lambda: all(storage.event_count(s) >= n["acked"] for s, n in stores.items()),
            30,
            "every acknowledged event stored",
        )
    finally:
        ingest.stop()
    assert report["total"] == report["acked"] == 400 and report["failed"] == 0
    assert sorted(stores) == ["lg-1", "lg-2"]
    assert {s: storage.event_count(s) for s in stores} == {s: n["sent"] for s, n in stores.items()}
    kinds: Counter[str] = Counter()
    for name, k in report["kiosks"].items():
        store, device = name.split("/")
        seqs = storage.seqs(store, device)
        assert seqs == list(range(k["first_seq"], k["last_seq"] + 1)), name  # each once
        assert len(seqs) == k["sent"] == k["acked"]
        for seq in seqs:
            row = storage.event(store, device, seq)
            assert row is not None
            checked = contract.validate(f"kiosk/v1/{store}/{device}/event", row.raw.encode())
            assert isinstance(checked, Message), checked
            kinds[row.kind] += 1
    assert kinds == Counter({k: n for k, n in report["sent"].items() if n})
    assert kinds["follow_up"] and kinds["recovery_confirm"]  # the mix has every kind
    ours = [d for d in storage.dead_letters() if d.topic.split("/")[2] in stores]
    assert ours == []  # every verdict found its case
    cases = [c for s in stores for c in storage.cases(s)]
    assert len(cases) == report["follow_ups_accepted"]
    assert sum(c.verdict is not None for c in cases) == kinds["recovery_confirm"]


@pytest.mark.e2e  # a broker of its own with accounts, and the aggregator
def test_on_a_broker_with_accounts_each_kiosk_logs_in_as_itself(tmp_path: Path) -> None:
    kiosks = {f"lg-{s}/till-{k}": (f"pw-{s}-{k}", "MN"[k - 1]) for s in (1, 2) for k in (1, 2)}
    devices = tmp_path / "devices"
    for user, (password, letter) in kiosks.items():
        store, device = user.split("/")
        (devices / store / device).mkdir(parents=True)
        ident = {"store": store, "device": device, "letter": letter, "user": user,
                 "password": password}  # fmt: skip
        (devices / store / device / "identity.json").write_text(json.dumps(ident))
    users = {user: password for user, (password, _) in kiosks.items()}
    load = ["loadgen", "--stores", "2", "--kiosks-per-store", "2", "--rate", "100", "--duration",
            "1", "--prefix", "lg", "--devices-dir", str(devices), "--json"]  # fmt: skip
    with Mosquitto(tmp_path / "broker", users={**users, "kiosk-host": "agg-pw"}) as broker:
        storage = Storage(tmp_path / "kiosk.db")
        ingest = Ingest(f"mqtt://kiosk-host:agg-pw@{broker.host}:{broker.port}", storage.path)
        subscribed = suback(ingest.client)
        ingest.start()
        try:
            assert subscribed.wait(10), "no SUBACK for the aggregator"
            run = run_cli([*load, "--broker", broker.url])
            assert run.returncode == 0, run.stderr
            report = json.loads(run.stdout)
            wait_until(
                lambda: storage.event_count() == report["acked"] == 100, 30, "every event stored"
            )
        finally:
            ingest.stop()
        # the broker acknowledges what its ACL drops too: only the stored count shows it let
        # each kiosk write its own topic
        assert {s: storage.event_count(s) for s in ("lg-1", "lg-2")} == {
            s: n["sent"] for s, n in report["stores"].items()
        }
        cases = [c for s in ("lg-1", "lg-2") for c in storage.cases(s)]
        assert len(cases) == report["follow_ups_accepted"] > 0
        assert all(c.code[0] == kiosks[f"{c.store}/{c.device}"][1] for c in cases)
        ident = json.loads((devices / "lg-2" / "till-2" / "identity.json").read_text())
        (devices / "lg-2" / "till-2" / "identity.json").write_text(
            json.dumps({**ident, "password": "wrong"})
        )
        refused = run_cli([*load, "--broker", broker.url, "--seq-from", "1000"])
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "cannot connect 1 of 4 kiosks" in refused.stderr and "lg-2/till-2" in refused.stderr


@pytest.mark.e2e  # a TLS broker of its own
def test_over_tls_the_broker_is_trusted_only_by_the_ca_given(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki", "shop-ca")
    other, _ = make_ca(tmp_path / "other-pki", "someone-elses-ca")
    load = ["loadgen", "--stores", "1", "--kiosks-per-store", "2", "--rate", "50", "--duration",
            "1", "--json"]  # fmt: skip
    with Mosquitto(tmp_path / "broker", tls=make_server_cert(tmp_path / "pki", ca)) as broker:
        run = run_cli([*load, "--broker", broker.tls_url, "--ca", str(ca[0])])
        refused = run_cli([*load, "--broker", broker.tls_url, "--ca", str(other)])
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["acked"] == 50
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr


@pytest.mark.e2e  # loadgen's kiosks, the broker and the aggregator, each a process
def test_with_acks_each_kiosk_hears_the_host_cover_every_event_it_sent(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    storage = Storage(tmp_path / "kiosk.db")
    ingest = Ingest(mosquitto.url, storage.path, "agg-loadgen-acks")
    subscribed = suback(ingest.client)
    ingest.start()
    try:
        assert subscribed.wait(10), "no SUBACK for the aggregator"
        run = run_cli([*LOAD, "--broker", mosquitto.url, "--prefix", "lga", "--seed", "6",
                       "--acks", "--json"])  # fmt: skip
        # Above what the host has: the marks cannot pass the gap (the last run's comes
        # retained, below every seq of this one), so they cover nothing of this run.
        gap = run_cli([*LOAD, "--broker", mosquitto.url, "--prefix", "lga", "--seed", "6",
                       "--acks", "--seq-from", "1000", "--ack-wait", "2"])  # fmt: skip
    finally:
        ingest.stop()
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["total"] == report["acked"] == report["host_acked"] == 400
    for name, k in report["kiosks"].items():  # each kiosk's mark reached its last seq
        store, device = name.split("/")
        assert k["host_mark"] == k["last_seq"], name
        assert storage.seqs(store, device)[: k["sent"]] == list(range(1, k["last_seq"] + 1))
    assert 0 < report["ack_p50_ms"] <= report["ack_p99_ms"]
    assert gap.returncode == 1, gap.stderr  # every event at the broker, none covered
    assert "acknowledged 400, failed 0" in gap.stdout
    assert "host acknowledged 0 of 400 from publish" in gap.stdout
    assert "(publish -> commit -> ack received: an upper bound of publish -> commit)" in gap.stdout
    assert sum(storage.event_count(s) for s in ("lga-1", "lga-2")) == 800  # stored all the same


def test_the_mix_is_the_seeds_and_near_the_shares_asked(contract: Contract) -> None:
    events = plan(20_000, seed=3)
    assert [(e.kiosk, e.seq, e.kind, e.fields) for e in events] == [
        (e.kiosk, e.seq, e.kind, e.fields) for e in plan(20_000, seed=3)
    ]
    assert [e.fields for e in plan(50, seed=4)] != [e.fields for e in events[:50]]
    ratings = [e for e in events if e.kind == "rating"]
    shares = Counter(e.fields["score"] for e in ratings)
    for score, share in {4: 0.60, 3: 0.25, 2: 0.10, 1: 0.05}.items():
        assert abs(shares[score] / len(ratings) - share) < 0.02, (score, shares)
    follow_ups = [e for e in events if e.kind == "follow_up"]
    assert len(follow_ups) == shares[1] + shares[2]  # one after each breakdown
    accepted = [e for e in follow_ups if e.fields["accepted"]]
    assert 0.45 < len(accepted) / len(follow_ups) < 0.55
    verdicts = [e for e in events if e.kind == "recovery_confirm"]
    assert 0 < len(verdicts) < len(accepted)
    by_key = {(e.kiosk, e.seq): e for e in events}
    for f in follow_ups:  # the rating it answers is the same kiosk's breakdown
        assert by_key[(f.kiosk, f.fields["rating_seq"])].fields["score"] <= 2
    codes = {(e.kiosk.store, e.fields["code"]) for e in accepted}  # letters repeat per store
    assert all((v.kiosk.store, v.fields["case"]) in codes for v in verdicts)
    seqs: dict[object, list[int]] = {}
    for e in events:
        seqs.setdefault(e.kiosk, []).append(e.seq)
        checked = contract.validate(e.kiosk.topic, e.payload(1763900000, 1000))
        assert isinstance(checked, Message), checked
    assert all(s == list(range(1, len(s) + 1)) for s in seqs.values())


def test_a_verdict_waits_until_its_case_is_at_the_broker() -> None:
    mix = Mix(fleet(1, 2), seed=1, seq_from=7, rate=10)
    held = [mix.next(i, lambda _: False) for i in range(2_000)]
    assert "recovery_confirm" not in {e.kind for e in held}
    assert held[0].seq == 7
    after = [mix.next(i, lambda _: True) for i in range(2_000, 2_100)]
    assert "recovery_confirm" in {e.kind for e in after}


def test_codes_are_the_kiosks_own(mpvm: MicroPythonVM) -> None:
    cases = [(letter, seq) for letter in "ABZ" for seq in (1, 2, 500, 29_792)]
    code = f"import wire\nprint(' '.join(wire.case_code(c, s) for c, s in {cases!r}))"
    made = mpvm.run(code, ["wire"]).ok().split()
    assert [case_code(letter, seq) for letter, seq in cases] == made
    assert all(is_case_code(c) for c in made)


def test_an_unreachable_broker_is_one_line_and_exit_2() -> None:
    run = run_cli([*LOAD, "--broker", f"mqtt://127.0.0.1:{free_port()}"])
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert "cannot connect 6 of 6 kiosks to the broker" in run.stderr
    assert "Connection refused" in run.stderr


def test_what_cannot_run_is_refused_in_one_line(tmp_path: Path) -> None:
    broker = f"mqtt://127.0.0.1:{free_port()}"
    for extra, said in (
        (["--devices-dir", str(tmp_path)], "provision the run's kiosks first"),
        (["--kiosks-per-store", "24"], "1 to 23 kiosks per store"),
        (["--rate", "0.1", "--duration", "1"], "is no event"),
        (["--ca", "ca.pem"], "--ca is for a TLS broker"),
        (["--prefix", "a" * 31], "is not an identifier"),
        (["--rate", "-3"], "is not a number above 0"),
        (["--acks", "--ack-wait", "0"], "is not a number above 0"),
    ):
        run = run_cli([*LOAD, "--broker", broker, *extra])
        assert run.returncode == 2, (extra, run.stderr)
        assert said in run.stderr and run.stderr.count("\n") == 1, (extra, run.stderr)
