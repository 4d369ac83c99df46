"""Stress (issue 5): several processes, each with several threads, create,
fill, publish, attach, read, write, close and unlink segments and lists for
a bounded time. No crash, no torn 8-byte value in a list, no leak.

Values written to the shared lists differ from each other in all 8 bytes
(helpers_robustness/stress_worker.py), so a torn read cannot go unnoticed.
The number of operations of each kind is shown in pytest's output.
``make fuzz`` runs it longer.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import threading
import time
from collections import Counter

import pytest

from ferroshm import ShareableList, SharedMemory

from conftest import segments
from helpers_robustness.report import fuzz_scale, report
from helpers_robustness.stress_worker import VALUES, worker_main

pytest.importorskip("numpy")

PROCESSES = 3
THREADS = 3


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_stress(start_method, shm_name, request):
    seconds = fuzz_scale(3.0 if start_method == "fork" else 2.0, 60.0)
    if start_method == "fork":
        # Forking a multi-threaded process is deprecated (a DeprecationWarning
        # since 3.12, raised under -Werror from 3.15, gh-135427): say so here
        # if an earlier test left a thread running, rather than fail below.
        tasks = os.listdir("/proc/self/task")
        assert len(tasks) == 1, f"{len(tasks)} threads before the fork; Python's: {threading.enumerate()}"
    ctx = mp.get_context(start_method)
    prefix = shm_name
    directory = ShareableList([0] * (PROCESSES * THREADS), name=f"{prefix}_dir")
    lists = [ShareableList(VALUES[i : i + 16], name=f"{prefix}_list{i}") for i in range(2)]
    plain = SharedMemory(f"{prefix}_plain", create=True, size=4096)
    procs = []
    results = []
    try:
        q = ctx.Queue()
        # Spawned children take a while to start: each one's deadline counts
        # from its own start, so that every process gets the full time.
        for p in range(PROCESSES):
            args = (q, prefix, p, THREADS, directory.shm.name, [sl.shm.name for sl in lists],
                    plain.name, None, p + 1)
            procs.append(ctx.Process(target=_run_for, args=(seconds, *args)))
        for proc in procs:
            proc.start()
        while len(results) < PROCESSES:
            try:
                results.append(q.get(timeout=1))
            except queue_module.Empty:
                dead = [proc for proc in procs if proc.exitcode not in (None, 0)]
                assert not dead, f"stress process died: exit codes {[d.exitcode for d in dead]}"
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0, f"stress process {proc.pid} exited with {proc.exitcode}"
        # No crash, no torn value, nothing else went wrong.
        problems = [p for r in results for p in r["problems"]]
        assert not problems, "\n".join(problems[:20])
        # Every value in the shared lists is still one that was written.
        for sl in lists:
            assert all(v in VALUES for v in sl)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()
        for sl in [directory, *lists]:
            sl.close()
            sl.unlink()
        plain.close()
        plain.unlink()
    # No leak: every segment the workers created is gone.
    left = sorted(n for n in segments() if n.startswith(prefix))
    assert not left, left
    counts = Counter()
    for r in results:
        counts.update(r["counts"])
    total = sum(counts.values())
    # Each kind of operation happened, many times over.
    for kind in ("segments_created", "peer_attaches", "list_writes", "list_reads", "lists_created",
                 "handle_swaps", "numpy_after_close"):
        assert counts[kind] > 0, (kind, counts)
    report(request, {"processes": PROCESSES, "threads_each": THREADS, "seconds": seconds,
                     "operations": total, **dict(sorted(counts.items()))})


def _run_for(seconds, queue, *args):
    # The deadline is set here, in the worker, once it has started.
    args = list(args)
    args[6] = time.monotonic() + seconds
    worker_main(queue, *args)
