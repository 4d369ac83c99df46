"""The array header: as the README documents it, byte for byte (a reader and
a writer with only the standard library and NumPy), read by a Rust program
(examples/array_tool.rs), and refused with ValueError when corrupt or
hostile (fuzzed through real segments)."""

from __future__ import annotations

import ast
import json
import os
import struct
import subprocess
import sys
from multiprocessing import shared_memory as std
from pathlib import Path

import numpy as np
import numpy.lib.format
import pytest

import ferroshm
from ferroshm import _native

from conftest import build_example, run_tool
from helpers_robustness.report import last_json_line, report

FUZZER = Path(__file__).parent / "array_helpers" / "header_fuzz.py"

# The fixed part of the header: magic, version, flags, header length, data
# offset, nbytes, itemsize, ndim, reserved, descr length.
FIXED = struct.Struct("<8sHHIQQQHHI")


def stdlib_read(buf) -> np.ndarray:
    """The array in ``buf`` (a segment's bytes), read as the README says a
    program with only the standard library and NumPy can."""
    magic, version, flags, header_len, data_offset, nbytes, itemsize, ndim, _, descr_len = FIXED.unpack_from(buf, 0)
    assert magic == b"\x93FSHMARR" and version == 1
    shape = struct.unpack_from(f"<{ndim}Q", buf, 48)
    text = bytes(buf[48 + 8 * ndim : 48 + 8 * ndim + descr_len]).decode("utf-8")
    assert header_len == 48 + 8 * ndim + descr_len and data_offset % 64 == 0
    dtype = numpy.lib.format.descr_to_dtype(ast.literal_eval(text))
    assert dtype.itemsize == itemsize and nbytes == itemsize * int(np.prod(shape))
    order = "F" if flags & 1 else "C"
    return np.ndarray(shape, dtype, buffer=buf, offset=data_offset, order=order)


def stdlib_write(buf, array: np.ndarray) -> None:
    """Write ``array`` (C or Fortran contiguous) into ``buf`` with a header,
    as the README documents it."""
    fortran = array.flags.f_contiguous and not array.flags.c_contiguous
    descr = numpy.lib.format.dtype_to_descr(array.dtype)
    text = repr(descr).encode("utf-8")
    header_len = 48 + 8 * array.ndim + len(text)
    data_offset = -(-header_len // 64) * 64
    FIXED.pack_into(
        buf, 0, b"\x93FSHMARR", 1, int(fortran), header_len, data_offset, array.nbytes, array.itemsize,
        array.ndim, 0, len(text),
    )
    struct.pack_into(f"<{array.ndim}Q", buf, 48, *array.shape)
    buf[48 + 8 * array.ndim : header_len] = text
    target = np.ndarray(array.shape, array.dtype, buffer=buf, offset=data_offset, order="F" if fortran else "C")
    target[...] = array


ARRAYS = [
    np.arange(10.0),
    np.asfortranarray(np.arange(24, dtype=">i4").reshape(2, 3, 4)),
    np.array(["ab", "cdé"], dtype="U3"),
    np.array([b"x", b"yz"], dtype="S2"),
    np.array(["2026-12-01T10:00", "NaT"], dtype="M8[m]"),
    np.zeros(3, dtype=[(("title", "pos"), "<f4", (2,)), ("id", "<u8"), ("tag", "S3")]),
    np.zeros((), dtype=np.dtype([("a", "u1"), ("b", [("c", "<i4")])], align=True)),
    np.zeros((2, 0)),
]


@pytest.mark.parametrize("source", ARRAYS, ids=lambda a: str(a.dtype))
def test_a_program_with_only_the_standard_library_reads_a_shared_array(source):
    with ferroshm.share(source) as a:
        theirs = std.SharedMemory(a.name)
        try:
            b = stdlib_read(theirs.buf)
            assert b.shape == source.shape and b.dtype == source.dtype
            assert b.tobytes(order="A") == source.tobytes(order="A")
            assert b.flags.f_contiguous == source.flags.f_contiguous
            if b.size:
                b.reshape(-1, order="A").view(np.uint8)[0] ^= 1  # the same memory
                assert a.tobytes(order="A") != source.tobytes(order="A")
            del b
        finally:
            theirs.close()


@pytest.mark.parametrize("source", ARRAYS, ids=lambda a: str(a.dtype))
def test_a_header_written_with_only_the_standard_library_is_attached(source):
    theirs = std.SharedMemory(create=True, size=4096)
    try:
        stdlib_write(theirs.buf, source)
        a = ferroshm.attach(theirs.name)
        assert a.shape == source.shape and a.dtype == source.dtype
        assert a.tobytes(order="A") == source.tobytes(order="A")
        assert a.flags.f_contiguous == source.flags.f_contiguous
    finally:
        theirs.close()
        theirs.unlink()


def test_the_header_is_as_documented():
    a = ferroshm.share(np.arange(1000.0))
    try:
        head = bytes(a.shm.buf[:64])
        assert FIXED.unpack_from(head) == (b"\x93FSHMARR", 1, 0, 61, 64, 8000, 8, 1, 0, 5)
        assert head[48:61] == struct.pack("<Q", 1000) + b"'<f8'"
        assert head[61:] == bytes(3)  # zero up to the data
        h = _native.ArrayHeader.read(a.shm)
        assert (h.descr, h.shape, h.fortran, h.data_offset, h.nbytes, h.itemsize) == ("<f8", (1000,), False, 64, 8000, 8)
        assert h.encode() == head[:61]
    finally:
        a.unlink()


def test_segments_that_hold_no_array_are_value_errors(shm_name):
    with ferroshm.SharedMemory(shm_name, create=True, size=4096) as shm:
        try:
            with pytest.raises(ValueError, match="holds no ferroshm array"):
                ferroshm.attach(shm_name)
            shm.buf[:8] = b"\x93FSHMARR"
            shm.buf[8:10] = (7).to_bytes(2, "little")
            with pytest.raises(ValueError, match="header version 7; this ferroshm reads version 1"):
                ferroshm.attach(shm_name)
            sl = ferroshm.ShareableList([1, 2])
            try:
                with pytest.raises(ValueError, match="holds no ferroshm array"):
                    ferroshm.attach(sl.shm.name)
            finally:
                sl.shm.close()
                sl.shm.unlink()
        finally:
            shm.unlink()


def test_header_errors_name_the_problem(shm_name):
    good = _native.ArrayHeader("'<f8'", (100,)).encode()
    cases = [  # (byte offset, new bytes, segment size, message)
        (0, b"", 200, "corrupt ferroshm array header: 800 bytes of data at offset 64 do not fit in the 200-byte"),
        (24, (808).to_bytes(8, "little"), 1000, "data size 808, but [100] items of 8 bytes make 800"),
        (10, (8).to_bytes(2, "little"), 1000, "unknown flags 0x0008"),
        (56, b"'<O8'", 1000, "object dtype"),
        (56, b"'<f9'", 1000, "size 9 is not one of [2, 4, 8, 12, 16]"),
    ]
    for at, value, size, message in cases:
        data = bytearray(good)
        data[at : at + len(value)] = value
        with ferroshm.SharedMemory(shm_name, create=True, size=size) as shm:
            try:
                shm.buf[: len(data)] = data
                with pytest.raises(ValueError) as got:
                    ferroshm.attach(shm_name)
                assert message in str(got.value)
            finally:
                shm.unlink()


@pytest.mark.timeout(1800)
def test_fuzz_headers_through_real_segments(request):
    proc = subprocess.run(
        [sys.executable, str(FUZZER)],
        capture_output=True,
        text=True,
        timeout=1500,  # a hang fails here
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},  # FERROSHM_FUZZ_EXAMPLES passes through
    )
    assert proc.returncode == 0, (
        f"array header fuzzer failed (exit {proc.returncode})\n"
        f"--- stdout\n{proc.stdout[-20000:]}\n--- stderr\n{proc.stderr[-20000:]}"
    )
    figures = last_json_line(proc.stdout)
    assert figures["inputs"] >= 3 * figures["examples_per_strategy"]
    # Both outcomes were exercised, also for exotic descriptions.
    assert figures["attached"] > 0 and figures["rejected"] > 0 and figures["descr_attached"] > 0
    assert figures["pickled"] == figures["attached"]
    report(request, figures)


# --- a Rust program: examples/array_tool.rs --------------------------------------


@pytest.fixture(scope="session")
def array_tool() -> str:
    """Path of the array_tool example, built once per test session."""
    return build_example("array_tool")


tool = run_tool


def test_rust_reads_and_writes_an_array_made_in_python(array_tool):
    with ferroshm.share(np.arange(12.0).reshape(3, 4)) as a:
        out = tool(array_tool, a.name)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert got == {
            "name": a.name, "descr": "'<f8'", "shape": [3, 4], "order": "C", "itemsize": 8, "nbytes": 96,
            "data_offset": 128, "values": list(range(12)), "sum": 66,
        }
        assert tool(array_tool, a.name, "set", "5", "-2.5").returncode == 0
        assert a[1, 1] == -2.5
        # Memory order for Fortran arrays, one flat index.
    with ferroshm.share(np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))) as f:
        got = json.loads(tool(array_tool, f.name).stdout)
        assert got["order"] == "F" and got["values"] == [0, 3, 1, 4, 2, 5] and got["descr"] == "'<i8'"
        assert tool(array_tool, f.name, "set", "1", "7").returncode == 0
        assert f[1, 0] == 7
    with ferroshm.zeros(2, dtype=[("x", "<f4"), ("s", "S2")]) as s:
        got = json.loads(tool(array_tool, s.name).stdout)
        assert got["descr"] == "[('x', '<f4'), ('s', '|S2')]" and "values" not in got
        out = tool(array_tool, s.name, "set", "0", "1")
        assert out.returncode == 1 and "set writes float64 and int64 arrays" in out.stderr


def test_python_attaches_an_array_made_in_rust(array_tool, shm_name):
    out = tool(array_tool, "create", shm_name, "2,5")
    assert out.returncode == 0 and out.stdout.strip() == shm_name, out.stderr
    a = ferroshm.attach(shm_name)
    try:
        assert a.dtype == np.float64 and a.shape == (2, 5)
        assert a.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    finally:
        a.unlink()


def test_rust_tool_errors(array_tool, shm_name):
    out = tool(array_tool, shm_name)
    assert out.returncode == 1 and "No such file or directory" in out.stderr
    with ferroshm.SharedMemory(shm_name, create=True, size=100) as shm:
        try:
            out = tool(array_tool, shm_name)
            assert out.returncode == 1 and "holds no ferroshm array" in out.stderr
        finally:
            shm.unlink()
    with ferroshm.zeros(3) as a:
        out = tool(array_tool, a.name, "set", "3", "1")
        assert out.returncode == 1 and "index 3 is out of bounds for 3 elements" in out.stderr
    assert tool(array_tool).returncode == 2
