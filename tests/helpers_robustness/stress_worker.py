"""One process of the stress test (tests/test_stress.py): several threads
create, fill, publish, attach, read, write, close and unlink segments and
lists, for a bounded time, and report what they did and what went wrong.

Values written to shared lists come from VALUES, whose members differ from
each other in all 8 bytes: a value read that is not in VALUES was torn
(part of one write and part of another).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter

import numpy as np

from ferroshm import ShareableList, SharedMemory
from helpers_robustness import gil_enabled

#: 0x0101010101010101 * k: every byte is k, so any two differ in all 8 bytes.
VALUES = [0x0101010101010101 * k for k in range(1, 128)]
VALUE_SET = frozenset(VALUES)

#: Free-threaded CPython 3.13 can report one memoryview, used by several
#: threads at once, as released (gh-155606; a bytearray's shows it too, see
#: the README). There, the threads' peeks into the shared handle take turns;
#: other threads still swap and close the handle under them.
MEMORYVIEW_RACE = sys.version_info[:2] == (3, 13) and not gil_enabled()


def fill_byte(seq: int) -> int:
    return seq % 251 + 1


def segment_name(prefix: str, proc: int, thread: int, seq: int) -> str:
    return f"{prefix}_{proc}_{thread}_{seq}"


class Worker:
    def __init__(self, prefix, proc, threads, directory_name, list_names, plain_name, deadline, seed):
        self.prefix = prefix
        self.proc = proc
        self.threads = threads
        self.directory_name = directory_name
        self.list_names = list_names
        self.plain_name = plain_name
        self.deadline = deadline
        self.seed = seed
        self.counts = Counter()
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.peek_turns = threading.Lock() if MEMORYVIEW_RACE else contextlib.nullcontext()
        # One handle per process that threads swap and use concurrently.
        self.shared_handle = SharedMemory(plain_name, track=False)
        # One list handle per process, used by every thread at once.
        self.shared_lists = [ShareableList(name=n) for n in list_names]
        self.directory = ShareableList(name=directory_name)

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    # -- operations; each returns the name of what it counted
    def churn(self, t, rng, state):
        """Create a segment, fill it, publish it, unlink the previous one."""
        seq = state["seq"] = state["seq"] + 1
        name = segment_name(self.prefix, self.proc, t, seq)
        size = rng.choice([1, 8, 4095, 4096, 4097, 65536, rng.randint(1, 200_000)])
        shm = SharedMemory(name, create=True, size=size)
        shm.buf[:] = bytes([fill_byte(seq)]) * size
        shm.close()
        slot = self.proc * self.threads + t
        self.directory[slot] = seq  # published only once filled
        if state["last"] is not None:
            state["last"].unlink()  # closed handles still unlink
        state["last"] = shm
        return "segments_created"

    def peer_attach(self, t, rng, state):
        """Attach to a segment another thread or process published."""
        slot = rng.randrange(len(self.directory))
        proc, thread = divmod(slot, self.threads)
        seq = self.directory[slot]
        if seq == 0:
            return "peer_attach_nothing_yet"
        try:
            shm = SharedMemory(segment_name(self.prefix, proc, thread, seq), track=False)
        except FileNotFoundError:
            return "peer_attach_gone"  # already replaced and unlinked: fine
        with shm:
            data = bytes(shm.buf)
        want = fill_byte(seq)
        if data != bytes([want]) * len(data):
            self.problem(f"segment {proc}/{thread}/{seq} holds other bytes than its creator wrote")
        return "peer_attaches"

    def list_write(self, t, rng, state):
        sl = rng.choice(self.shared_lists)
        sl[rng.randrange(len(sl))] = rng.choice(VALUES)
        return "list_writes"

    def list_read(self, t, rng, state):
        sl = rng.choice(self.shared_lists)
        i = rng.randrange(len(sl))
        v = sl[i]
        if v not in VALUE_SET:
            self.problem(f"torn value {v:#x} at index {i}")
        return "list_reads"

    def list_read_all(self, t, rng, state):
        sl = rng.choice(self.shared_lists)
        torn = [v for v in list(sl) if v not in VALUE_SET]
        if torn:
            self.problem(f"torn values {[hex(v) for v in torn]}")
        return "list_full_reads"

    def own_list(self, t, rng, state):
        """Create a list, attach a second handle, check, close, unlink."""
        items = [rng.choice(VALUES) for _ in range(rng.randint(0, 50))] + ["s" * rng.randint(0, 20), None, 1.5]
        with ShareableList(items) as sl:
            try:
                with ShareableList(name=sl.shm.name) as again:
                    if list(again) != items:
                        self.problem("a new list read back other items")
            finally:
                sl.unlink()
        return "lists_created"

    def swap_handle(self, t, rng, state):
        """Replace the process's shared handle and close the old one while
        other threads may be using it."""
        new = SharedMemory(self.plain_name, track=False)
        with self.lock:
            old, self.shared_handle = self.shared_handle, new
        old.close()
        return "handle_swaps"

    def peek_handle(self, t, rng, state):
        with self.peek_turns:
            buf = self.shared_handle.buf  # None once another thread closed it
            if buf is None:
                return "handle_peeks_closed"
            arr = np.frombuffer(buf, dtype=np.uint8)
            arr[rng.randrange(len(arr))] = 1
            if int(arr.max()) > 1:
                self.problem("plain segment holds a byte nobody wrote")
            del arr, buf  # the array's export of buf ends in turn too
        return "handle_peeks"

    def numpy_after_close(self, t, rng, state):
        shm = SharedMemory(create=True, size=8 * 1024)
        a = np.ndarray((1024,), dtype=np.int64, buffer=shm.buf)
        shm.close()
        shm.unlink()
        a[:] = VALUES[t % len(VALUES)]  # the mapping outlives close+unlink
        if int(a[-1]) != VALUES[t % len(VALUES)]:
            self.problem("array over a closed segment lost its data")
        return "numpy_after_close"

    OPS = [
        (churn, 3), (peer_attach, 3), (list_write, 6), (list_read, 6), (list_read_all, 2),
        (own_list, 2), (swap_handle, 1), (peek_handle, 3), (numpy_after_close, 1),
    ]

    def thread_main(self, t):
        rng = random.Random(self.seed * 1000 + t)
        ops, weights = zip(*self.OPS)
        state = {"seq": 0, "last": None}
        counts = Counter()
        try:
            while time.monotonic() < self.deadline:
                op = rng.choices(ops, weights)[0]
                counts[op(self, t, rng, state)] += 1
        except BaseException:
            self.problem(f"thread {t}: {traceback.format_exc()}")
        finally:
            if state["last"] is not None:
                try:
                    state["last"].unlink()
                except BaseException:
                    self.problem(f"thread {t} final unlink: {traceback.format_exc()}")
            with self.lock:
                self.counts.update(counts)

    def run(self) -> dict:
        threads = [threading.Thread(target=self.thread_main, args=(t,)) for t in range(self.threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.shared_handle.close()
        for sl in self.shared_lists:
            sl.close()
        self.directory.close()
        return {"counts": dict(self.counts), "problems": self.problems}


def worker_main(queue, *args) -> None:
    """Entry point of one stress process (run through multiprocessing)."""
    try:
        result = Worker(*args).run()
    except BaseException:
        result = {"counts": {}, "problems": [traceback.format_exc()]}
    result["pid"] = os.getpid()
    queue.put(result)
