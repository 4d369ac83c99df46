"""Fuzz ShareableList's reader with corrupt, truncated and hostile segments.

Run as a script by tests/test_fuzz_list.py, so that a crash fails the test
instead of killing pytest. Each input is written into a new segment through
``SharedMemory.buf`` and attached with ``ShareableList(name=...)``; then
every read and a few writes are tried, and the header is rewritten under
the attached list (a hostile peer) and everything is tried again.

What must hold, for every input:

* the only exceptions are ValueError (UnicodeDecodeError is one) and, for
  indices and assignments, IndexError and the standard library's types for
  unsupported values; never a crash, MemoryError, or anything else;
* a list that attaches has an item count and data size that fit in the
  segment; every value read is one of the six item types and no longer than
  the segment;
* reading never changes a byte; writing changes nothing past the layout the
  header described at attach time;
* no allocation proportional to a forged length: the address space of this
  process is limited to what it uses plus 512 MiB (RLIMIT_AS), far less
  than any forged length here asks for, so such an allocation fails (and
  fails the run: MemoryError is not an allowed outcome);
* no hang: the test that runs this script has a timeout.

Environment: FERROSHM_FUZZ_EXAMPLES (inputs per strategy; default 600).
"""

from __future__ import annotations

import json
import operator
import os
import resource
import struct
import sys

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ferroshm import ShareableList, SharedMemory

COUNTS = {
    "inputs": 0,
    "attached": 0,
    "rejected_at_attach": 0,
    "items_read": 0,
    "item_errors": 0,
    "writes": 0,
    "hostile_rewrites": 0,
}

I64 = struct.Struct("q")


def limit_address_space(extra: int = 512 << 20) -> int:
    """Cap this process's address space at what it maps now plus ``extra``."""
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = vm + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


# --- building inputs ---------------------------------------------------------


def encode(items) -> bytes:
    """CPython's ShareableList layout (3.9+) for ``items``, in plain Python."""
    fmts, codes, slots = [], [], []
    for x in items:
        if isinstance(x, bool):
            fmts.append("xxxxxxx?"), codes.append(0), slots.append(struct.pack("xxxxxxx?", x))
        elif x is None:
            fmts.append("xxxxxx?x"), codes.append(3), slots.append(struct.pack("xxxxxx?x", False))
        elif isinstance(x, int):
            fmts.append("q"), codes.append(0), slots.append(struct.pack("q", x))
        elif isinstance(x, float):
            fmts.append("d"), codes.append(0), slots.append(struct.pack("d", x))
        else:
            raw = x.encode() if isinstance(x, str) else x
            size = 8 * (len(raw) // 8 + 1)
            fmts.append(f"{size}s"), codes.append(1 if isinstance(x, str) else 2)
            slots.append(raw.ljust(size, b"\0"))
    offsets = [0]
    for s in slots:
        offsets.append(offsets[-1] + len(s))
    n = len(items)
    return (
        struct.pack(f"{n + 2}q", n, *offsets)
        + b"".join(slots)
        + b"".join(f.encode().ljust(8, b"\0") for f in fmts)
        + bytes(codes)
    )


items = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=24),
    st.binary(max_size=24),
)

WORDS = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 255, 256, 4095, 4096, 4097, 2**31 - 1, 2**31, 2**32,
         2**40, 2**48, 2**56, 2**62, 2**63 - 1, -1, -2, -8, -(2**31), -(2**63)]
FORMAT_WORDS = [b"q", b"d", b"xxxxxxx?", b"xxxxxx?x", b"8s", b"16s", b"0s", b"1s", b"7s", b"9s",
                b"-8s", b"9999999s", b"99999999", b"s", b"8", b"8S", b"8p", b"Q", b"i", b"?",
                b"\xff\xff\xff\xff\xff\xff\xff\xff", b"q\0\0\0x", b" 8s", b"+8s", b"08s", b"1e3s"]

word_values = st.one_of(
    st.sampled_from(WORDS).map(lambda v: I64.pack(v)),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: I64.pack(v)),
    st.sampled_from(FORMAT_WORDS).map(lambda b: b.ljust(8, b"\0")[:8]),
    st.binary(min_size=8, max_size=8),
)

# One change to a byte string: ("word", index, 8 bytes) at an 8-aligned
# offset (scaled into range), ("byte", index, value), ("cut", length),
# ("grow", bytes).
mutation = st.one_of(
    st.tuples(st.just("word"), st.integers(0, 1 << 16), word_values),
    st.tuples(st.just("word"), st.integers(0, 3), word_values),  # the header, often
    st.tuples(st.just("byte"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 16)),
    st.tuples(st.just("grow"), st.binary(min_size=1, max_size=64)),
)


def mutate(raw: bytes, changes) -> bytes:
    buf = bytearray(raw)
    for change in changes:
        kind = change[0]
        if kind == "word" and len(buf) >= 8:
            k = change[1] % (len(buf) // 8)
            buf[8 * k : 8 * k + 8] = change[2]
        elif kind == "byte" and buf:
            buf[change[1] % len(buf)] = change[2]
        elif kind == "cut" and buf:
            del buf[change[1] % len(buf) :]
        elif kind == "grow":
            buf += change[1]
    return bytes(buf)


# --- exercising one input ----------------------------------------------------

TYPES = (int, float, bool, type(None), str, bytes)
WRITE_VALUES = [0, -1, 2.5, True, None, b"x", "y", "z" * 9, b"\x01" * 16, 2**63 - 1]


def allowed(fn, *args, extra=()):
    """Call fn; ValueError (and ``extra``) are fine, nothing else is."""
    try:
        return True, fn(*args)
    except (ValueError, *extra) as e:
        return False, e


def read_everything(sl, n: int, size: int) -> None:
    for i in list(range(n)) + [-1, -n] if n else []:
        ok, value = allowed(sl.__getitem__, i)
        COUNTS["items_read"] += 1
        if ok:
            assert type(value) in TYPES, type(value)
            if isinstance(value, (str, bytes)):
                assert len(value) <= size
        else:
            COUNTS["item_errors"] += 1
    for op in (len, list, repr, tuple, reversed, lambda s: s.format, lambda s: s.count(0),
               lambda s: (b"" in s), lambda s: s[::-1], lambda s: s[1::2]):
        ok, value = allowed(op, sl)
        if op is reversed and ok:
            allowed(list, value)
    for i in range(min(n, 4)):
        allowed(sl._get_packing_format, i)


def layout_end(raw: bytes, n: int) -> int:
    """End of the layout the header describes: 8(N+2) + D + 9N."""
    d = I64.unpack_from(raw, 8 + 8 * n)[0]
    return 8 * (n + 2) + d + 9 * n


def exercise(raw: bytes, hostile, valid: bool = False) -> None:
    COUNTS["inputs"] += 1
    size = max(len(raw), 1)
    shm = SharedMemory(create=True, size=size)
    try:
        shm.buf[: len(raw)] = raw
        ok, sl = allowed(lambda: ShareableList(name=shm.name))
        if not ok:
            assert not valid, f"a valid list was refused: {sl}"
            COUNTS["rejected_at_attach"] += 1
            return
        COUNTS["attached"] += 1
        try:
            n = operator.length_hint(iter(sl))
            # What attached fits: 17 bytes an item at least, plus 16.
            assert 16 + 17 * n <= size, (n, size)
            end = layout_end(raw, n)
            assert end <= size, (end, size)

            before = bytes(shm.buf)
            errors = COUNTS["item_errors"]
            read_everything(sl, n, size)
            assert bytes(shm.buf) == before, "reading changed the segment"
            assert not valid or COUNTS["item_errors"] == errors, "an item of a valid list was refused"

            for k, value in enumerate(WRITE_VALUES[: 2 + n]):
                i = (k * 7919) % n if n else 0
                ok, _ = allowed(sl.__setitem__, i, value, extra=(IndexError,))
                COUNTS["writes"] += 1
                if ok:
                    got = sl[i]
                    assert got == value and type(got) is type(value), (got, value)
            assert bytes(shm.buf[end:]) == before[end:], "a write landed past the layout"

            # A hostile peer rewrites the header under the attached list.
            for offset, word in hostile:
                offset = (offset % max(1, min(size, 8 * (n + 2)) // 8)) * 8
                if offset + 8 <= size:
                    shm.buf[offset : offset + 8] = word
                    COUNTS["hostile_rewrites"] += 1
            before = bytes(shm.buf)
            read_everything(sl, n, size)
            assert bytes(shm.buf) == before, "reading changed the segment"
        finally:
            sl.close()
    finally:
        shm.close()
        shm.unlink()


hostile_rewrites = st.lists(st.tuples(st.integers(0, 64), word_values), max_size=3)


def fuzz_settings(default_examples: int):
    """The hypothesis settings of the list fuzzers: $FERROSHM_FUZZ_EXAMPLES
    examples a strategy (``default_examples`` when unset), no deadline, no
    database, no health checks, generation and shrinking only."""
    return settings(
        max_examples=int(os.environ.get("FERROSHM_FUZZ_EXAMPLES") or default_examples),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
        print_blob=True,
    )


def main() -> int:
    limit_address_space()
    config = fuzz_settings(600)

    @config
    @given(raw=st.binary(max_size=600), hostile=hostile_rewrites)
    def random_bytes(raw, hostile):
        exercise(raw, hostile)

    @config
    @given(seq=st.lists(items, max_size=10), changes=st.lists(mutation, min_size=1, max_size=4),
           hostile=hostile_rewrites)
    def mutated_lists(seq, changes, hostile):
        exercise(mutate(encode(seq), changes), hostile)

    @config
    @given(seq=st.lists(items, max_size=10), hostile=hostile_rewrites)
    def valid_lists(seq, hostile):
        exercise(encode(seq), hostile, valid=True)

    try:
        for test in (random_bytes, mutated_lists, valid_lists):
            test()
    finally:
        print(json.dumps(COUNTS), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
