"""The kiosk fits an ESP32 without PSRAM: its live heap after thousands of customers, on
MicroPython, stays in budget and does not grow."""

from __future__ import annotations

import pytest

from tests.vm.heap import heap_by_customers, settled
from tests.vm.mpvm import MicroPythonVM, board_stems

# bytes of live heap, display buffers and the firmware's own code included
BUDGET = {
    "esp32_devkitc_ssd1306": 40 * 1024,
    "m5stack_core": 56 * 1024,
    "lilygo_tdisplay": 56 * 1024,
}


# The conservative collector leaves a few 16-byte blocks of difference between measurements
# (seen on the mono board: 17,952, 18,000, 17,984, 18,000 and 18,000 B after 1,000, 2,000,
# 3,000, 5,000 and 8,000 customers: not rising). A leak of one small object per hundred
# customers would add ten times this over the 4,000 customers between the two figures.
NOISE = 64


# Every board in boards/: one without a budget here fails, rather than going unmeasured.
@pytest.mark.slow  # 5,000 customers on the VM per board: 6 to 18 s each
@pytest.mark.parametrize("board", board_stems())
def test_five_thousand_customers_fit_and_leave_nothing_behind(
    mpvm: MicroPythonVM, board: str, built_firmware: None
) -> None:
    assert board in BUDGET, f"boards/{board}.py has no heap budget in BUDGET"
    heap = heap_by_customers(mpvm, board, [1000, 5000])
    print(board, heap)
    assert max(heap.values()) <= BUDGET[board]
    assert settled(heap, 5000) <= settled(heap, 1000) + NOISE
    assert heap[0] > 8 * 1024  # the figure holds the firmware's code and buffers
