"""Mistakes a person can fix: the CLI prints a `UserError` as one line and exits with code 2.

Every error raised for something the operator asked for or set up (a bad argument, a missing
file, a broker that refuses the account) derives from `UserError` and says what to fix. Any
other exception is a defect of the program, and the CLI lets its traceback show.
"""


class UserError(Exception):
    """Something the person can put right; the message says what and how."""
