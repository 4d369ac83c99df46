"""Several processes share one NumPy array through shared memory.

The parent puts an array in shared memory, four worker processes each
transform their own quarter of it in place and report a partial sum through
a second shared array, and the parent checks every element.

With ferroshm that is a shared array passed to the workers as it is
(``ferroshm.share``, ``ferroshm.zeros``): it pickles by name, and leaving the
``with`` block removes it. The same pipeline written with the standard
library's ``multiprocessing.shared_memory`` needs the boilerplate below it:
create a segment of the right size, build the array over its buffer, pass
name, shape and dtype to each worker, delete every array before closing, and
unlink. Both run in alternating rounds, after a warm-up round each; the best
round of each is reported (on a busy machine, rounds vary by tens of percent:
use more rounds rather than fewer).

    python examples/numpy_pipeline.py [N_ITEMS] [N_WORKERS] [ROUNDS]
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import sys
import time
from multiprocessing import shared_memory

import numpy as np

import ferroshm

STEPS = 5  # sqrt and *2, this many times, on each element


def transform(part: np.ndarray) -> float:
    for _ in range(STEPS):
        np.sqrt(part, out=part)
        part *= 2.0
    return float(part.sum())


def quarter(n: int, index: int, workers: int) -> slice:
    return slice(index * n // workers, (index + 1) * n // workers)


def expected(n: int) -> np.ndarray:
    values = np.arange(n, dtype=np.float64)
    transform(values)
    return values


def check(data: np.ndarray, sums: np.ndarray) -> float:
    want = expected(len(data))
    if not np.array_equal(data, want):
        raise AssertionError("workers' results do not match")
    if not np.isclose(sums.sum(), want.sum()):
        raise AssertionError("partial sums do not add up")
    return float(sums.sum())


def cpu_seconds() -> float:
    """User and system time of this process and of its children that have
    been waited for (the workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(target, args_of, workers: int) -> None:
    procs = [mp.Process(target=target, args=args_of(i)) for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"worker {p.pid} exited with {p.exitcode}")


# --- with ferroshm's shared arrays ------------------------------------------------


def ferroshm_worker(data, sums, index: int, workers: int) -> None:
    sums[index] = transform(data[quarter(len(data), index, workers)])


def ferroshm_pipeline(n: int, workers: int) -> float:
    with ferroshm.share(np.arange(n, dtype=np.float64)) as data, ferroshm.zeros(workers) as sums:
        run(ferroshm_worker, lambda i: (data, sums, i, workers), workers)
        return check(data, sums)


# --- the same with the standard library -----------------------------------------


def stdlib_worker(data_name: str, sums_name: str, n: int, index: int, workers: int) -> None:
    data_shm = shared_memory.SharedMemory(data_name)
    sums_shm = shared_memory.SharedMemory(sums_name)
    data = np.ndarray((n,), dtype=np.float64, buffer=data_shm.buf)
    sums = np.ndarray((workers,), dtype=np.float64, buffer=sums_shm.buf)
    sums[index] = transform(data[quarter(n, index, workers)])
    # Every array must be gone before close() (or it raises BufferError, or
    # worse: a later access to the array crashes the process).
    del data, sums
    data_shm.close()
    sums_shm.close()


def stdlib_pipeline(n: int, workers: int) -> float:
    data_shm = shared_memory.SharedMemory(create=True, size=n * 8)
    sums_shm = shared_memory.SharedMemory(create=True, size=workers * 8)
    try:
        data = np.ndarray((n,), dtype=np.float64, buffer=data_shm.buf)
        sums = np.ndarray((workers,), dtype=np.float64, buffer=sums_shm.buf)
        data[:] = np.arange(n, dtype=np.float64)
        run(stdlib_worker, lambda i: (data_shm.name, sums_shm.name, n, i, workers), workers)
        total = check(data, sums)
        del data, sums
        return total
    finally:
        data_shm.close()
        sums_shm.close()
        data_shm.unlink()
        sums_shm.unlink()


# --------------------------------------------------------------------------------


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4_000_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    print(f"{workers} worker processes transform a shared array of {n:,} float64 ({n * 8 / 2**20:.0f} MiB)")
    print(f"in place ({STEPS} steps of sqrt and *2 on their part); the parent checks every element.")
    print(f"{mp.get_start_method()} start method; {rounds} rounds, alternating, after one warm-up round each.\n")
    pipelines = {"ferroshm": ferroshm_pipeline, "multiprocessing.shared_memory": stdlib_pipeline}
    for pipeline in pipelines.values():
        # Warm up, at full size: imports, the resource tracker, and the
        # allocator (the first 32 MiB np.arange of a process page-faults;
        # later ones reuse the heap), which would penalize whoever is first.
        pipeline(n, workers)
    times = {name: [] for name in pipelines}
    cpu = {name: [] for name in pipelines}
    totals = set()
    for r in range(rounds):
        order = list(pipelines) if r % 2 == 0 else list(reversed(pipelines))
        for name in order:
            start, start_cpu = time.perf_counter(), cpu_seconds()
            totals.add(pipelines[name](n, workers))
            times[name].append(time.perf_counter() - start)
            cpu[name].append(cpu_seconds() - start_cpu)
    print(f"  {'':30s} {'wall, best':>11} {'median':>9}   {'CPU, best':>10} {'median':>9}")
    for name, seconds in times.items():
        print(
            f"  {name:30s} {min(seconds) * 1000:8.1f} ms {statistics.median(seconds) * 1000:6.1f} ms   "
            f"{min(cpu[name]) * 1000:7.1f} ms {statistics.median(cpu[name]) * 1000:6.1f} ms"
        )
    if len(totals) != 1:
        raise AssertionError(f"the pipelines' checksums differ: {totals}")
    print(f"\nchecksum {totals.pop():.6e}, the same for both; all elements correct in every round")
    stdlib = "multiprocessing.shared_memory"
    ratio = min(times["ferroshm"]) / min(times[stdlib])
    cpu_ratio = min(cpu["ferroshm"]) / min(cpu[stdlib])
    print(f"ferroshm / stdlib, best round: {ratio:.2f} in wall time, {cpu_ratio:.2f} in CPU time")
    print("(CPU time: the parent's and the workers', user and system; it varies less than wall time")
    print("on a busy machine. The work is NumPy's and page faults; ferroshm reserves the pages at")
    print("creation, so a full /dev/shm is an OSError there instead of a SIGBUS at first write.)")


if __name__ == "__main__":
    main()
