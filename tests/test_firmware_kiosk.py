"""Every customer and staff flow of the kiosk, driven by buttons and time on MicroPython.

Each test checks the screens shown and the events left in the outbox; every event is also
checked against the MQTT contract (tests/kiosk_runs.py).
"""

from __future__ import annotations

import pytest

from kiosk_host.wire.identifiers import check_character
from tests.kiosk_runs import BOARDS, run_kiosk
from tests.vm.mpvm import MicroPythonVM, board_buttons

CASE_CODE = "from wire import case_code\n"
M5 = "m5stack_core"  # three buttons
THREE = "conf=dict(CONFIG, scale=3, low_threshold=1)"


def code(body: str) -> str:
    """A recovery code as a kiosk shows it: `body` and its check character."""
    return body + check_character(body)


A7K3, B2XZ, C9QR = code("A7K3"), code("B2XZ"), code("C9QR")


def test_idle_shows_the_prompt_and_a_smiley_per_button(mpvm: MicroPythonVM) -> None:
    run = run_kiosk(mpvm, "")
    assert run.screens == [("idle", "How did we do today?")]
    assert run.events == []


def test_a_happy_press_is_captured_thanked_then_the_prompt_returns(mpvm: MicroPythonVM) -> None:
    run = run_kiosk(mpvm, "rig.press(4)\nrig.sleep(3000, 50)")
    assert run.names == ["idle", "thanks", "idle"]
    assert run.screens[1] == ("thanks", "Thank you!")
    (rating,) = run.events
    assert rating["kind"] == "rating"
    assert (rating["score"], rating["scale"], rating["station"], rating["staff"]) == (
        4,
        4,
        "till-1",
        None,
    )
    assert rating["seq"] == 1
    assert rating["ts"] == 1763900000


def test_the_rating_is_in_the_outbox_when_thank_you_shows(mpvm: MicroPythonVM) -> None:
    script = (
        "def seen(name, text):\n"
        "    print('AT', name, rig.outbox.depth())\n"
        "rig.kiosk.ui.on_change = seen\n"
        "rig.press(3)\n"
    )
    run = run_kiosk(mpvm, script)
    assert "AT thanks 1" in run.lines


def test_a_press_that_cannot_be_stored_never_says_thank_you(mpvm: MicroPythonVM) -> None:
    script = (
        "class FullFlash:\n"
        "    def next_seq(self):\n"
        "        return 1\n"
        "    def append(self, seq, payload):\n"
        "        raise OSError(28)\n"  # ENOSPC
        "    def peek(self, after=0):\n"
        "        return None\n"
        "rig.kiosk.outbox = FullFlash()\n"
        "try:\n"
        "    rig.kiosk.press(3)\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
        "rig.outbox = rig.kiosk.outbox\n"
    )
    run = run_kiosk(mpvm, script)
    assert run.names == ["idle"]
    assert "refused 28" in run.lines


def test_a_low_rating_accepted_shows_the_recovery_code(mpvm: MicroPythonVM) -> None:
    script = CASE_CODE + "rig.press(2)\nrig.press(4)\nprint('CODE', case_code('A', 1))\n"
    run = run_kiosk(mpvm, script)
    code = next(line.split()[1] for line in run.lines if line.startswith("CODE"))
    assert run.names == ["idle", "sorry", "code"]
    assert run.screens[1] == ("sorry", "Sorry. | Let us make it right? | [No] | [Yes]")
    assert len(code) == 5
    assert run.screens[2] == ("code", f"Your code | {code} | Show it to our staff")
    rating, follow_up = run.events
    assert rating["score"] == 2
    assert follow_up["kind"] == "follow_up"
    assert (follow_up["rating_seq"], follow_up["accepted"], follow_up["code"]) == (1, True, code)
    assert follow_up["seq"] == 2


def test_a_press_on_the_code_screen_seconds_later_is_the_next_customers_rating(
    mpvm: MicroPythonVM,
) -> None:
    script = (
        "rig.press(1)\n"  # a low rating
        "rig.press(4)\n"  # Yes: the code shows
        "rig.press(4, 300)\n"  # the same customer taps Yes again at once: the code stays
        "print('after a tap', rig.screen[0], rig.outbox.depth())\n"
        "rig.sleep(6000, 50)\n"  # past the response interval (5 s) since the low rating
        "print('before', rig.screen[0])\n"
        "rig.press(3)\n"  # a few seconds later, with the code still up: the next customer
    )
    run = run_kiosk(mpvm, script)
    assert "after a tap code 2" in run.lines
    assert "before code" in run.lines
    assert run.names == ["idle", "sorry", "code", "thanks"]
    assert [(e["kind"], e.get("score")) for e in run.events] == [
        ("rating", 1),
        ("follow_up", None),
        ("rating", 3),
    ]


def test_the_code_stays_for_its_time_then_the_prompt_returns(mpvm: MicroPythonVM) -> None:
    run = run_kiosk(mpvm, "rig.press(1)\nrig.press(4)\nrig.sleep(59000, 500)")
    assert run.names == ["idle", "sorry", "code"]
    run = run_kiosk(mpvm, "rig.press(1)\nrig.press(4)\nrig.sleep(60500, 500)")
    assert run.names == ["idle", "sorry", "code", "idle"]


def test_a_low_rating_declined_is_a_follow_up_without_code(mpvm: MicroPythonVM) -> None:
    run = run_kiosk(mpvm, "rig.press(1)\nrig.press(1)")
    assert run.names == ["idle", "sorry", "thanks"]
    follow_up = run.events[1]
    assert (follow_up["accepted"], "code" in follow_up) == (False, False)


def test_no_answer_to_make_it_right_counts_as_no(mpvm: MicroPythonVM) -> None:
    run = run_kiosk(mpvm, "rig.press(2)\nrig.sleep(19000, 500)\nprint('still', rig.screen[0])\n"
                    "rig.sleep(1500, 500)")  # fmt: skip
    assert "still sorry" in run.lines
    assert run.names == ["idle", "sorry", "thanks"]
    assert run.events[1]["accepted"] is False


def test_presses_inside_the_response_interval_are_suppressed(mpvm: MicroPythonVM) -> None:
    script = (
        "rig.press(4)\n"
        "rig.sleep(1000)\n"
        "rig.press(3)\n"  # 1.2 s after the first: a child hammering, not a customer
        "rig.press(3)\n"
        "rig.sleep(4000, 50)\n"
        "rig.press(3)\n"  # more than 5 s after the first capture: a new customer
        "print('suppressed', rig.kiosk.suppressed)\n"
    )
    run = run_kiosk(mpvm, script)
    assert [e["score"] for e in run.events] == [4, 3]
    assert "suppressed 2" in run.lines


def test_without_wall_time_events_carry_null_and_uptime(mpvm: MicroPythonVM) -> None:
    run = run_kiosk(mpvm, "rig.sleep(2000, 100)\nrig.press(4)", rig_args="synced=False")
    (rating,) = run.events
    assert rating["ts"] is None
    assert rating["up_ms"] >= 2000


def test_staff_sign_in_attributes_ratings_then_sign_out(mpvm: MicroPythonVM) -> None:
    script = (
        "rig.chord(1, 4, 3100)\n"  # staff mode: the two outer buttons held for 3 s
        "rig.press(4)\n"  # OK on "Sign in"
        "rig.press(3)\n"  # Next: Ben K.
        "rig.press(4)\n"  # OK: sign in Ben K.
        "rig.sleep(5000, 50)\n"
        "rig.press(4)\n"  # a customer's rating
        "rig.sleep(6000, 50)\n"
        "rig.chord(1, 4, 3100)\n"
        "rig.press(4)\n"  # OK on "Sign out Ben K."
    )
    run = run_kiosk(mpvm, script)
    assert ("staff", "Staff | >Sign in |  Open cases (0) |  Exit | [Back] | [Next] | [OK]") in (
        run.screens
    )
    assert ("staff", "Sign in |  Ana | >Ben K. | [Back] | [Next] | [OK]") in run.screens
    assert (
        "staff",
        "Staff | >Sign out Ben K. |  Open cases (0) |  Exit | [Back] | [Next] | [OK]",
    ) in (run.screens)
    kinds = [(e["kind"], e.get("staff")) for e in run.events]
    assert kinds == [("staff_signin", "ben-k"), ("rating", "ben-k"), ("staff_signout", "ben-k")]
    assert all(e["station"] == "till-1" for e in run.events)


def test_a_chord_is_never_a_rating_and_back_leaves_staff_mode(mpvm: MicroPythonVM) -> None:
    run = run_kiosk(mpvm, "rig.chord(1, 4, 3100)\nrig.press(1)")
    assert run.names == ["idle", "staff", "idle"]
    assert run.events == []


def test_staff_opens_the_wow_confirmation_for_an_open_case(mpvm: MicroPythonVM) -> None:
    script = (
        f"rig.kiosk.set_cases([('{B2XZ}', 1763900000 + 5 * 3600), ('{A7K3}', 1763900000 + 3600)])\n"
        "rig.chord(1, 4, 3100)\n"
        "rig.press(3)\n"  # Next: Open cases
        "rig.press(4)\n"  # OK
        "rig.press(3)\n"  # Next: the second case
        "rig.press(4)\n"  # OK: show the customer the confirmation
        "rig.press(4)\n"  # the customer: Wow!
    )
    run = run_kiosk(mpvm, script)
    assert (
        "staff",
        f"Open cases (2) |  {A7K3} 59m left | >{B2XZ} 4h left | [Back] | [Next] | [OK]",
    ) in run.screens
    assert (
        "confirm",
        f"Code {B2XZ}: did we make it right? | [Not yet] | [Yes] | [Yes, wow!]",
    ) in run.screens
    assert run.names[-1] == "thanks"
    (verdict,) = run.events
    assert (verdict["kind"], verdict["case"], verdict["outcome"]) == (
        "recovery_confirm",
        B2XZ,
        "wow",
    )


def test_a_case_within_the_hour_shows_its_minutes_left(mpvm: MicroPythonVM) -> None:
    script = (
        "now = 1763900000\n"
        f"rig.kiosk.set_cases([('{B2XZ}', now + 2 * 3600 + 30), ('{A7K3}', now + 20 * 60 + 30),"
        f" ('{C9QR}', now - 60)])\n"
        "rig.chord(1, 4, 3100)\n"
        "rig.press(3)\n"  # Next: Open cases
        "rig.press(4)\n"  # OK
    )
    run = run_kiosk(mpvm, script)
    assert run.screens[-1] == (
        "staff",
        f"Open cases (3) | >{C9QR} overdue |  {A7K3} 20m left |  {B2XZ} 2h left | [Back] | [Next]"
        " | [OK]",
    )


@pytest.mark.parametrize(
    ("board", "button", "outcome"),
    [("esp32_devkitc_ssd1306", 4, "wow"), ("esp32_devkitc_ssd1306", 3, "fixed"),
     ("esp32_devkitc_ssd1306", 2, "fixed"), ("esp32_devkitc_ssd1306", 1, "not_fixed"),
     (M5, 3, "wow"), (M5, 2, "fixed"), (M5, 1, "not_fixed")],
)  # fmt: skip
def test_every_button_gives_a_verdict(
    mpvm: MicroPythonVM, board: str, button: int, outcome: str
) -> None:
    """Not yet leftmost, Wow rightmost, and every button between them is Yes (made right)."""
    args = THREE if board == M5 else ""
    script = f"rig.kiosk.confirm_recovery('{A7K3}')\nrig.press({button})"
    run = run_kiosk(mpvm, script, board=board, rig_args=args)
    assert run.names == ["idle", "confirm", "thanks"]
    assert [(e["case"], e["outcome"]) for e in run.events] == [(A7K3, outcome)]


@pytest.mark.parametrize(
    ("board", "button", "accepted"),
    [("esp32_devkitc_ssd1306", 1, False), ("esp32_devkitc_ssd1306", 2, False),
     ("esp32_devkitc_ssd1306", 3, True), ("esp32_devkitc_ssd1306", 4, True),
     (M5, 1, False), (M5, 2, True), (M5, 3, True)],
)  # fmt: skip
def test_every_button_answers_make_it_right(
    mpvm: MicroPythonVM, board: str, button: int, accepted: bool
) -> None:
    """No on the left half of the buttons, Yes on the rest (the middle one of three)."""
    args = THREE if board == M5 else ""
    run = run_kiosk(mpvm, f"rig.press(1)\nrig.press({button})", board=board, rig_args=args)
    assert run.names == ["idle", "sorry", "code" if accepted else "thanks"]
    assert run.events[1]["accepted"] is accepted


def test_the_middle_buttons_of_staff_mode_are_next(mpvm: MicroPythonVM) -> None:
    script = "rig.chord(1, 4, 3100)\nrig.press(2)\nrig.press(3)"
    run = run_kiosk(mpvm, script)
    cursors = [text.split(" | ")[1:4] for name, text in run.screens if name == "staff"]
    assert cursors == [
        [">Sign in", " Open cases (0)", " Exit"],
        [" Sign in", ">Open cases (0)", " Exit"],
        [" Sign in", " Open cases (0)", ">Exit"],
    ]


def test_the_confirmation_times_out_without_a_verdict(mpvm: MicroPythonVM) -> None:
    run = run_kiosk(mpvm, f"rig.kiosk.confirm_recovery('{A7K3}')\nrig.sleep(61000, 500)")
    assert run.names == ["idle", "confirm", "idle"]
    assert run.events == []


def test_a_broken_config_is_shown_and_the_last_good_one_stays(mpvm: MicroPythonVM) -> None:
    script = (
        "import json\n"
        "bad = dict(CONFIG, scale=7, prompt='Changed?')\n"
        "print('applied', rig.kiosk.apply_config(json.dumps(bad).encode()))\n"
        "print('error', rig.kiosk.config_error)\n"
        "rig.sleep(10500, 500)\n"
        "rig.press(4)\n"
    )
    run = run_kiosk(mpvm, script)
    assert run.screens[1] == ("problem", "Config problem | scale: expected 3..5, got 7")
    assert run.screens[2] == ("idle", "How did we do today?")
    assert "applied False" in run.lines
    assert "error scale: expected 3..5, got 7" in run.lines
    assert [e["scale"] for e in run.events] == [4]


def test_a_kiosk_without_config_says_so_and_captures_nothing(mpvm: MicroPythonVM) -> None:
    run = run_kiosk(mpvm, "rig.press(4)\nrig.chord(1, 4, 3100)", rig_args="conf=None")
    assert run.screens == [("problem", "Not set up yet | config: none on this kiosk yet")]
    assert run.events == []


def test_a_config_for_another_number_of_buttons_is_refused(mpvm: MicroPythonVM) -> None:
    script = (
        "import json\n"
        "rig.kiosk.apply_config(json.dumps(dict(CONFIG, scale=5, low_threshold=2)).encode())"
    )
    run = run_kiosk(mpvm, script)
    assert run.screens[1] == (
        "problem",
        "Config problem | scale: expected 4, the buttons on this kiosk",
    )


def test_a_good_config_from_the_host_takes_effect_in_its_language(mpvm: MicroPythonVM) -> None:
    script = (
        "import json\n"
        "de = dict(CONFIG, language='de', prompt='Wie war es?')\n"
        "rig.kiosk.apply_config(json.dumps(de).encode())\n"
        "rig.press(4)\n"
    )
    run = run_kiosk(mpvm, script)
    assert run.screens[1:] == [("idle", "Wie war es?"), ("thanks", "Danke!")]


def test_a_language_set_alone_puts_the_default_prompt_in_that_language(
    mpvm: MicroPythonVM,
) -> None:
    """As `kiosk-host config push --set language=de` does: the prompt stays the default."""
    script = (
        "import json\n"
        "rig.kiosk.apply_config(json.dumps(dict(CONFIG, language='de')).encode())\n"
        "rig.press(4)\n"
        "rig.sleep(6000, 100)\n"
        "rig.kiosk.apply_config(json.dumps(dict(CONFIG, language='fr')).encode())\n"
    )
    run = run_kiosk(mpvm, script)
    assert run.screens[1:] == [
        ("idle", "Wie waren wir heute?"),
        ("thanks", "Danke!"),
        ("idle", "Wie waren wir heute?"),
        ("idle", "Comment etait votre visite ?"),
    ]


@pytest.mark.parametrize("board", BOARDS)
def test_every_board_runs_a_low_rating_to_its_code(mpvm: MicroPythonVM, board: str) -> None:
    n = board_buttons(board)
    script = f"rig.press(1)\nrig.press({n})\nprint('buttons', rig.n)"
    args = "conf=dict(CONFIG, scale=3, low_threshold=1)" if n == 3 else ""
    run = run_kiosk(mpvm, script, board=board, rig_args=args)
    assert f"buttons {n}" in run.lines
    assert run.names == ["idle", "sorry", "code"]
    assert [e["kind"] for e in run.events] == ["rating", "follow_up"]
