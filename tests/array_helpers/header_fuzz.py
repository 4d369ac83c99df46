"""Fuzz ferroshm.attach with corrupt and hostile array headers, through
real segments, in a child interpreter whose address space is capped (run by
tests/test_array_headers.py; FERROSHM_FUZZ_EXAMPLES scales it).

Every input is written into a new segment, then attached. The outcome must
be ValueError, or a SharedArray whose data lies inside the segment, after
the header, with the shape and item size the header gives; every byte of it
is then read, and it must pickle and unpickle. Anything else (another
exception, a crash, a hang, a large allocation) fails. Prints a JSON
summary as its last line.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import struct
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ferroshm
from ferroshm import SharedMemory, _native

EXAMPLES = int(os.environ.get("FERROSHM_FUZZ_EXAMPLES", "0")) * 5 or 250
FIXED = struct.Struct("<8sHHIQQQHHI")
COUNTS = {"inputs": 0, "attached": 0, "rejected": 0, "pickled": 0, "descr_attached": 0}

DTYPES = [
    *map(repr, ["<f8", "|u1", ">i2", "<M8[ns]", "|S3", "<U2", "|V5"]),
    repr(np.dtype([("a", "<i4"), ("b", "|S3", (2,))]).descr),
    repr(np.dtype([("x", "u1"), ("y", "<f8")], align=True).descr),
    repr([(("t", "n"), "<f4"), ("m", [("k", "<i2", (2, 2))])]),
]

# Pieces of descriptions, for text that is nearly, or exactly, valid.
TOKENS = ["[", "]", "(", ")", ", ", "'", '"', "<f8", "|S3", "<U2", ">i4", "|V2", "'a'", "'b'", "''",
          "('x', '<f4')", "(2,)", "(0,)", "(3, 4)", "4611686018427387904", "\\x00", "\\'", "<M8[10ns]",
          "|O", "<c16", " ", "\n", "é", "(('t', 'n'), '<i2')", "[('z', [('y', '<f2')])]"]


def check(data: bytes, size: int) -> bool:
    """Attach to ``data`` in a segment of ``size`` bytes; whether it
    attached."""
    COUNTS["inputs"] += 1
    shm = SharedMemory(create=True, size=max(size, 1), track=False)
    try:
        shm.buf[: min(len(data), shm.size)] = data[: shm.size]
        try:
            a = ferroshm.attach(shm.name)
        except ValueError:
            COUNTS["rejected"] += 1
            return False
        COUNTS["attached"] += 1
        header = _native.ArrayHeader.read(shm)
        # The start of a's own mapping (attach maps the segment anew).
        start = np.frombuffer(a.shm.buf, np.uint8).__array_interface__["data"][0]
        address = a.__array_interface__["data"][0]
        assert start + header.header_len <= address, (address - start, header)
        assert address + a.nbytes <= start + shm.size, (address - start, a.nbytes, shm.size)
        assert a.shape == header.shape and a.dtype.itemsize == header.itemsize
        assert a.nbytes == header.nbytes
        raw = a.reshape(-1, order="A").view(np.uint8) if a.dtype.itemsize else np.zeros(0, np.uint8)
        int(raw.sum())  # every byte read
        b = pickle.loads(pickle.dumps(a))
        assert b.shape == a.shape and b.tobytes(order="A") == a.tobytes(order="A")
        COUNTS["pickled"] += 1
        return True
    finally:
        shm.close()
        shm.unlink()


def valid(descr: str, shape, fortran: bool) -> bytes:
    return _native.ArrayHeader(descr, shape, fortran).encode()


shapes = st.lists(st.integers(0, 6), max_size=3).map(tuple)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(DTYPES),
    shapes,
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.lists(st.tuples(st.sampled_from([10, 12, 16, 24, 32, 40, 42, 44, 48]),
                       st.sampled_from([0, 1, 2, 63, 64, 65, 2**15, 2**31, 2**32 - 1, 2**62, 2**64 - 1])),
             max_size=2),
    st.integers(-128, 4096),
)
def fuzz_mutated_headers(descr, shape, fortran, byte_edits, field_edits, extra):
    """A valid header with a few bytes and fields changed, in a segment a
    little smaller or larger than the array needs."""
    header = _native.ArrayHeader(descr, shape, fortran)
    data = bytearray(header.encode())
    for at, value in byte_edits:
        if at < len(data):
            data[at] = value
    for at, value in field_edits:
        width = 2 if at in (10, 40, 42) else 4 if at in (12, 44) else 8
        if width < 8 and at != 10 and at not in (40, 42):
            value %= 2**32
        data[at : at + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
    check(bytes(data), header.segment_len + extra)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300), st.integers(1, 2048))
def fuzz_noise_after_the_magic(noise, size):
    check(b"\x93FSHMARR" + noise, size)


TYPESTRS = ["<f8", "|b1", ">u2", "<c8", "|S0", "|S2", "<U1", "|V3", "<m8[us]", ">M8", "<f2", "|O", "<i3", "=f8"]
NAMES = st.text(alphabet="ab'\"\\\n\x00é", max_size=3)


def _field(children):
    name = st.one_of(NAMES, st.tuples(NAMES, NAMES))
    shape = st.lists(st.integers(0, 3), max_size=2).map(tuple)
    return st.one_of(st.tuples(name, children), st.tuples(name, children, shape))


# Python objects shaped like dtype.descr: a type string, or nested fields
# with titles, sub-array shapes and names that may repeat or be empty.
DESCR_OBJECTS = st.recursive(
    st.sampled_from(TYPESTRS), lambda children: st.lists(_field(children), max_size=4), max_leaves=8
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(DESCR_OBJECTS, st.lists(st.tuples(st.integers(0, 400), st.sampled_from(TOKENS)), max_size=2),
       shapes, st.booleans(), st.booleans(), st.integers(0, 64))
def fuzz_descriptions(descr, splices, shape, fortran, aligned, itemsize):
    """The text of a description, valid or not (pieces spliced in): when
    the core accepts it, a consistent header around it (the aligned flag set
    or not); otherwise a header that claims it anyway, with a guessed item
    size."""
    text = repr(descr)
    for at, token in splices:
        text = text[:at] + token + text[at:]
    try:
        header = _native.ArrayHeader(text, shape, fortran, aligned)
        data, size = header.encode(), header.segment_len
    except ValueError:
        body = text.encode()
        n = itemsize
        for d in shape:
            n *= d
        flags = int(fortran) | (2 * int(aligned))
        header_len = 48 + 8 * len(shape) + len(body)
        data = FIXED.pack(b"\x93FSHMARR", 1, flags, header_len, 64 * (1 + header_len // 64), n, itemsize,
                          len(shape), 0, len(body))
        data += b"".join(struct.pack("<Q", d) for d in shape) + body
        size = len(data) + 64 + n
    COUNTS["descr_attached"] += check(data, size)


def forged_lengths():
    """Lengths a header claims but the segment cannot hold: refused without
    an allocation of their size."""
    base = bytearray(valid("'<f8'", (4,), False))
    for ndim, descr_len in ((65535, 2**32 - 1), (64, 2**31), (1, 2**20 + 1)):
        data = bytearray(base)
        data[40:42] = ndim.to_bytes(2, "little")
        data[44:48] = descr_len.to_bytes(4, "little")
        data[12:16] = ((48 + 8 * ndim + descr_len) % 2**32).to_bytes(4, "little")
        check(bytes(data), 4096)


def main() -> None:
    # Cap the address space: an allocation sized by a forged length fails.
    used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + (512 << 20), resource.RLIM_INFINITY))
    forged_lengths()
    fuzz_mutated_headers()
    fuzz_noise_after_the_magic()
    fuzz_descriptions()
    print(json.dumps({"examples_per_strategy": EXAMPLES, **COUNTS}))


if __name__ == "__main__":
    sys.exit(main())
