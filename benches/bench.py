"""Side-by-side benchmark: ferroshm against multiprocessing.shared_memory.

Wall time: both implementations run the same operation in the same process,
in alternating rounds, and the best round of each is kept (the least
disturbed by the rest of the machine).

Instructions (where valgrind is installed; ``--no-instructions`` skips
them): each implementation runs the operation N times and 0 times in a
fresh process under ``valgrind --tool=callgrind`` (same set-up and warm-up);
the difference divided by N is the user-space instructions per operation,
which, unlike wall time, repeats within a few percent on a busy machine.
"client" is the process running the loop; "helpers" the other processes it
makes work (the resource tracker, a manager's server). Kernel time (system
calls, page faults) is not counted: that is what the wall time adds.

The table gives both, and the ratios stdlib / ferroshm (above 1: ferroshm
is faster, or runs fewer instructions).

    python benches/bench.py [--quick] [--no-instructions] [--json FILE] [NAME_FILTER]
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
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
    ``fn(k)`` performs the operation ``k`` times; ``number`` operations a
    timed round, ``counted`` under callgrind."""

    def __init__(self, name: str, number: int, setup, counted: int | None = None):
        self.name, self.number, self.setup = name, number, setup
        self.counted = counted if counted is not None else max(1, number // 5)


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


def shm_create_write(size):
    """Create, write every byte once (the pages' first touch), close, unlink."""

    def setup(sm):
        data = b"\1" * size

        @looped
        def fn():
            s = sm.SharedMemory(create=True, size=size)
            s.buf[:size] = data
            s.close()
            s.unlink()

        return fn, lambda: None

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
    Case("SharedMemory create+first write of 64 MiB", 3, shm_create_write(64 << 20), counted=2),
    Case("ShareableList get int", 20000, list_get(SMALL, 1)),
    Case("ShareableList get str", 20000, list_get(SMALL, 2)),
    Case("ShareableList set int", 20000, list_set(SMALL, 1, 12345)),
    Case("ShareableList set str", 20000, list_set(SMALL, 2, "world")),
    Case("list(ShareableList) of 100,000 ints", 5, list_iterate(100_000), counted=2),
    Case("ShareableList(range(100,000)) create", 5, list_create(100_000), counted=2),
    Case("ShareableList attach, 100,000 items", 20, list_attach(100_000), counted=20),
    Case("ShareableList attach, 10 items", 200, list_attach(10), counted=200),
    Case("SharedMemoryManager.SharedMemory(4096) + close", 300, manager_allocate(manager_shared_memory), counted=100),
    Case("SharedMemoryManager.ShareableList(8 items) + close", 300, manager_allocate(manager_shareable_list), counted=100),
]


# -- instruction counts ---------------------------------------------------------


def child(impl: str, index: int, number: int) -> None:
    """The process callgrind watches: set up, warm up, run the operation
    ``number`` times, tear down."""
    fn, teardown = CASES[index].setup(IMPLS[impl])
    try:
        fn(min(CASES[index].counted, 20))  # warm-up, the same in both runs
        gc.collect()
        gc.freeze()  # set-up's objects out of the collector's way, in both runs
        fn(number)
    finally:
        teardown()


def _callgrind_totals(outdir: str, client_pid: int) -> tuple[int, int]:
    """(client, helpers) instruction totals of the processes of one run."""
    client = helpers = 0
    for path in glob.glob(os.path.join(outdir, "cg.*")):
        total = 0
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total = int(line.split()[1])
        if path.endswith(f".{client_pid}"):
            client = total
        else:
            helpers += total
    return client, helpers


def count(impls, index: int, number: int) -> dict[str, dict[str, float]]:
    """User-space instructions per operation, for each implementation:
    ``{impl: {"client": ..., "helpers": ...}}``. The N and 0 runs of every
    implementation run at once (callgrind's counts do not depend on what
    else the machine does)."""
    outdirs, procs = {}, {}
    try:
        for impl in impls:
            for n in (number, 0):
                outdir = outdirs[impl, n] = tempfile.mkdtemp(prefix="ferroshm-bench-cg-")
                cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                       f"--callgrind-out-file={outdir}/cg.%p", f"--log-file={outdir}/vg.%p",
                       sys.executable, os.path.abspath(__file__), "--child", impl, str(index), str(n)]
                # A fixed hash seed: both runs then lay out their dicts and
                # sets the same way, and the difference is the operations'.
                procs[impl, n] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                                  env=dict(os.environ, PYTHONHASHSEED="0"))
        totals = {}
        for key, proc in procs.items():
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"callgrind run failed ({key[0]}, {CASES[index].name}):\n{err}")
            totals[key] = _callgrind_totals(outdirs[key], proc.pid)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for outdir in outdirs.values():
            shutil.rmtree(outdir, ignore_errors=True)
    result = {}
    for impl in impls:
        (client_n, helpers_n), (client_0, helpers_0) = totals[impl, number], totals[impl, 0]
        result[impl] = {"client": (client_n - client_0) / number, "helpers": (helpers_n - helpers_0) / number}
    return result


def run(cases, scale: float, rounds: int, instructions: bool):
    rows = []
    for case in cases:
        counts = {}
        if instructions:
            index = CASES.index(case)
            number = max(1, int(case.counted * scale))
            counts = count(list(IMPLS), index, number)
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
        rows.append((case.name, best["stdlib"], best["ferroshm"], counts))
    return rows


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:7.2f} {unit}"
    return f"{seconds / 1e-9:7.1f} ns"


def fmt_count(counts: dict, label: str) -> str:
    if label not in counts:
        return "-"
    c = counts[label]
    text = f"{c['client']:,.0f}"
    return text + (f" +{c['helpers']:,.0f}" if c["helpers"] >= 50 else "")


def print_table(rows) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'operation':{width}}  {'stdlib':>10}  {'ferroshm':>10}  {'speed-up':>8}"
          f"  {'stdlib instr':>16}  {'ferroshm instr':>16}  {'instr ratio':>11}")
    for name, std_t, our_t, counts in rows:
        ratio = "-"
        if counts:
            ratio = f"{counts['stdlib']['client'] / counts['ferroshm']['client']:10.1f}x"
        print(f"{name:{width}}  {fmt_time(std_t):>10}  {fmt_time(our_t):>10}  {std_t / our_t:7.1f}x"
              f"  {fmt_count(counts, 'stdlib'):>16}  {fmt_count(counts, 'ferroshm'):>16}  {ratio:>11}")
    if any(counts for *_, counts in rows):
        print("instr: user-space instructions per operation of the process running it (callgrind);"
              " +N: those of the processes it made work (resource tracker, manager server)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("filter", nargs="?", default="", help="run only cases whose name contains this")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--no-instructions", action="store_true", help="wall time only (no callgrind runs)")
    parser.add_argument("--child", nargs=3, metavar=("IMPL", "CASE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        impl, index, number = args.child
        child(impl, int(index), int(number))
        return
    if stdlib_shm.SharedMemory is ferroshm.SharedMemory:
        raise SystemExit("the standard library is patched (ferroshm.patch_stdlib()): nothing to compare")
    cases = [c for c in CASES if args.filter.lower() in c.name.lower()]
    instructions = not args.no_instructions and shutil.which("valgrind") is not None
    if not args.no_instructions and not instructions:
        print("valgrind not found: wall time only (no instruction counts)", file=sys.stderr)
    rows = run(cases, 0.2 if args.quick else 1.0, 3 if args.quick else 7, instructions)
    print(f"Python {sys.version.split()[0]}, ferroshm {ferroshm.__version__}; best of alternating rounds")
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"operation": n, "stdlib_s": s, "ferroshm_s": o, "speedup": s / o, "instructions": c}
                       for n, s, o, c in rows], f, indent=2)


if __name__ == "__main__":
    main()
