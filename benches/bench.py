"""Side-by-side benchmark: ferroshm against multiprocessing.shared_memory.

Both implementations run the same operation in the same process, in
alternating rounds, and the best round of each is kept (the least disturbed
by the rest of the machine). The table gives time per operation and the
ratio stdlib / ferroshm (above 1: ferroshm is faster).

    python benches/bench.py [--quick] [--json FILE] [NAME_FILTER]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import repeat
import multiprocessing.managers as stdlib_managers
from multiprocessing import shared_memory as stdlib_shm
from typing import Callable

import ferroshm

IMPLS = {"stdlib": stdlib_shm, "ferroshm": ferroshm}


def best_time(fn: Callable[[int], object], number: int, rounds: int) -> float:
    """Seconds per operation, where ``fn(k)`` performs the operation ``k``
    times in a plain loop: the best of ``rounds`` rounds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn(number)
        best = min(best, (time.perf_counter() - start) / number)
    return best


def looped(op: Callable[[], object]) -> Callable[[int], None]:
    """``op`` repeated: for operations that cost much more than a call."""

    def fn(k: int) -> None:
        for _ in repeat(None, k):
            op()

    return fn


class Case:
    """One benchmark: ``setup(module)`` returns (fn, teardown), where
    ``fn(k)`` performs the operation ``k`` times."""

    def __init__(self, name: str, number: int, setup):
        self.name, self.number, self.setup = name, number, setup


def shm_attach(sm):
    target = sm.SharedMemory(create=True, size=4096)

    @looped
    def fn():
        sm.SharedMemory(target.name).close()

    def teardown():
        target.close()
        target.unlink()

    return fn, teardown


def shm_create(sm):
    @looped
    def fn():
        s = sm.SharedMemory(create=True, size=4096)
        s.close()
        s.unlink()

    return fn, lambda: None


def _list_fixture(sm, items):
    made = []

    def teardown():
        for sl in made:
            sl.shm.close()
            sl.shm.unlink()

    sl = sm.ShareableList(items)
    made.append(sl)
    return sl, made, teardown


def list_get(items, index):
    def setup(sm):
        sl, _, teardown = _list_fixture(sm, items)

        def fn(k):
            for _ in repeat(None, k):
                sl[index]

        return fn, teardown

    return setup


def list_set(items, index, value):
    def setup(sm):
        sl, _, teardown = _list_fixture(sm, items)

        def fn(k):
            for _ in repeat(None, k):
                sl[index] = value

        return fn, teardown

    return setup


def list_iterate(n):
    def setup(sm):
        sl, _, teardown = _list_fixture(sm, range(n))

        @looped
        def fn():
            list(sl)

        return fn, teardown

    return setup


def list_create(n):
    def setup(sm):
        items = list(range(n))

        @looped
        def fn():
            sl = sm.ShareableList(items)
            sl.shm.close()
            sl.shm.unlink()

        return fn, lambda: None

    return setup


def list_attach(n):
    def setup(sm):
        sl, _, teardown = _list_fixture(sm, range(n))
        name = sl.shm.name

        @looped
        def fn():
            sm.ShareableList(name=name).shm.close()

        return fn, teardown

    return setup


def manager_allocate(allocate):
    """``allocate(smm)`` through a started manager of each implementation."""

    def setup(sm):
        # One manager of each kind at a time: two standard-library managers
        # alive in one process sometimes leave resource-tracker entries behind.
        manager_class = ferroshm.SharedMemoryManager if sm is ferroshm else stdlib_managers.SharedMemoryManager
        smm = manager_class()
        smm.start()
        for _ in range(20):  # warm up: connection, caches
            allocate(smm)

        @looped
        def fn():
            allocate(smm)

        return fn, smm.shutdown

    return setup


def manager_shared_memory(smm):
    smm.SharedMemory(4096).close()


def manager_shareable_list(smm):
    smm.ShareableList(SMALL).shm.close()


SMALL = [0, 1, "hello", b"bytes", 2.5, None, True, 7]

CASES = [
    Case("SharedMemory attach+close (4 KiB)", 2000, shm_attach),
    Case("SharedMemory create+close+unlink (4 KiB)", 1000, shm_create),
    Case("ShareableList get int", 20000, list_get(SMALL, 1)),
    Case("ShareableList get str", 20000, list_get(SMALL, 2)),
    Case("ShareableList set int", 20000, list_set(SMALL, 1, 12345)),
    Case("ShareableList set str", 20000, list_set(SMALL, 2, "world")),
    Case("list(ShareableList) of 100,000 ints", 5, list_iterate(100_000)),
    Case("ShareableList(range(100,000)) create", 5, list_create(100_000)),
    Case("ShareableList attach, 100,000 items", 20, list_attach(100_000)),
    Case("ShareableList attach, 10 items", 200, list_attach(10)),
    Case("SharedMemoryManager.SharedMemory(4096) + close", 300, manager_allocate(manager_shared_memory)),
    Case("SharedMemoryManager.ShareableList(8 items) + close", 300, manager_allocate(manager_shareable_list)),
]


def run(cases, scale: float, rounds: int):
    rows = []
    for case in cases:
        number = max(1, int(case.number * scale))
        fns = {}
        teardowns = []
        for label, module in IMPLS.items():
            fn, teardown = case.setup(module)
            fns[label] = fn
            teardowns.append(teardown)
        try:
            best = {label: float("inf") for label in fns}
            for _ in range(rounds):  # alternate, so both see the same machine
                for label, fn in fns.items():
                    best[label] = min(best[label], best_time(fn, number, 1))
        finally:
            for teardown in teardowns:
                teardown()
        rows.append((case.name, best["stdlib"], best["ferroshm"]))
    return rows


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:7.2f} {unit}"
    return f"{seconds / 1e-9:7.1f} ns"


def print_table(rows) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'operation':{width}}  {'stdlib':>10}  {'ferroshm':>10}  {'speed-up':>8}")
    for name, std_t, our_t in rows:
        print(f"{name:{width}}  {fmt_time(std_t):>10}  {fmt_time(our_t):>10}  {std_t / our_t:7.1f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("filter", nargs="?", default="", help="run only cases whose name contains this")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if stdlib_shm.SharedMemory is ferroshm.SharedMemory:
        raise SystemExit("the standard library is patched (ferroshm.patch_stdlib()): nothing to compare")
    cases = [c for c in CASES if args.filter.lower() in c.name.lower()]
    rows = run(cases, 0.2 if args.quick else 1.0, 3 if args.quick else 7)
    print(f"Python {sys.version.split()[0]}, ferroshm {ferroshm.__version__}; best of alternating rounds")
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"operation": n, "stdlib_s": s, "ferroshm_s": o, "speedup": s / o} for n, s, o in rows], f, indent=2)


if __name__ == "__main__":
    main()
