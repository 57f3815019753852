"""The kiosk's behaviour: what a press, a chord, a command or the passing of time does.

Pure logic: the clock, the outbox, the event encoder and the screens are passed in, so the
same state machine runs on the device, on the MicroPython VM in the tests and as a virtual
kiosk. Every customer-visible capture is appended to the outbox before the screen changes.
"""

import sys

from micropython import const

import config as cfgmod
from wire import case_code

IDLE = const(0)
THANKS = const(1)
SORRY = const(2)
CODE = const(3)
CONFIRM = const(4)
STAFF = const(5)
PROBLEM = const(6)

# staff mode pages
_ROOT = const(0)
_PEOPLE = const(1)
_CASES = const(2)

# The prompt provisioning writes (fleet/provision.py). It stands for "the kiosk's own
# question", shown in the kiosk's language; any other prompt is the store's, shown as written.
DEFAULT_PROMPT = "How did we do today?"


def load_texts(language: str):
    """The words of one language; the previous language's module is let go to save RAM."""
    for name in list(sys.modules):
        if name.startswith("texts_") and name != "texts_" + language:
            del sys.modules[name]
    return __import__("texts_" + language)


class Kiosk:
    """One kiosk's screens and events; buttons are numbered 0 (leftmost) to n - 1."""

    THANKS_MS = 3000  # how long "Thank you" stays before the prompt returns
    # A press this soon after the code appears is the same customer's second tap on Yes; any
    # later press is the next customer's rating (the code is copied by then, or never will be).
    CODE_GUARD_MS = 2000
    STAFF_IDLE_MS = 60000  # staff mode gives up after this long without a press
    PROBLEM_MS = 10000  # a refused config is shown this long when an older one stays in force
    STAFF_CHORD = (0, -1)  # the two outer buttons, held together, open staff mode
    CASES_MAX = 50

    def __init__(self, clock, outbox, events, make_ui, n_buttons: int, letter: str) -> None:
        """`make_ui(texts)` builds the screens in a language; `events` is a wire.Events."""
        self.clock = clock
        self.outbox = outbox
        self.events = events
        self.make_ui = make_ui
        self.n = n_buttons
        self.letter = letter
        self.config = None
        self.config_error = None  # why the last settings received were refused, or None
        self.pending = None  # settings received during a customer's screen, used at idle
        self.link_error = None  # why the link to the host is down, for a technician
        self.ui = None
        self.texts = None
        self.state = PROBLEM
        self.deadline = 0  # ticks at which the current screen times out
        self.timed = False
        self.staff = None  # who is signed in at this station
        self.suppressed = 0
        self.last_capture = None  # ticks of the last captured rating
        self.rating_seq = 0
        self.case = ""  # the code on the confirmation screen
        self.code_at = 0  # ticks at which the recovery code appeared
        self.cases = ()  # (code, deadline) of the store's open cases, soonest first
        self.page = _ROOT
        self.cursor = 0
        self.items = []

    # -- settings ---------------------------------------------------------------------------

    def configure(self, conf, why=None) -> None:
        """Start with settings from flash (a Config), or with None and why there are none."""
        if conf is not None:
            why = self._refuse(conf)
        if why is None:
            self._use(conf)
            self.to_idle()
        else:
            self.config_error = why
            self._problem(why)

    def apply_config(self, raw: bytes) -> bool:
        """New settings from the host: used if good, else refused with the old ones kept."""
        conf, why = cfgmod.parse(raw)
        if conf is not None:
            why = self._refuse(conf)
        self.config_error = why
        if why is not None:
            self._problem(why)
            if self.config is not None:
                self._timeout(self.PROBLEM_MS)
            return False
        if self.config is not None and conf.__dict__ == self.config.__dict__:
            # The retained config comes again at every reconnect: the same settings leave the
            # screen alone (a customer may be answering a question on it).
            self.pending = None
            if self.state == PROBLEM:
                self.to_idle()  # a refusal shown before is over
            return True
        if self.config is None or self.state == IDLE or self.state == PROBLEM:
            self._use(conf)
            self.to_idle()
        else:
            self.pending = conf  # the customer's screen finishes first; to_idle() uses it
        return True

    def _refuse(self, conf):
        if conf.scale != self.n:
            return "scale: expected %d, the buttons on this kiosk" % self.n
        return None

    def _use(self, conf) -> None:
        if self.config is None or conf.language != self.config.language:
            self.ui = None  # let the old screens and words go before loading the new ones
            self.texts = load_texts(conf.language)
            self.ui = self.make_ui(self.texts)
        self.config = conf
        if self.staff is not None and conf.staff_name(self.staff) is None:
            self.staff = None  # no longer on this station's list

    def _problem(self, why: str) -> None:
        if self.ui is None:
            self.texts = load_texts("en")
            self.ui = self.make_ui(self.texts)
        title = self.texts.NO_CONFIG if self.config is None else self.texts.CONFIG_PROBLEM
        self.state = PROBLEM
        self.timed = False
        self.ui.problem(title, why)

    # -- time -------------------------------------------------------------------------------

    def _timeout(self, ms: int) -> None:
        self.deadline = self.clock.after_ms(ms)
        self.timed = True

    def tick(self) -> None:
        """Called by the main loop many times a second; acts when a screen's time is up."""
        if self.timed and self.clock.since_ms(self.deadline) >= 0:
            self.timed = False
            if self.state == SORRY:
                self._follow_up(None)  # no answer counts as no
            elif self.config is not None:
                self.to_idle()

    def to_idle(self) -> None:
        if self.pending is not None:
            conf = self.pending
            self.pending = None
            self._use(conf)
        self.state = IDLE
        self.timed = False
        prompt = self.config.prompt
        if prompt == DEFAULT_PROMPT:
            prompt = self.texts.PROMPT
        self.ui.idle(prompt, self.n, self.link_error)

    def idle(self) -> bool:
        """Nobody at the kiosk: the prompt shown (or, without settings, the problem that
        keeps it from asking anyone), no customer's screen, follow-up, code or confirmation
        under way and no settings waiting for one to end. A firmware update switches only
        then."""
        if self.pending is not None:
            return False
        return self.state == IDLE or (self.state == PROBLEM and self.config is None)

    def link_problem(self, why) -> None:
        """Why the link to the host is down (None once it is up): a line at the foot of the
        prompt for a technician. Other screens are the customer's and are left alone."""
        if why == self.link_error:
            return
        self.link_error = why
        if self.state == IDLE:
            self.to_idle()

    # -- events -----------------------------------------------------------------------------

    def _stamp(self):
        return self.outbox.next_seq(), self.clock.wall(), self.clock.uptime_ms()

    def _rate(self, button: int) -> None:
        c = self.config
        if self.last_capture is not None and self.clock.since_ms(self.last_capture) < (
            c.response_interval_ms
        ):
            self.suppressed += 1
            return
        self.last_capture = self.clock.ticks_ms()
        score = button + 1
        seq, ts, up = self._stamp()
        self.outbox.append(
            seq, self.events.rating(seq, ts, up, score, c.scale, c.station, self.staff)
        )
        self.rating_seq = seq
        if score <= c.low_threshold:
            self.state = SORRY
            self.ui.sorry(self.n)
            self._timeout(c.follow_up_timeout_ms)
        else:
            self._thanks()

    def _thanks(self) -> None:
        self.state = THANKS
        self.ui.thanks()
        self._timeout(self.THANKS_MS)

    def _follow_up(self, code) -> None:
        seq, ts, up = self._stamp()
        self.outbox.append(seq, self.events.follow_up(seq, ts, up, self.rating_seq, code))
        if code is None:
            self._thanks()
        else:
            self.state = CODE
            self.code_at = self.clock.ticks_ms()
            self.ui.code(code)
            self._timeout(self.config.code_display_ms)

    def _verdict(self, outcome: str) -> None:
        seq, ts, up = self._stamp()
        self.outbox.append(seq, self.events.recovery_confirm(seq, ts, up, self.case, outcome))
        self._thanks()

    def _sign(self, signin: bool, staff: str) -> None:
        seq, ts, up = self._stamp()
        self.outbox.append(seq, self.events.staff(seq, ts, up, signin, staff, self.config.station))
        self.staff = staff if signin else None

    # -- inputs -----------------------------------------------------------------------------

    def press(self, button: int) -> None:
        """A short press of `button` (0 = leftmost)."""
        state = self.state
        last = self.n - 1
        if state == IDLE or state == THANKS:
            self._rate(button)
        elif state == SORRY:
            # No on the left half of the buttons, Yes on the rest: every button answers
            if button >= self.n // 2:
                self._follow_up(case_code(self.letter, self.rating_seq))
            else:
                self._follow_up(None)
        elif state == CODE:
            if self.clock.since_ms(self.code_at) >= self.CODE_GUARD_MS:
                self._rate(button)  # the next customer
        elif state == CONFIRM:
            # the outer buttons are the outer answers, every button between them the middle one
            if button == last:
                self._verdict("wow")
            elif button == 0:
                self._verdict("not_fixed")
            else:
                self._verdict("fixed")
        elif state == STAFF:
            self._staff_press(button)
        elif state == PROBLEM and self.config is not None:
            self.to_idle()

    def long_press(self, button: int) -> None:
        """A button held past the long-press time: a customer's rating all the same."""
        if self.state == STAFF and button == 0:
            self.to_idle()
        else:
            self.press(button)

    def chord(self, a: int, b: int) -> None:
        """Two buttons held together for the chord time."""
        if self.config is not None and {a, b} == {0, self.n - 1}:
            self.page = _ROOT
            self._menu(0)

    def confirm_recovery(self, code: str) -> None:
        """Ask the customer for their verdict on case `code` (a command, or staff mode)."""
        if self.config is None:
            return
        self.case = code
        self.state = CONFIRM
        self.ui.confirm(code, self.n)
        self._timeout(self.config.confirm_timeout_ms)

    def identify(self, name: str, ms: int) -> None:
        """Show this kiosk's name for `ms`, so a technician can tell which one is which."""
        if self.config is None:
            return  # the screen keeps saying what is wrong; the LED and buzzer still show it
        self.state = THANKS  # a screen that times out back to the prompt
        self.ui.identify(name)
        self._timeout(ms)

    def set_cases(self, cases) -> None:
        """The store's open cases as (code, deadline) pairs, from the retained cases topic."""
        self.cases = tuple(sorted(cases, key=lambda c: c[1])[: self.CASES_MAX])

    # -- staff mode -------------------------------------------------------------------------

    def _menu(self, cursor: int) -> None:
        t = self.texts
        c = self.config
        if self.page == _ROOT:
            who = c.staff_name(self.staff) if self.staff else None
            self.items = [
                t.SIGN_OUT % who if who else t.SIGN_IN,
                t.OPEN_CASES % len(self.cases),
                t.EXIT,
            ]
            title = t.STAFF_MODE
        elif self.page == _PEOPLE:
            self.items = [name for _, name in c.staff]
            title = t.SIGN_IN
        else:
            now = self.clock.wall()
            self.items = [self._case_line(code, deadline, now) for code, deadline in self.cases]
            title = t.OPEN_CASES % len(self.cases)
        if not self.items:
            self.items = [t.NO_CASES if self.page == _CASES else t.BACK]
        self.cursor = cursor % len(self.items)
        self.state = STAFF
        self.ui.menu(title, self.items, self.cursor, self.n)
        self._timeout(self.STAFF_IDLE_MS)

    def _case_line(self, code: str, deadline: int, now) -> str:
        if now is None:
            return code
        left = deadline - now
        if left <= 0:
            return self.texts.OVERDUE % code
        if left < 3600:
            return self.texts.MINUTES_LEFT % (code, left // 60)
        return self.texts.HOURS_LEFT % (code, left // 3600)

    def _staff_press(self, button: int) -> None:
        if button == 0:
            if self.page == _ROOT:
                self.to_idle()
            else:
                self.page = _ROOT
                self._menu(0)
        elif button == self.n - 1:
            self._staff_ok()
        else:
            self._menu(self.cursor + 1)  # Next, on every button between Back and OK

    def _staff_ok(self) -> None:
        c = self.config
        i = self.cursor
        if self.page == _ROOT:
            if i == 0:
                if self.staff:
                    self._sign(False, self.staff)
                    self.to_idle()
                elif c.staff:
                    self.page = _PEOPLE
                    self._menu(0)
            elif i == 1:
                self.page = _CASES
                self._menu(0)
            else:
                self.to_idle()
        elif self.page == _PEOPLE:
            if c.staff:
                self._sign(True, c.staff[i][0])
            self.to_idle()
        elif self.cases:
            self.confirm_recovery(self.cases[i][0])
        else:
            self.page = _ROOT
            self._menu(0)
