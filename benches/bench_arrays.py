"""Handing a NumPy array to a worker process: by pickle, by the standard
library's SharedMemory boilerplate, and by a ferroshm shared array.

For each size (float64 arrays of 1 MiB, 100 MiB and 1 GiB by default), a
``ProcessPoolExecutor`` worker gets the array and either reads its last
element (``last``: the hand-over alone) or sums it (``sum``: a real task).
Each way is timed from ``submit`` to the result, in alternating rounds (the
order rotates every round, so all see the same machine); the best round of
each is kept. The data is put in shared memory beforehand, once (the
``setup`` rows time that: the standard library's create-and-copy against
``ferroshm.share``).

* pickle: ``pool.submit(task, array)``, the array pickled into the pipe.
* stdlib: ``pool.submit(task_by_name, shm.name, shape, dtype)``; the worker
  attaches ``multiprocessing.shared_memory.SharedMemory(name)`` (untracked on
  3.13+), builds ``np.ndarray(shape, dtype, buffer=shm.buf)``, runs the
  task, deletes the array and closes.
* ferroshm: ``pool.submit(task, shared)`` with ``shared = ferroshm.share(array)``:
  it pickles by name and the worker attaches.

Then the crossover: below which size pickling is cheaper, for the hand-over
of an array already shared, and for a one-off hand-over that first copies
the array into shared memory (``ferroshm.share`` + submit + unlink).

    python benches/bench_arrays.py [--sizes MiB,...] [--rounds N] [--json FILE]

(``--sizes ""`` runs the crossover alone.)

Run it in a private /dev/shm (the 1 GiB case holds 2 GiB there, and about
4 GiB of private memory while the array is pickled).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import resource_tracker
from multiprocessing import shared_memory as stdlib_shm
from typing import Callable, Dict, List

import numpy as np

import ferroshm

MiB = 1 << 20
STDLIB_ATTACH = {"track": False} if sys.version_info >= (3, 13) else {}


# --- what the worker runs ------------------------------------------------------


def last(a: np.ndarray) -> float:
    return float(a[-1])


def total(a: np.ndarray) -> float:
    return float(a.sum())


TASKS: Dict[str, Callable[[np.ndarray], float]] = {"last": last, "sum": total}


def run_task(task: str, a: np.ndarray) -> float:
    """pickle and ferroshm: the array itself is the argument."""
    return TASKS[task](a)


def run_task_by_name(task: str, name: str, shape: tuple, dtype: str) -> float:
    """The standard library's boilerplate, as users write it."""
    shm = stdlib_shm.SharedMemory(name, **STDLIB_ATTACH)
    a = np.ndarray(shape, dtype=dtype, buffer=shm.buf)
    try:
        return TASKS[task](a)
    finally:
        del a
        shm.close()


def warm_up() -> int:
    return 0


# --- timing --------------------------------------------------------------------


def timed(call: Callable[[], float]) -> tuple:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def bench_size(pool: ProcessPoolExecutor, nbytes: int, rounds: int) -> List[dict]:
    n = nbytes // 8
    data = np.arange(n, dtype=np.float64)
    rows = []

    # Setup: the standard library's create + copy, and ferroshm.share, each
    # timed (best of the rounds) with its unlink; the last of each is kept
    # for the hand-over.
    def stdlib_setup():
        shm = stdlib_shm.SharedMemory(create=True, size=data.nbytes)
        np.ndarray(data.shape, data.dtype, buffer=shm.buf)[:] = data
        return shm

    setup = {"stdlib": float("inf"), "ferroshm": float("inf")}
    for r in range(rounds):
        if r:  # the last round's segments go first, memory and all
            shm.close()
            shm.unlink()
            shared.unlink()
            del shm, shared
        seconds, shm = timed(stdlib_setup)
        setup["stdlib"] = min(setup["stdlib"], seconds)
        seconds, shared = timed(lambda: ferroshm.share(data))
        setup["ferroshm"] = min(setup["ferroshm"], seconds)
    rows.append({"size": nbytes, "task": "setup", "pickle": None, **setup})
    try:
        ways = {
            "pickle": lambda task: pool.submit(run_task, task, data).result(),
            "stdlib": lambda task: pool.submit(run_task_by_name, task, shm.name, data.shape, data.dtype.str).result(),
            "ferroshm": lambda task: pool.submit(run_task, task, shared).result(),
        }
        for task in TASKS:
            best = {way: float("inf") for way in ways}
            results = set()
            order = list(ways)
            for r in range(rounds):
                for way in order[r % 3 :] + order[: r % 3]:
                    seconds, result = timed(lambda: ways[way](task))
                    best[way] = min(best[way], seconds)
                    results.add(result)
            if len(results) != 1:
                raise AssertionError(f"the ways disagree on {task}: {results}")
            rows.append({"size": nbytes, "task": task, **best})
    finally:
        shm.close()
        shm.unlink()
        shared.unlink()
    return rows


def crossover(pool: ProcessPoolExecutor, rounds: int) -> List[dict]:
    """Hand-over of small arrays: pickle against ferroshm, the array already
    shared, and one-off (share + submit + unlink)."""
    rows = []
    # 64 B to 64 KiB by fours, then to 4 MiB by doubling.
    for nbytes in [64 << (2 * k) for k in range(6)] + [128 << (10 + k) for k in range(6)]:
        data = np.arange(nbytes // 8, dtype=np.float64)
        shared = ferroshm.share(data)

        def one_off():
            with ferroshm.share(data) as s:
                return pool.submit(run_task, "last", s).result()

        ways = {
            "pickle": lambda: pool.submit(run_task, "last", data).result(),
            "ferroshm": lambda: pool.submit(run_task, "last", shared).result(),
            "ferroshm_one_off": one_off,
        }
        best = {way: float("inf") for way in ways}
        order = list(ways)
        try:
            for r in range(rounds * 3):
                for way in order[r % 3 :] + order[: r % 3]:
                    best[way] = min(best[way], timed(ways[way])[0])
        finally:
            shared.unlink()
        rows.append({"size": nbytes, **best})
    return rows


# --- output --------------------------------------------------------------------


def fmt_size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} B"


def fmt_time(seconds) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3)):
        if seconds >= scale:
            return f"{seconds / scale:.2f} {unit}"
    return f"{seconds / 1e-6:.0f} µs"


def print_tables(rows: List[dict], cross: List[dict]) -> None:
    print(f"{'size':>8}  {'task':5}  {'pickle':>9}  {'stdlib':>9}  {'ferroshm':>9}  {'pickle/ferroshm':>15}  {'ferroshm/stdlib':>15}")
    for r in rows:
        speedup = f"{r['pickle'] / r['ferroshm']:.1f}x" if r["pickle"] else "-"
        print(
            f"{fmt_size(r['size']):>8}  {r['task']:5}  {fmt_time(r['pickle']):>9}  {fmt_time(r['stdlib']):>9}  "
            f"{fmt_time(r['ferroshm']):>9}  {speedup:>15}  {r['ferroshm'] / r['stdlib']:>14.2f}"
        )
    print()
    print("Crossover (task 'last'): pickle against a shared array, and against share + hand-over + unlink")
    print(f"{'size':>8}  {'pickle':>9}  {'shared':>9}  {'one-off':>9}")
    for r in cross:
        print(f"{fmt_size(r['size']):>8}  {fmt_time(r['pickle']):>9}  {fmt_time(r['ferroshm']):>9}  {fmt_time(r['ferroshm_one_off']):>9}")
    for key, what in (("ferroshm", "an array already shared"), ("ferroshm_one_off", "a one-off hand-over")):
        faster = [r["size"] for r in cross if r[key] < r["pickle"]]
        first = min(faster) if faster else None
        print(f"  {what}: ferroshm is faster from {fmt_size(first) if first else 'no size measured'}"
              f"{'' if first else ' (up to 4 MiB)'}, pickling below")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,100,1024", help="array sizes in MiB, comma-separated (default 1,100,1024)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per size (default: 25 below 100 MiB, 5 below 1 GiB, 3)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    sizes = [int(float(s) * MiB) for s in args.sizes.split(",") if s]
    method = mp.get_start_method()
    print(f"Python {sys.version.split()[0]}, NumPy {np.__version__}, ferroshm {ferroshm.__version__}; "
          f"ProcessPoolExecutor(1 worker, {method}); best of alternating rounds, submit to result")
    rows: List[dict] = []
    # The resource tracker runs before the pool's worker starts, as in a
    # program that made a segment before its pool: the worker shares it.
    # (Otherwise, before 3.13, the standard library's attaching worker
    # registers every name with a tracker of its own, which "cleans up"
    # the parent's segments when the worker exits: gh-82300.)
    resource_tracker.ensure_running()
    with ProcessPoolExecutor(1) as pool:
        for _ in range(5):
            pool.submit(warm_up).result()
        with ferroshm.zeros(1) as z:
            pool.submit(run_task, "last", z).result()  # imports in the worker
        for nbytes in sizes:
            rounds = args.rounds or (25 if nbytes < 100 * MiB else 5 if nbytes < 1024 * MiB else 3)
            rows += bench_size(pool, nbytes, rounds)
        cross = crossover(pool, 5)
    print_tables(rows, cross)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"handover": rows, "crossover": cross}, f, indent=2)


if __name__ == "__main__":
    main()
