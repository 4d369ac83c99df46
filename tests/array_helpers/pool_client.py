"""Hand a shared array to joblib's loky workers or to a Dask local cluster's
worker processes, from a process of its own (run by
tests/test_array_pools.py): both libraries leave threads running in the
process that used them (loky's executor manager, Dask's offload pool), and a
test process with threads must not fork any more (Python 3.12+ warns).

Usage: python pool_client.py joblib|dask NAME TEMP_DIR

Attaches to the float64 array NAME (4 x 100_000 elements), has each of 4
tasks fill a quarter of it (every 4th element from 0, 1, 2, 3) with 1, 2, 3
and 4 in a worker process, and prints one JSON object: the tasks' reports
(the name and shape each worker got, the pid it ran in) and this pid.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import ferroshm
from ferroshm.array import SharedArray


def fill(view: SharedArray, value: float) -> list:
    """In a worker: write `value` into `view`. A view that came as anything
    but a SharedArray (an np.memmap of a copy, a plain array) fails."""
    assert type(view) is SharedArray, type(view)
    view[...] = value
    return [view.name, list(view.shape), os.getpid()]


def with_joblib(a: SharedArray, temp_dir: str) -> list:
    import joblib

    # max_nbytes: beyond 1 MB joblib would memmap a plain array into a file
    # of temp_dir and hand the worker an np.memmap; a SharedArray goes by
    # name. (temp_dir: joblib's default folder is in /dev/shm.)
    with joblib.Parallel(n_jobs=2, backend="loky", max_nbytes="1M", temp_folder=temp_dir) as parallel:
        return parallel(joblib.delayed(fill)(a[i::4], i + 1.0) for i in range(4))


def with_dask(a: SharedArray, temp_dir: str) -> list:
    import distributed

    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, local_directory=temp_dir
    ) as cluster, distributed.Client(cluster) as client:
        # pure=False: the task writes into its argument, so Dask must not
        # take two calls for the same one (and need not hash the array).
        futures = [client.submit(fill, a[i::4], i + 1.0, pure=False) for i in range(4)]
        return client.gather(futures)


def main() -> None:
    library, name, temp_dir = sys.argv[1:]
    a = ferroshm.attach(name)
    assert a.shape == (400_000,) and a.dtype == np.float64
    reports = {"joblib": with_joblib, "dask": with_dask}[library](a, temp_dir)
    print(json.dumps({"reports": reports, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
