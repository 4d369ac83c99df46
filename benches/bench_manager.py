"""Side-by-side benchmark of SharedMemoryManager allocation: ferroshm's
against multiprocessing.managers'.

Times ``smm.SharedMemory(4096)`` followed by ``close()`` of the object it
returns, the same for both, in this process. Rounds alternate between the
two implementations, each round with a manager of its own, and the best
round of each is kept (the least disturbed by the rest of the machine).

    python benches/bench_manager.py [NUMBER]
"""

from __future__ import annotations

import sys
import time
from typing import List, Tuple

import multiprocessing.managers as stdlib_managers

import ferroshm

ROUNDS = 5
SIZE = 4096


def _time_allocations(manager_class, number: int) -> float:
    """Seconds per ``smm.SharedMemory(SIZE)`` + ``close()``, over ``number``
    of them, in a manager started for this round (not timed)."""
    with manager_class() as smm:
        allocate = smm.SharedMemory
        for _ in range(min(number, 20)):  # warm up: connection, caches
            allocate(SIZE).close()
        start = time.perf_counter()
        for _ in range(number):
            allocate(SIZE).close()
        return (time.perf_counter() - start) / number


def bench_manager(number: int) -> List[Tuple[str, float, float]]:
    """Rows (label, stdlib seconds per op, ferroshm seconds per op)."""
    stdlib_class = stdlib_managers.SharedMemoryManager
    if stdlib_class is ferroshm.SharedMemoryManager:
        raise RuntimeError("multiprocessing.managers is patched: run without ferroshm.patch_stdlib()")
    # One manager at a time: two standard-library managers alive in one
    # process sometimes leave resource-tracker entries behind at exit
    # (tracker warnings for segments that are gone), so they never overlap.
    classes = {"stdlib": stdlib_class, "ferroshm": ferroshm.SharedMemoryManager}
    best = {impl: float("inf") for impl in classes}
    for _ in range(ROUNDS):
        for impl, manager_class in classes.items():
            best[impl] = min(best[impl], _time_allocations(manager_class, number))
    return [(f"SharedMemoryManager.SharedMemory({SIZE}) + close", best["stdlib"], best["ferroshm"])]


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    print(f"{'operation':<48} {'stdlib':>12} {'ferroshm':>12} {'ratio':>8}")
    for label, stdlib_s, ferro_s in bench_manager(number):
        print(f"{label:<48} {stdlib_s * 1e6:>10.1f}us {ferro_s * 1e6:>10.1f}us {stdlib_s / ferro_s:>7.1f}x")


if __name__ == "__main__":
    main()
