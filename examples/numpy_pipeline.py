"""Several processes share one NumPy array through shared memory.

The parent puts an array in a shared-memory segment, four worker processes
attach to it by name, each transforms its own quarter in place and reports a
partial sum through a second segment, and the parent checks every element.
The same program runs twice, on ferroshm and on the standard library's
multiprocessing.shared_memory, and prints both timings.

    python examples/numpy_pipeline.py [N_ITEMS] [N_WORKERS]
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from multiprocessing import shared_memory as stdlib_shm

import numpy as np

import ferroshm

ROUNDS = 5


def worker(module_name: str, data_name: str, sums_name: str, n: int, index: int, workers: int) -> None:
    sm = ferroshm if module_name == "ferroshm" else stdlib_shm
    data_shm = sm.SharedMemory(data_name)
    sums_shm = sm.SharedMemory(sums_name)
    data = np.ndarray((n,), dtype=np.float64, buffer=data_shm.buf)
    sums = np.ndarray((workers,), dtype=np.float64, buffer=sums_shm.buf)
    lo, hi = index * n // workers, (index + 1) * n // workers
    part = data[lo:hi]
    for _ in range(ROUNDS):
        np.sqrt(part, out=part)
        part *= 2.0
    sums[index] = float(part.sum())
    # The standard library needs every array gone before close() (or it
    # raises BufferError, or worse); ferroshm would not mind either way.
    del data, sums, part
    data_shm.close()
    sums_shm.close()


def run(module, n: int, workers: int) -> tuple[float, float, int]:
    """One pass of the pipeline; returns (seconds, checksum, worker count)."""
    start = time.perf_counter()
    data_shm = module.SharedMemory(create=True, size=n * 8)
    sums_shm = module.SharedMemory(create=True, size=workers * 8)
    try:
        data = np.ndarray((n,), dtype=np.float64, buffer=data_shm.buf)
        data[:] = np.arange(n, dtype=np.float64)
        procs = [
            mp.Process(target=worker, args=(module.__name__.split(".")[0], data_shm.name, sums_shm.name, n, i, workers))
            for i in range(workers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            if p.exitcode != 0:
                raise RuntimeError(f"worker {p.pid} exited with {p.exitcode}")
        sums = np.ndarray((workers,), dtype=np.float64, buffer=sums_shm.buf)

        expected = np.arange(n, dtype=np.float64)
        for _ in range(ROUNDS):
            np.sqrt(expected, out=expected)
            expected *= 2.0
        if not np.array_equal(data, expected):
            raise AssertionError("workers' results do not match")
        total = float(sums.sum())
        if not np.isclose(total, expected.sum()):
            raise AssertionError("partial sums do not add up")
        del data, sums
        return time.perf_counter() - start, total, workers
    finally:
        data_shm.close()
        sums_shm.close()
        data_shm.unlink()
        sums_shm.unlink()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4_000_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    print(f"{workers} worker processes transform a shared array of {n:,} float64 ({n * 8 / 2**20:.0f} MiB)")
    print(f"in place ({ROUNDS} rounds of sqrt and *2 on their quarter); the parent checks every element.\n")
    results = {}
    for module in (ferroshm, stdlib_shm):
        run(module, 1000, workers)  # warm up: start-up costs not measured
        seconds, total, _ = run(module, n, workers)
        results[module.__name__] = seconds
        print(f"  {module.__name__:30s} {seconds * 1000:8.1f} ms   checksum {total:.6e}   all elements correct")
    ratio = results["ferroshm"] / results["multiprocessing.shared_memory"]
    print(f"\nferroshm / stdlib wall time: {ratio:.2f}. The work here is NumPy's and page faults;")
    print("ferroshm also reserves the segment's pages at creation, so a full /dev/shm is an OSError, not SIGBUS.")


if __name__ == "__main__":
    main()
