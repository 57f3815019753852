"""The firmware's footprint: compiled size, and live heap after 5,000 customers per board, with
the link connected to mosquitto and running (the figure the budget is for), and without it."""

from __future__ import annotations

from tests.test_firmware_memory import BUDGET
from tests.vm.heap import heap_by_customers, settled
from tests.vm.mpvm import BUILD_DIR, ROOT, MicroPythonVM


def main() -> None:
    mpys = sorted(BUILD_DIR.glob("*.mpy"))
    total = sum(p.stat().st_size for p in mpys)
    print(
        f"firmware: {len(mpys)} modules, {total:,} bytes of .mpy in {BUILD_DIR.relative_to(ROOT)}/"
    )
    vm = MicroPythonVM()
    for board, budget in sorted(BUDGET.items()):
        heap = heap_by_customers(vm, board, [1000, 5000], link=True)
        after = settled(heap, 5000)
        alone = settled(heap_by_customers(vm, board, [5000]), 5000)
        print(
            f"live heap on {board}, connected and running: {heap[0]:,} B once up, "
            f"{settled(heap, 1000):,} B after 1,000 customers, {after:,} B after 5,000, "
            f"{max(heap.values()):,} B at most; {max(heap.values()) / budget:.2f} of its "
            f"{budget // 1024} KB budget; {alone:,} B after 5,000 without the link"
        )
