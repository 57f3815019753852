"""CPython stand-in for MicroPython's `micropython` module, for firmware run as a virtual kiosk.

`const` marks a constant that MicroPython's compiler folds into the bytecode; under CPython it
is the value itself.
"""


def const(x):
    return x
