"""The firmware's footprint: compiled size, and live heap after 5,000 customers per board, with
the link connected to mosquitto and running (the figure the budget is for), and without it;
with its code in ROMFS (the budget's layout) and loaded from .mpy files."""

from __future__ import annotations

from tests.test_firmware_memory import BUDGET
from tests.vm.heap import heap_by_customers, settled
from tests.vm.mpvm import BUILD_DIR, ROMFS_IMAGE, ROOT, MicroPythonVM


def main() -> None:
    mpys = sorted(BUILD_DIR.glob("*.mpy"))
    total = sum(p.stat().st_size for p in mpys)
    print(
        f"firmware: {len(mpys)} modules, {total:,} bytes of .mpy in {BUILD_DIR.relative_to(ROOT)}/,"
        f" a ROMFS image of {ROMFS_IMAGE.stat().st_size:,} bytes"
    )
    vm = MicroPythonVM()
    for board, budget in sorted(BUDGET.items()):
        heap = heap_by_customers(vm, board, [1000, 5000], link=True)
        after = settled(heap, 5000)
        alone = settled(heap_by_customers(vm, board, [5000]), 5000)
        files = heap_by_customers(vm, board, [5000], link=True, rom=False)
        print(
            f"live heap on {board}, connected and running, its code in ROMFS: {heap[0]:,} B once"
            f" up, {settled(heap, 1000):,} B after 1,000 customers, {after:,} B after 5,000,"
            f" {max(heap.values()):,} B at most; {max(heap.values()) / budget:.2f} of its"
            f" {budget // 1024} KB budget; {alone:,} B after 5,000 without the link; its code"
            f" loaded from .mpy files instead (no ROMFS): {max(files.values()):,} B at most,"
            f" {max(files.values()) / budget:.2f} of the budget"
        )
