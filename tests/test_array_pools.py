"""Shared arrays handed to worker processes, by name: ProcessPoolExecutor,
multiprocessing.Pool and Queue (fork, spawn and forkserver), joblib's loky
backend and a Dask local cluster of worker processes (these two from a
process of their own). Each worker writes into the same memory; each pickle
is small whatever the array's size."""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import ferroshm
from ferroshm.array import SharedArray

POOL_CLIENT = Path(__file__).parent / "array_helpers" / "pool_client.py"
START_METHODS = ["fork", "spawn", "forkserver"]


def fill(view: SharedArray, value: float) -> tuple:
    """Runs in a worker: write `value` into `view` and report what it got."""
    assert isinstance(view, SharedArray)
    view[...] = value
    return view.name, view.shape, float(view.sum())


def last(array: np.ndarray) -> float:
    return float(array[-1])


def double_in_place(view: SharedArray) -> float:
    view *= 2
    return float(view.sum())


def consume(queue, done) -> None:
    """Runs in a child: take views from the queue until None; fill each
    with its index."""
    while True:
        item = queue.get()
        if item is None:
            break
        index, view = item
        view[:] = index
    done.put("ok")


@pytest.mark.parametrize("start_method", START_METHODS)
def test_process_pool_executor_writes_into_the_same_memory(start_method):
    a = ferroshm.zeros((4, 1000))
    try:
        with ProcessPoolExecutor(2, mp_context=mp.get_context(start_method)) as pool:
            futures = [pool.submit(fill, a[i], i + 1) for i in range(4)]
            results = [f.result() for f in futures]
            assert pool.submit(last, a[3]).result() == 4.0
        assert results == [(a.name, (1000,), 1000.0 * (i + 1)) for i in range(4)]
        assert a[:, 0].tolist() == [1, 2, 3, 4] and a.sum() == 10_000
    finally:
        a.unlink()


@pytest.mark.parametrize("start_method", START_METHODS)
def test_pool_map_over_slices(start_method):
    a = ferroshm.share(np.arange(1.0, 11.0))
    try:
        with mp.get_context(start_method).Pool(2) as pool:
            sums = pool.map(double_in_place, [a[i : i + 2] for i in range(0, 10, 2)])
        assert sums == [6.0, 14.0, 22.0, 30.0, 38.0]
        assert a.tolist() == [2.0 * x for x in range(1, 11)]
    finally:
        a.unlink()


@pytest.mark.parametrize("start_method", START_METHODS)
def test_queue_carries_views(start_method):
    ctx = mp.get_context(start_method)
    a = ferroshm.zeros(12, dtype=np.int32)
    try:
        queue, done = ctx.Queue(), ctx.Queue()
        child = ctx.Process(target=consume, args=(queue, done))
        child.start()
        for i in range(4):
            queue.put((i + 1, a[3 * i : 3 * i + 3]))
        queue.put(None)
        assert done.get(timeout=60) == "ok"
        child.join(60)
        for q in (queue, done):  # no feeder thread left running
            q.close()
            q.join_thread()
        assert child.exitcode == 0
        assert a.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    finally:
        a.unlink()


@pytest.mark.parametrize("library", ["joblib", "dask"])
def test_joblib_loky_and_dask_local_cluster(library, tmp_path):
    # From a process of its own: both leave threads behind (see the helper).
    a = ferroshm.zeros(400_000)
    try:
        out = subprocess.run(
            [sys.executable, str(POOL_CLIENT), library, a.name, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, f"--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert [r[:2] for r in got["reports"]] == [[a.name, [100_000]]] * 4
        assert got["pid"] not in {r[2] for r in got["reports"]}  # worker processes did the writing
        assert a[:8].tolist() == [1, 2, 3, 4, 1, 2, 3, 4]
        assert a.sum() == 1_000_000
    finally:
        a.unlink()


def test_pickle_size_does_not_grow_with_the_array():
    # What every pool above sends per task: a few hundred bytes for 1 KiB and
    # for 64 MiB alike (a 1 GiB array pickles the same; see the benchmark).
    sizes = []
    for n in (128, 8 << 20):
        a = ferroshm.zeros(n)
        try:
            sizes.append(len(pickle.dumps((a, a[1:], a[::2]), protocol=pickle.HIGHEST_PROTOCOL)))
        finally:
            a.unlink()
    assert abs(sizes[0] - sizes[1]) <= 16  # larger ints in shapes and offsets take 3 bytes more
    assert max(sizes) < 600
