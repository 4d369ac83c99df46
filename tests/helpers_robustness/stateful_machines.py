"""Hypothesis state machines over ferroshm, checked against plain Python models.

Run as a script (``python stateful_machines.py shm|list``) by
tests/test_stateful.py, so that a crash kills this interpreter and fails the
test rather than killing pytest. Prints one JSON line of figures at the end;
exits non-zero (with hypothesis's minimal failing example on stderr) when a
rule finds a difference from the model.

The models know nothing of ferroshm's internals: a shared-memory object is a
bytearray; the system's namespace is a dict from name to object; a list is a
Python list of values with the slot size each item got.

Environment: FERROSHM_FUZZ_EXAMPLES (number of examples; default 40),
FERROSHM_STATEFUL_STEPS (rules per example; default 30).
"""

from __future__ import annotations

import enum
import gc
import hashlib
import json
import math
import multiprocessing as mp
import os
import pickle
import stat
import struct
import sys
from multiprocessing import shared_memory as std

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import numpy as np

from ferroshm import ShareableList, SharedMemory

SHM_DIR = "/dev/shm"
PREFIX = f"fshm_sm_{os.getpid()}_"
# Few explicit names, so that names are reused: create over an existing
# name, attach after unlink, re-create after unlink, a stale handle
# unlinking a newer object of the same name.
NAMES = [PREFIX + str(i) for i in range(3)]

FORK = mp.get_context("fork")

COUNTS = {"examples": 0, "steps": 0, "children": 0, "errors_checked": 0}


def step(kind: str | None = None) -> None:
    COUNTS["steps"] += 1
    if kind:
        COUNTS[kind] = COUNTS.get(kind, 0) + 1


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(SHM_DIR, name))


def expect_error(exc_type, fn, *args, match: str | None = None, **kwargs):
    """Call ``fn`` and require ``exc_type`` (and ``match`` in its text)."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        if match is not None:
            assert match in str(e), (match, str(e))
        COUNTS["errors_checked"] += 1
        return e
    raise AssertionError(f"{fn!r}{args!r} did not raise {exc_type.__name__}")


def run_child(target, *args) -> int:
    """Run ``target(*args)`` in a forked child; return its exit code."""
    COUNTS["children"] += 1
    p = FORK.Process(target=target, args=args)
    p.start()
    try:
        p.join(60)
    finally:
        if p.is_alive():
            p.kill()
            p.join()
    return p.exitcode


def check_namespace(known, namespace) -> None:
    for name in known:
        there = exists(name)
        assert there == (name in namespace), (
            f"{name} {'exists' if there else 'is gone'}, but the model says "
            f"{'it exists' if name in namespace else 'it is gone'}"
        )


def cleanup(known, namespace) -> None:
    """Unlink what the model says exists, then anything else of ours that
    exists (after a failed rule the model may be wrong), so that the next
    example starts from an empty namespace; then fail if the model was
    wrong."""
    outlived = []
    for name in known:
        if exists(name):
            if name not in namespace:
                outlived.append(name)
            try:
                SharedMemory(name).unlink()
            except FileNotFoundError:
                pass
    namespace.clear()
    assert not outlived, f"segments the model says are gone exist: {outlived}"


# --- SharedMemory, NumPy views, pickling, children ---------------------------


class Obj:
    """One OS shared-memory object, as the model sees it: its bytes."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)


class Handle:
    def __init__(self, shm: SharedMemory, obj: Obj) -> None:
        self.shm = shm
        self.obj = obj
        self.name = shm.name
        self.closed = False

    def __repr__(self) -> str:
        return f"Handle({self.name!r}, closed={self.closed})"


class Export:
    """A memoryview slice or NumPy array over part of a segment."""

    def __init__(self, kind: str, ref, obj: Obj, base: int, length: int) -> None:
        self.kind, self.ref, self.obj, self.base, self.length = kind, ref, obj, base, length

    def __repr__(self) -> str:
        return f"Export({self.kind}, base={self.base}, length={self.length})"


def _child_check_and_write(name: str, digest: str, offset: int, data: bytes) -> None:
    try:
        shm = SharedMemory(name)
        ok = hashlib.sha256(shm.buf).hexdigest() == digest
        shm.buf[offset : offset + len(data)] = data
        shm.close()
    except BaseException:
        os._exit(3)
    os._exit(0 if ok else 1)


def _child_unlink(name: str) -> None:
    try:
        SharedMemory(name).unlink()
    except BaseException:
        os._exit(3)
    os._exit(0)


sizes = st.one_of(st.integers(1, 64), st.sampled_from([4095, 4096, 4097, 65536]), st.integers(1, 20000))


class SharedMemoryMachine(RuleBasedStateMachine):
    handles = Bundle("handles")
    exports = Bundle("exports")

    def __init__(self) -> None:
        super().__init__()
        COUNTS["examples"] += 1
        self.namespace: dict[str, Obj] = {}
        self.known: dict[str, None] = dict.fromkeys(NAMES)  # in creation order
        self.all_handles: list[Handle] = []

    # -- helpers
    def _new_handle(self, shm: SharedMemory, obj: Obj) -> Handle:
        h = Handle(shm, obj)
        self.all_handles.append(h)
        assert shm.size == len(obj.data)
        assert len(shm.buf) == len(obj.data)
        assert repr(shm) == f"SharedMemory({shm.name!r}, size={len(obj.data)})"
        return h

    # -- rules
    @rule(target=handles, name=st.sampled_from(NAMES + [None]), size=sizes)
    def create(self, name, size):
        step("create")
        if name is not None and name in self.namespace:
            before = bytes(self.namespace[name].data[:64])
            expect_error(FileExistsError, SharedMemory, name, True, size)
            # Creation never attaches to, nor changes, what exists.
            with SharedMemory(name, track=True) as peek:
                assert bytes(peek.buf[:64]) == before
            return multiple()
        shm = SharedMemory(name, create=True, size=size)
        assert stat.S_IMODE(os.stat(os.path.join(SHM_DIR, shm.name)).st_mode) == 0o600
        obj = Obj(size)
        assert bytes(shm.buf) == bytes(size)  # a new segment is zeroed
        self.namespace[shm.name] = obj
        self.known[shm.name] = None
        return self._new_handle(shm, obj)

    @rule(target=handles, data=st.data())
    def attach(self, data):
        step("attach")
        name = data.draw(st.sampled_from(list(self.known)), label="name")
        if name not in self.namespace:
            expect_error(FileNotFoundError, SharedMemory, name)
            return multiple()
        shm = SharedMemory(name, size=data.draw(st.integers(0, 1 << 20), label="ignored size"))
        return self._new_handle(shm, self.namespace[name])

    @rule(target=handles, h=handles)
    def unpickle(self, h):
        step("pickle")
        blob = pickle.dumps(h.shm)
        if h.name not in self.namespace:
            expect_error(FileNotFoundError, pickle.loads, blob)
            return multiple()
        # By name: this may well be a newer object than h's.
        return self._new_handle(pickle.loads(blob), self.namespace[h.name])

    @rule(h=handles, data=st.data())
    def write(self, h, data):
        step("write")
        if h.closed:
            assert h.shm.buf is None
            return
        size = len(h.obj.data)
        off = data.draw(st.integers(0, size - 1), label="offset")
        chunk = data.draw(st.binary(min_size=1, max_size=min(64, size - off)), label="bytes")
        h.shm.buf[off : off + len(chunk)] = chunk
        h.obj.data[off : off + len(chunk)] = chunk

    @rule(h=handles)
    def read(self, h):
        step("read")
        assert h.shm.name == h.name and h.shm.size == len(h.obj.data)
        if h.closed:
            assert h.shm.buf is None
        else:
            assert bytes(h.shm.buf) == bytes(h.obj.data)

    @rule(target=exports, h=handles, kind=st.sampled_from(["slice", "frombuffer", "ndarray"]), data=st.data())
    def export(self, h, kind, data):
        step("export")
        if h.closed:
            return multiple()
        size = len(h.obj.data)
        base = data.draw(st.integers(0, size - 1), label="base")
        length = data.draw(st.integers(1, size - base), label="length")
        if kind == "slice":
            ref = h.shm.buf[base : base + length]
        elif kind == "frombuffer":
            ref = np.frombuffer(h.shm.buf[base : base + length], dtype=np.uint8)
        else:  # the documentation's pattern: holds no buffer export
            ref = np.ndarray((length,), dtype=np.uint8, buffer=h.shm.buf, offset=base)
        return Export(kind, ref, h.obj, base, length)

    @rule(e=exports, data=st.data())
    def write_export(self, e, data):
        step("export_write")
        off = data.draw(st.integers(0, e.length - 1), label="offset")
        chunk = data.draw(st.binary(min_size=1, max_size=min(32, e.length - off)), label="bytes")
        if e.kind == "slice":
            e.ref[off : off + len(chunk)] = chunk
        else:
            if not e.ref.flags.writeable:  # np.frombuffer of a writable view is writable
                raise AssertionError("array over a writable segment is read-only")
            e.ref[off : off + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        e.obj.data[e.base + off : e.base + off + len(chunk)] = chunk

    @rule(e=exports)
    def read_export(self, e):
        step("export_read")
        assert bytes(e.ref) == bytes(e.obj.data[e.base : e.base + e.length])

    @rule(e=consumes(exports))
    def drop_export(self, e):
        step()
        del e
        gc.collect()

    @rule(h=handles)
    def close(self, h):
        step("close")
        h.shm.close()
        h.closed = True
        assert h.shm.buf is None
        h.shm.close()  # idempotent

    @rule(h=handles)
    def unlink(self, h):
        step("unlink")
        if h.name in self.namespace:
            h.shm.unlink()
            del self.namespace[h.name]
            assert not exists(h.name)
        else:
            expect_error(FileNotFoundError, h.shm.unlink)

    @rule(h=consumes(handles))
    def drop_handle(self, h):
        # Garbage collection instead of close(): the same, through the native
        # handle's destructor (SharedMemory has no __del__).
        step("drop")
        self.all_handles.remove(h)
        del h
        gc.collect()

    @precondition(lambda self: self.namespace)
    @rule(data=st.data())
    def child_reads_and_writes(self, data):
        step()
        name = data.draw(st.sampled_from(list(self.namespace)), label="name")
        obj = self.namespace[name]
        off = data.draw(st.integers(0, len(obj.data) - 1), label="offset")
        chunk = data.draw(st.binary(min_size=1, max_size=min(16, len(obj.data) - off)), label="bytes")
        digest = hashlib.sha256(obj.data).hexdigest()
        code = run_child(_child_check_and_write, name, digest, off, chunk)
        assert code == 0, f"child exited with {code} (1: saw other bytes than the model)"
        obj.data[off : off + len(chunk)] = chunk

    @precondition(lambda self: self.namespace)
    @rule(data=st.data())
    def child_unlinks(self, data):
        step()
        name = data.draw(st.sampled_from(list(self.namespace)), label="name")
        assert run_child(_child_unlink, name) == 0
        del self.namespace[name]
        assert not exists(name)

    @precondition(lambda self: self.namespace)
    @rule(data=st.data())
    def stdlib_attaches(self, data):
        step("stdlib")
        name = data.draw(st.sampled_from(list(self.namespace)), label="name")
        theirs = std.SharedMemory(name)
        try:
            assert bytes(theirs.buf) == bytes(self.namespace[name].data)
        finally:
            theirs.close()

    @invariant()
    def namespace_matches_the_system(self):
        check_namespace(self.known, self.namespace)

    def teardown(self):
        for h in self.all_handles:
            h.shm.close()
        cleanup(self.known, self.namespace)


# --- ShareableList -----------------------------------------------------------


class Small(enum.IntEnum):
    A = 7


class Text(str):
    pass


def slot_size(item) -> int:
    """Bytes of the slot a new list gives ``item`` (CPython's rule, with
    str slots large enough for their UTF-8 bytes)."""
    if isinstance(item, bytes):
        return 8 * (len(item) // 8 + 1)
    if isinstance(item, str):
        nbytes = len(item.encode("utf-8"))
        by_chars = 8 * (len(item) // 8 + 1)
        return by_chars if nbytes <= by_chars else 8 * (nbytes // 8 + 1)
    return 8


def stored(item):
    """What reading ``item`` back gives: the base type, trailing NULs gone."""
    if isinstance(item, bool):
        return bool(item)
    if isinstance(item, int):
        return int(item)
    if isinstance(item, float):
        return float(item)
    if isinstance(item, str):
        return str(item).rstrip("\0")
    if isinstance(item, bytes):
        return bytes(item).rstrip(b"\0")
    return item


def fmt(item, slot: int) -> str:
    if isinstance(item, bool):
        return "xxxxxxx?"
    if item is None:
        return "xxxxxx?x"
    if isinstance(item, int):
        return "q"
    if isinstance(item, float):
        return "d"
    return f"{slot}s"


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("d", a) == struct.pack("d", b)
    return a == b


def same_list(got, want) -> bool:
    return len(got) == len(want) and all(same(x, y) for x, y in zip(got, want))


INT64 = st.integers(-(2**63), 2**63 - 1)
items = st.one_of(
    INT64,
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.binary(max_size=20),
)
values = st.one_of(
    items,
    st.integers(2**63, 2**64),  # too large: struct.error, nothing written
    st.integers(-(2**65), -(2**63) - 1),
    st.just(Small.A),
    st.builds(np.float64, st.floats()),
    st.builds(Text, st.text(max_size=10)),
    st.text(min_size=9, max_size=40),
    st.binary(min_size=9, max_size=40),
    st.sampled_from([[1], {"a": 1}, 1j, object()]),
)


class ListObj:
    """A list as the model sees it: values, slot sizes, formats."""

    def __init__(self, seq) -> None:
        self.slots = [slot_size(x) for x in seq]
        self.values = [stored(x) for x in seq]
        self.formats = [fmt(x, s) for x, s in zip(seq, self.slots)]


class ListHandle:
    def __init__(self, sl: ShareableList, obj: ListObj) -> None:
        self.sl = sl
        self.obj = obj
        self.name = sl.shm.name
        self.closed = False

    def __repr__(self) -> str:
        return f"ListHandle({self.name!r}, closed={self.closed})"


def _child_list(name: str, expected: bytes, index: int, value) -> None:
    try:
        sl = ShareableList(name=name)
        ok = same_list(list(sl), pickle.loads(expected))
        sl[index] = value
        sl.shm.close()
    except BaseException:
        os._exit(3)
    os._exit(0 if ok else 1)


class ShareableListMachine(RuleBasedStateMachine):
    lists = Bundle("lists")

    def __init__(self) -> None:
        super().__init__()
        COUNTS["examples"] += 1
        self.namespace: dict[str, ListObj] = {}
        self.known: dict[str, None] = dict.fromkeys(NAMES)  # in creation order
        self.all_handles: list[ListHandle] = []

    def _new(self, sl, obj) -> ListHandle:
        h = ListHandle(sl, obj)
        self.all_handles.append(h)
        return h

    @rule(target=lists, seq=st.lists(items, max_size=12), name=st.sampled_from(NAMES + [None]),
          as_tuple=st.booleans())
    def create(self, seq, name, as_tuple):
        step("create")
        arg = tuple(seq) if as_tuple else iter(seq)
        if name is not None and name in self.namespace:
            expect_error(FileExistsError, ShareableList, arg, name=name)
            return multiple()
        sl = ShareableList(arg, name=name)
        obj = ListObj(seq)
        assert same_list(list(sl), obj.values)
        self.namespace[sl.shm.name] = obj
        self.known[sl.shm.name] = None
        return self._new(sl, obj)

    @rule(target=lists, data=st.data())
    def attach(self, data):
        step("attach")
        name = data.draw(st.sampled_from(list(self.known)), label="name")
        if name not in self.namespace:
            expect_error(FileNotFoundError, ShareableList, name=name)
            return multiple()
        return self._new(ShareableList(name=name), self.namespace[name])

    @rule(target=lists, h=lists)
    def unpickle(self, h):
        step("pickle")
        blob = pickle.dumps(h.sl)
        assert len(blob) < 200 + len(h.name)  # by name, whatever the length
        if h.name not in self.namespace:
            expect_error(FileNotFoundError, pickle.loads, blob)
            return multiple()
        return self._new(pickle.loads(blob), self.namespace[h.name])

    @rule(h=lists, data=st.data())
    def get(self, h, data):
        step("get")
        n = len(h.obj.values)
        i = data.draw(st.integers(-n - 3, n + 2), label="index")
        if h.closed:
            expect_error(ValueError, h.sl.__getitem__, i, match="closed")
        elif -n <= i < n:
            got = h.sl[i]
            assert same(got, h.obj.values[i]), (got, h.obj.values[i])
        else:
            expect_error(IndexError, h.sl.__getitem__, i, match="index out of range")

    @rule(h=lists, data=st.data(), value=values)
    def set(self, h, data, value):
        step("set")
        n = len(h.obj.values)
        i = data.draw(st.integers(-n - 3, n + 2), label="index")
        if h.closed:
            expect_error(ValueError, h.sl.__setitem__, i, value, match="closed")
            return
        if not -n <= i < n:
            expect_error(IndexError, h.sl.__setitem__, i, value, match="assignment index out of range")
            return
        slot = h.obj.slots[i]
        if not isinstance(value, (int, float, str, bytes, type(None))):
            expect_error(KeyError, h.sl.__setitem__, i, value)
        elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            expect_error(struct.error, h.sl.__setitem__, i, value)
        elif isinstance(value, (str, bytes)) and len(value.encode() if isinstance(value, str) else value) > slot:
            expect_error(ValueError, h.sl.__setitem__, i, value, match="exceeds available storage")
        else:
            h.sl[i] = value
            h.obj.values[i] = stored(value)
            h.obj.formats[i] = fmt(value, slot)
        # A failed assignment changed nothing.
        assert same(h.sl[i], h.obj.values[i])

    @rule(h=lists)
    def whole(self, h):
        step("read_all")
        if h.closed:
            for op in (len, list, repr):
                expect_error(ValueError, op, h.sl, match="closed")
            return
        want = h.obj.values
        assert len(h.sl) == len(want)
        assert same_list(list(h.sl), want)
        assert same_list(list(reversed(h.sl)), want[::-1])
        assert same_list(h.sl[::2], want[::2]) and same_list(h.sl[::-3], want[::-3])
        assert h.sl.format == "".join(h.obj.formats)
        assert repr(h.sl).startswith("ShareableList(")

    @precondition(lambda self: any(not h.closed for h in self.all_handles))
    @rule(data=st.data())
    def search(self, data):
        step("search")
        h = data.draw(st.sampled_from([h for h in self.all_handles if not h.closed]), label="list")
        want = h.obj.values
        value = data.draw(st.sampled_from(want) if want else items, label="value")
        if isinstance(value, float) and math.isnan(value):
            return  # NaN equals nothing, not even itself: count/index are moot
        assert h.sl.count(value) == want.count(value)
        assert (value in h.sl) == (value in want)
        if value in want:
            assert h.sl.index(value) == want.index(value)
        else:
            expect_error(ValueError, h.sl.index, value)

    @rule(h=lists)
    def close(self, h):
        step("close")
        h.sl.close()
        h.closed = True
        h.sl.shm.close()

    @rule(h=lists)
    def unlink(self, h):
        step("unlink")
        if h.name in self.namespace:
            h.sl.unlink()
            del self.namespace[h.name]
            assert not exists(h.name)
        else:
            expect_error(FileNotFoundError, h.sl.unlink)

    @rule(h=consumes(lists))
    def drop(self, h):
        step("drop")
        self.all_handles.remove(h)
        del h
        gc.collect()

    @precondition(lambda self: any(self.namespace[n].values for n in self.namespace))
    @rule(data=st.data(), value=st.one_of(INT64, st.floats(), st.booleans(), st.none()))
    def child_reads_and_writes(self, data, value):
        step()
        name = data.draw(st.sampled_from([n for n in self.namespace if self.namespace[n].values]), label="name")
        obj = self.namespace[name]
        i = data.draw(st.integers(0, len(obj.values) - 1), label="index")
        code = run_child(_child_list, name, pickle.dumps(obj.values), i, value)
        assert code == 0, f"child exited with {code} (1: saw other items than the model)"
        obj.values[i] = stored(value)
        obj.formats[i] = fmt(value, obj.slots[i])

    @precondition(lambda self: self.namespace)
    @rule(data=st.data())
    def stdlib_reads(self, data):
        step("stdlib")
        name = data.draw(st.sampled_from(list(self.namespace)), label="name")
        theirs = std.ShareableList(name=name)
        try:
            assert same_list(list(theirs), self.namespace[name].values)
            assert theirs.format == "".join(self.namespace[name].formats)
        finally:
            theirs.shm.close()

    @invariant()
    def namespace_matches_the_system(self):
        check_namespace(self.known, self.namespace)

    def teardown(self):
        for h in self.all_handles:
            h.sl.close()
        cleanup(self.known, self.namespace)


MACHINES = {"shm": SharedMemoryMachine, "list": ShareableListMachine}


def main() -> int:
    machine = MACHINES[sys.argv[1]]
    examples = int(os.environ.get("FERROSHM_FUZZ_EXAMPLES") or 40)
    steps = int(os.environ.get("FERROSHM_STATEFUL_STEPS") or 30)
    config = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,  # no timed assertions: this machine is shared
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
        print_blob=True,
    )
    try:
        run_state_machine_as_test(machine, settings=config)
    finally:
        leftovers = sorted(n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX))
        for n in leftovers:
            os.unlink(os.path.join(SHM_DIR, n))
        print(json.dumps({"machine": sys.argv[1], **COUNTS, "leftovers": leftovers}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
