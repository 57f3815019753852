"""Simulated kiosk hardware (`machine`, `network`, a controllable clock) in the MicroPython subset.

These modules stand in for the ESP32 port's own when the firmware runs on the MicroPython VM
in the tests or under CPython as a virtual kiosk; they are put on the module path under
their device names (`import machine`).
"""
