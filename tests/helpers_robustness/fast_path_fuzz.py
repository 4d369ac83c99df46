"""Differential fuzzing of ShareableList's item reads and writes through real
segments, against a model of the layout's rules written here in plain
Python.

Run as a script by tests/test_fuzz_fast_path.py, so that a crash fails the
test instead of killing pytest. ferroshm reads and writes an item on a fast
path that loads the header positions attach validated without re-checking
their range, and falls back to a fully checked slow path when anything it
reads does not check out. Whichever path answers, the outcome must be the
one the model below gives for the same bytes: the same value of the same
type, or ValueError (a UnicodeDecodeError with the standard library's
message for a str that is not UTF-8), and for a write the same bytes in the
whole segment afterwards. Inputs are valid lists, mutated ones and random
item areas; then a hostile peer rewrites offsets, formats and codes under
the attached list, and everything is compared again (the model, like
ferroshm, keeps the item count and data size read at attach time).

Environment: FERROSHM_FUZZ_EXAMPLES (examples per strategy; default 300).
Prints one JSON line of figures.
"""

from __future__ import annotations

import json
import math
import re
import struct
import sys

from hypothesis import given
from hypothesis import strategies as st

from ferroshm import ShareableList, SharedMemory
from helpers_robustness.list_fuzz import (
    FORMAT_WORDS,
    encode,
    fuzz_settings,
    items,
    limit_address_space,
    mutate,
    mutation,
    word_values,
)

COUNTS = {
    "examples": 0,
    "attached": 0,
    "reads": 0,
    "read_values": 0,
    "read_errors": 0,
    "writes": 0,
    "write_errors": 0,
    "hostile_rewrites": 0,
}

I64 = struct.Struct("q")
MAX_SLOT = 9_999_999
WORD_FORMATS = {b"q", b"d", b"xxxxxxx?", b"xxxxxx?x"}


class Refused(Exception):
    """The model's verdict: ferroshm must raise ValueError here."""


# --- the model ---------------------------------------------------------------


def model_attach(buf: bytes):
    """(N, D) of the list in ``buf``, or Refused: what attach checks."""
    size = len(buf)
    if size < 8:
        raise Refused("too small")
    n = I64.unpack_from(buf, 0)[0]
    if n < 0 or 8 * (n + 2) > size:
        raise Refused("count")
    d = I64.unpack_from(buf, 8 + 8 * n)[0]
    if d < 0 or d % 8 or 8 * (n + 2) + d + 9 * n > size:
        raise Refused("data size")
    if n > 0 and I64.unpack_from(buf, 8)[0] != 0:
        raise Refused("offsets[0]")
    return n, d


def model_slot(buf: bytes, n: int, d: int, i: int):
    """(start, length) of item i's slot, or Refused."""
    a = I64.unpack_from(buf, 8 + 8 * i)[0]
    b = I64.unpack_from(buf, 16 + 8 * i)[0]
    if not (0 <= a <= b <= d and a % 8 == 0 and b % 8 == 0):
        raise Refused("offsets")
    return 8 * (n + 2) + a, b - a


def model_format(raw: bytes):
    """The format CPython writes that the stored 8 bytes spell, or Refused:
    one of q, d, xxxxxxx?, xxxxxx?x, or digits then s, NUL-padded."""
    text = raw.rstrip(b"\0")
    if text in WORD_FORMATS:
        return text, 8
    if re.fullmatch(rb"[0-9]+s", text):
        return b"s", int(text[:-1])
    raise Refused("format")


def model_read(buf: bytes, n: int, d: int, i: int):
    """Item i as the layout's rules read it; Refused for ValueError, and
    UnicodeDecodeError raised as Python raises it."""
    start, length = model_slot(buf, n, d, i)
    formats = 8 * (n + 2) + d
    code = buf[formats + 8 * n + i]
    kind, size = model_format(buf[formats + 8 * i : formats + 8 * i + 8])
    if size > length:
        raise Refused("format larger than the slot")
    if code == 3:
        return None
    if code == 0 and kind in (b"q", b"d", b"xxxxxxx?"):
        if kind == b"q":
            return I64.unpack_from(buf, start)[0]
        if kind == b"d":
            return struct.unpack_from("d", buf, start)[0]
        return buf[start + 7] != 0
    if code in (1, 2) and kind == b"s":
        value = buf[start : start + size].rstrip(b"\0")
        return value.decode("utf8") if code == 1 else value
    raise Refused("code")


def model_write(buf: bytearray, n: int, d: int, i: int, value) -> None:
    """Write value as item i into buf, or Refused (buf untouched)."""
    start, length = model_slot(buf, n, d, i)
    formats = 8 * (n + 2) + d
    if isinstance(value, (str, bytes)):
        raw = value.encode() if isinstance(value, str) else value
        if len(raw) > length or length > MAX_SLOT:
            raise Refused("exceeds")
        slot, fmt = raw.ljust(length, b"\0"), b"%ds" % length
        code = 1 if isinstance(value, str) else 2
    else:
        if length < 8:
            raise Refused("slot too small")
        if isinstance(value, bool):
            slot, fmt, code = bytes(7) + bytes([value]), b"xxxxxxx?", 0
        elif value is None:
            slot, fmt, code = bytes(8), b"xxxxxx?x", 3
        elif isinstance(value, int):
            slot, fmt, code = I64.pack(value), b"q", 0
        else:
            slot, fmt, code = struct.pack("d", value), b"d", 0
    # A number fills the first word of its slot; the rest stays as it was.
    buf[start : start + len(slot)] = slot
    buf[formats + 8 * i : formats + 8 * i + 8] = fmt.ljust(8, b"\0")
    buf[formats + 8 * n + i] = code


# --- comparing ferroshm with the model ----------------------------------------


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("d", a) == struct.pack("d", b) or (math.isnan(a) and math.isnan(b))
    return a == b


def check_read(sl, buf: bytes, n: int, d: int, i: int) -> None:
    COUNTS["reads"] += 1
    try:
        want = ("value", model_read(buf, n, d, i))
    except Refused as why:
        want = ("ValueError", str(why))
    except UnicodeDecodeError as e:
        want = ("UnicodeDecodeError", str(e))
    try:
        got = ("value", sl[i])
    except UnicodeDecodeError as e:
        got = ("UnicodeDecodeError", str(e))
    except ValueError as e:
        got = ("ValueError", str(e))
    if want[0] == "value":
        COUNTS["read_values"] += 1
        assert got[0] == "value" and same(got[1], want[1]), (i, got, want, buf.hex())
    else:
        COUNTS["read_errors"] += 1
        assert got[0] == want[0], (i, got, want, buf.hex())
        if want[0] == "UnicodeDecodeError":
            assert got[1] == want[1], (i, got, want)


def check_write(sl, shm, n: int, d: int, i: int, value) -> None:
    COUNTS["writes"] += 1
    before = bytes(shm.buf)
    want = bytearray(before)
    try:
        model_write(want, n, d, i, value)
        refused = False
    except Refused:
        refused = True
    try:
        sl[i] = value
        wrote = True
    except ValueError:
        wrote = False
    after = bytes(shm.buf)
    if refused:
        COUNTS["write_errors"] += 1
        assert not wrote, (i, value, before.hex())
        assert after == before, (i, value, "a refused write changed bytes")
    else:
        assert wrote, (i, value, before.hex())
        assert after == bytes(want), (i, value, before.hex(), after.hex(), want.hex())


WRITE_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.binary(max_size=20),
)

# Rewrites of a hostile peer: (which part, index, 8 bytes or a code byte).
# "offset" rewrites offsets[k] for k in 1..N-1 (offsets[0] and offsets[N]
# too, which attach read but the reader re-checks).
rewrite = st.one_of(
    st.tuples(st.just("offset"), st.integers(0, 64), word_values),
    st.tuples(
        st.just("format"),
        st.integers(0, 64),
        st.sampled_from(FORMAT_WORDS).map(lambda b: b.ljust(8, b"\0")[:8]),
    ),
    st.tuples(st.just("code"), st.integers(0, 64), st.integers(0, 255)),
)


def apply_rewrite(shm, n: int, d: int, change) -> None:
    kind, k, what = change
    formats = 8 * (n + 2) + d
    if kind == "offset":
        at = 8 + 8 * (k % (n + 1))
        shm.buf[at : at + 8] = what
    elif kind == "format" and n:
        at = formats + 8 * (k % n)
        shm.buf[at : at + 8] = what
    elif kind == "code" and n:
        shm.buf[formats + 8 * n + k % n] = what
    else:
        return
    COUNTS["hostile_rewrites"] += 1


def exercise(raw: bytes, writes, rewrites) -> None:
    COUNTS["examples"] += 1
    shm = SharedMemory(create=True, size=max(len(raw), 1))
    try:
        shm.buf[: len(raw)] = raw
        buf = bytes(shm.buf)
        try:
            n, d = model_attach(buf)
        except Refused:
            try:
                sl = ShareableList(name=shm.name)
            except ValueError:
                return
            sl.close()
            raise AssertionError(f"attached what the model refuses: {buf.hex()}")
        sl = ShareableList(name=shm.name)
        COUNTS["attached"] += 1
        try:
            for i in range(n):
                check_read(sl, bytes(shm.buf), n, d, i)
            for k, value in writes:
                if n:
                    i = k % n
                    check_write(sl, shm, n, d, i, value)
                    check_read(sl, bytes(shm.buf), n, d, i)
            for change in rewrites:
                apply_rewrite(shm, n, d, change)
            for i in range(n):
                check_read(sl, bytes(shm.buf), n, d, i)
            for k, value in writes[:2]:
                if n:
                    check_write(sl, shm, n, d, k % n, value)
        finally:
            sl.close()
    finally:
        shm.close()
        shm.unlink()


def main() -> int:
    limit_address_space()
    config = fuzz_settings(300)
    writes = st.lists(st.tuples(st.integers(0, 64), WRITE_VALUES), max_size=4)
    rewrites = st.lists(rewrite, max_size=4)

    @config
    @given(seq=st.lists(items, max_size=10), writes=writes, rewrites=rewrites)
    def valid_lists(seq, writes, rewrites):
        exercise(encode(seq), writes, rewrites)

    @config
    @given(
        seq=st.lists(items, min_size=1, max_size=10),
        changes=st.lists(mutation, min_size=1, max_size=3),
        writes=writes,
        rewrites=rewrites,
    )
    def mutated_lists(seq, changes, writes, rewrites):
        exercise(mutate(encode(seq), changes), writes, rewrites)

    @config
    @given(
        seq=st.lists(items, min_size=1, max_size=10),
        area=st.data(),
        writes=writes,
        rewrites=rewrites,
    )
    def random_item_areas(seq, area, writes, rewrites):
        # A valid header over random slots, formats and codes: reaches every
        # check of the item reader, not only attach's.
        raw = bytearray(encode(seq))
        n = len(seq)
        start = 8 * (n + 2)
        raw[start:] = area.draw(st.binary(min_size=len(raw) - start, max_size=len(raw) - start))
        d = I64.unpack_from(raw, 8 + 8 * n)[0]
        formats = start + d
        for i in range(n):
            if area.draw(st.booleans()):
                word = area.draw(st.sampled_from(FORMAT_WORDS)).ljust(8, b"\0")[:8]
                raw[formats + 8 * i : formats + 8 * i + 8] = word
            if area.draw(st.booleans()):
                raw[formats + 8 * n + i] = area.draw(st.integers(0, 4))
        exercise(bytes(raw), writes, rewrites)

    try:
        for test in (valid_lists, mutated_lists, random_item_areas):
            test()
    finally:
        print(json.dumps(COUNTS), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
