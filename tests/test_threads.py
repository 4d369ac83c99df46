"""Threads sharing lists, iterators and segments (issue 18, free-threading).

The extension declares that it runs without the GIL, so on a free-threaded
Python any of its objects may be used by several threads at the same
moment. These tests run on every build: on a GIL build the switch interval
is cut to a microsecond so that threads interleave between bytecodes as
often as possible; on a free-threaded build they really run at once.

What must hold:

* nothing crashes, and the only exceptions are the documented ones
  (ValueError for an operation on a closed list);
* every value read is one that someone wrote: numbers and one-word strings
  whole (single 8-byte atomic accesses), a longer bytes item word by word
  (its 8-byte words are each whole, possibly from different writes: the
  README's torn-read guarantee);
* one iterator shared by threads hands out every item exactly once;
* every segment is gone at the end (conftest checks /dev/shm).
"""

from __future__ import annotations

import random
import struct
import sys
import sysconfig
import threading
import time

import pytest

from conftest import run_python
from ferroshm import ShareableList, SharedMemory
from helpers_robustness import gil_enabled
from helpers_robustness.report import report

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


@pytest.fixture(autouse=True)
def fast_switching():
    """On a GIL build, switch threads as often as the interpreter can."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def run_threads(targets, seconds):
    """Start one thread per target (a function of ``deadline``) at once,
    wait for all, and re-raise the first exception any of them raised."""
    errors = []
    barrier = threading.Barrier(len(targets))

    def wrap(target):
        try:
            barrier.wait()
            target(time.monotonic() + seconds)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((target.__name__, e))

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        name, first = errors[0]
        raise AssertionError(f"{len(errors)} thread(s) failed, first {name}: {first!r}") from first


# Item layout of the stress list: which writers write which values.
INTS = 0  # slots 0-3: ints; a writer w writes (w << 32) | counter
FLOATS = 4  # slots 4-5: floats w + (counter % 2**20) / 2**20
WORDS = 6  # slots 6-7: str of 1-8 ASCII characters (one 8-byte word)
WIDE = 8  # slot 8: 24 bytes, each 8-byte word all one letter
STRS = [s * k for s in "abcdefgh" for k in range(1, 9)]
WIDE_WORDS = [bytes([c]) * 8 for c in b"ABCDEFGH"]
INITIAL = [0, 1, 2, 3, 0.5, 1.5, "init", "x", b"A" * 24]
WRITERS = 3


def legal(i, value):
    """Whether ``value`` read at slot ``i`` is one someone wrote there."""
    if value == INITIAL[i] and type(value) is type(INITIAL[i]):
        return True
    if i < FLOATS:
        return type(value) is int and 0 <= value >> 32 < WRITERS
    if i < WORDS:
        return type(value) is float and 0 <= value < WRITERS
    if i < WIDE:
        return type(value) is str and value in STRS
    return (
        type(value) is bytes
        and len(value) == 24
        and all(value[k : k + 8] in WIDE_WORDS for k in (0, 8, 16))
    )


def write_one(sl, w, counter, rng):
    i = rng.randrange(len(INITIAL))
    if i < FLOATS:
        sl[i] = (w << 32) | counter
    elif i < WORDS:
        sl[i] = w + (counter % 2**20) / 2**20
    elif i < WIDE:
        sl[i] = rng.choice(STRS)
    else:
        sl[i] = b"".join(rng.choice(WIDE_WORDS) for _ in range(3))


def check_all(values):
    for i, value in enumerate(values):
        assert legal(i, value), (i, value)


def test_threads_share_lists_iterators_and_segments(request):
    main = ShareableList(INITIAL)
    name = main.shm.name
    raw = SharedMemory(create=True, size=4096)
    raw_name = raw.name
    struct.pack_into("q", raw.buf, 0, 0)
    counts = {
        "reads": 0,
        "writes": 0,
        "iterations": 0,
        "attaches": 0,
        "closes": 0,
        "closed_reads": 0,
        "created": 0,
    }
    lock = threading.Lock()

    def count(key, n=1):
        with lock:
            counts[key] += n

    def writer(w):
        def write(deadline):
            rng = random.Random(w)
            n = 0
            while time.monotonic() < deadline:
                write_one(main, w, n, rng)
                n += 1
            count("writes", n)

        write.__name__ = f"writer{w}"
        return write

    def reader(deadline):
        rng = random.Random()
        n = 0
        while time.monotonic() < deadline:
            i = rng.randrange(len(INITIAL))
            assert legal(i, main[i]), (i, main[i])
            n += 1
        count("reads", n)

    def iterator(deadline):
        n = 0
        while time.monotonic() < deadline:
            check_all(list(main))
            check_all(list(reversed(main))[::-1])
            n += 1
        count("iterations", n)

    def attacher(deadline):
        # Its own handles: attach, read, write, close, over and over.
        n = 0
        while time.monotonic() < deadline:
            with ShareableList(name=name) as mine:
                check_all(mine)
                write_one(mine, 0, n, random.Random(n))
            shm = SharedMemory(raw_name)
            struct.pack_into("q", shm.buf, 8, n)
            assert struct.unpack_from("q", shm.buf, 0)[0] >= 0
            shm.close()
            n += 1
        count("attaches", n)

    def creator(deadline):
        # New lists and segments, used and removed while the others run.
        n = 0
        while time.monotonic() < deadline:
            sl = ShareableList([n, "new", b"bytes", None])
            with ShareableList(name=sl.shm.name) as again:
                assert list(again) == [n, "new", b"bytes", None]
            sl.shm.close()
            sl.shm.unlink()
            shm = SharedMemory(create=True, size=8192)
            shm.buf[:4] = b"abcd"
            shm.close()
            shm.unlink()
            n += 1
        count("created", n)

    def closer(deadline):
        # A handle shared by two threads, closed by one while the other
        # reads it: the reader gets values, then ValueError("...closed..."),
        # never a crash; its memoryview keeps working after close().
        n = 0
        while time.monotonic() < deadline:
            shared = ShareableList(name=name)
            view = shared.shm.buf
            failed = []

            def read_until_closed():
                try:
                    while True:
                        try:
                            value = shared[1]
                        except ValueError as e:
                            assert "closed" in str(e), e
                            count("closed_reads")
                            return
                        assert legal(1, value), value
                except BaseException as e:  # noqa: BLE001 - re-raised below
                    failed.append(e)

            t = threading.Thread(target=read_until_closed)
            t.start()
            time.sleep(0.001)
            shared.close()
            assert struct.unpack_from("q", view, 0)[0] == len(INITIAL)
            t.join(timeout=30)
            assert not t.is_alive(), "the reader of a closed list never saw it closed"
            if failed:
                raise failed[0]
            del view
            n += 1
        count("closes", n)

    targets = [writer(w) for w in range(WRITERS)] + [reader, reader, iterator, attacher, creator, closer]
    # On a free-threaded build, the threads really run at once: nothing
    # imported so far (ferroshm included) has turned the GIL back on.
    assert gil_enabled() is not FREE_THREADED
    try:
        run_threads(targets, seconds=1.5)
        check_all(main)
    finally:
        main.shm.close()
        main.shm.unlink()
        raw.close()
        raw.unlink()
    # Every kind of operation really ran, concurrently with the others.
    for key, n in counts.items():
        assert n > 0, counts
    # Every reader of a list closed under it saw ValueError, and stopped.
    assert counts["closed_reads"] == counts["closes"], counts
    report(request, {"free_threaded": FREE_THREADED, "gil": gil_enabled(), **counts})


def test_one_iterator_shared_by_threads_gives_each_item_once():
    n = 20_000
    sl = ShareableList(range(n))
    try:
        for make in (iter, reversed) * 3:
            it = make(sl)
            got = [[] for _ in range(6)]

            targets = []
            for k in range(len(got)):

                def drain(deadline, mine=got[k]):
                    for value in it:
                        mine.append(value)

                drain.__name__ = f"drain{k}"
                targets.append(drain)
            run_threads(targets, seconds=0)
            every = [v for mine in got for v in mine]
            # Each item exactly once between the threads: none lost, none twice.
            assert sorted(every) == list(range(n))
            # Each thread saw its items in the iterator's order.
            for mine in got:
                assert mine == sorted(mine, reverse=make is reversed)
            # Exhausted for good, and says so.
            assert next(it, "end") == "end"
            assert it.__length_hint__() == 0
    finally:
        sl.shm.close()
        sl.shm.unlink()


if FREE_THREADED:

    def test_importing_ferroshm_keeps_the_gil_disabled():
        # A free-threaded Python re-enables the GIL (with a RuntimeWarning,
        # an error here) when it imports an extension that does not declare
        # it runs without it.
        proc = run_python(
            "import sys, ferroshm, ferroshm._native; print(sys._is_gil_enabled())",
            env={"PYTHONWARNINGS": "error"},
        )
        assert proc.stdout.strip() == "False", proc.stdout + proc.stderr
