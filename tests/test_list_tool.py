"""examples/list_tool.rs, the Rust example, against lists made in Python:
printing them as JSON and setting their items, in both directions."""

from __future__ import annotations

import json
import math
import subprocess
from multiprocessing import shared_memory as std

import pytest

import ferroshm
from conftest import build_example, run_tool


@pytest.fixture(scope="session")
def list_tool() -> str:
    """Path of the list_tool example, built once per test session."""
    return build_example("list_tool")


tool = run_tool


def as_json(value):
    """A Python item as the tool prints it, parsed."""
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return value


ITEMS = [
    0,
    -(2**63),
    2**63 - 1,
    2.5,
    -0.0,
    1e300,
    5e-324,
    True,
    False,
    None,
    "",
    "plain",
    'quote " backslash \\ newline \n tab \t bell \x07',
    "héllo wörld",
    "✓ ok",
    b"",
    b"\x00\x01\xfe\xffab",
]


@pytest.fixture(params=["ferroshm", "stdlib"])
def make_list(request, shm_name):
    """Make a list named ``shm_name`` with ferroshm or the standard library;
    unlinked after the test."""
    made = []

    def make(items):
        if request.param == "ferroshm":
            sl = ferroshm.ShareableList(items, name=shm_name)
        else:
            sl = std.ShareableList(items, name=shm_name)
        made.append(sl)
        return sl

    yield make
    for sl in made:
        sl.shm.close()
        sl.shm.unlink()


def test_prints_every_item_as_json(list_tool, make_list, shm_name):
    items = ITEMS
    make_list(items)
    proc = tool(list_tool, shm_name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) == len(items)
    parsed = [json.loads(line) for line in lines]
    assert parsed == [as_json(v) for v in items]
    # Types survive: ints stay ints, floats stay floats (1.0 is printed "1.0").
    assert [type(p) for p in parsed] == [type(as_json(v)) for v in items]
    assert math.copysign(1.0, parsed[4]) == -1.0


def test_floats_print_so_that_python_reads_the_same_value(list_tool, shm_name):
    values = [1.0, 0.1, -1e-7, 1e16, 123456789.125, float("inf"), float("-inf"), float("nan")]
    sl = ferroshm.ShareableList(values, name=shm_name)
    try:
        proc = tool(list_tool, shm_name)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[:3] == ["1.0", "0.1", "-1e-7"]
        parsed = [json.loads(line) for line in proc.stdout.splitlines()]
        assert parsed[:-1] == values[:-1]
        assert math.isnan(parsed[-1])
    finally:
        sl.shm.unlink()


def test_empty_list_prints_nothing(list_tool, make_list, shm_name):
    make_list([])
    proc = tool(list_tool, shm_name)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


@pytest.mark.parametrize(
    "index, text, expected",
    [
        ("0", "42", 42),
        ("0", "-9223372036854775808", -(2**63)),
        ("1", "2.0", 2.0),
        ("1", "-1.5e3", -1500.0),
        ("2", "true", True),
        ("2", "false", False),
        ("3", "null", None),
        ("4", '"new text"', "new text"),
        ("4", '"ünïcödé ✓"', "ünïcödé ✓"),
        ("4", r'"esc \" \\ \n \u00e9 \ud83d\ude00"', 'esc " \\ \n é 😀'),
        ("4", '""', ""),
        ("5", '{"bytes": "00ff10"}', b"\x00\xff\x10"),
        ("5", '{ "bytes" : "" }', b""),
        ("0", '"8 bytes!"', "8 bytes!"),  # an int slot takes a str of up to 8 bytes
        ("4", "7", 7),  # and a str slot takes an int
        ("-1", "null", None),  # negative indices count from the end
        ("-6", "3.25", 3.25),
    ],
)
def test_set_is_seen_by_python(list_tool, make_list, shm_name, index, text, expected):
    sl = make_list([1, 0.5, None, "x", "a string of 16+ bytes", b"bytes here"])
    before = list(sl)
    proc = tool(list_tool, shm_name, "set", index, text)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    i = int(index) % len(before)
    after = before.copy()
    after[i] = expected
    got = list(sl)
    assert got == after
    assert type(got[i]) is type(expected)
    # And the tool reads back what it wrote.
    printed = tool(list_tool, shm_name).stdout.splitlines()
    assert json.loads(printed[i]) == as_json(expected)


def test_python_writes_are_seen_by_the_tool(list_tool, make_list, shm_name):
    sl = make_list(["slot of 16 bytes", 0, b"12345678"])
    sl[0] = "changed"
    sl[1] = 9.75
    sl[2] = b"\x01"
    proc = tool(list_tool, shm_name)
    assert [json.loads(line) for line in proc.stdout.splitlines()] == ["changed", 9.75, {"bytes": "01"}]


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The tool's stderr, which must be exactly one line."""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("list_tool: ")
    assert "panicked" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "index, text, message",
    [
        ("0", '"123456789"', "the 9-byte value does not fit the 8-byte slot of item 0"),
        ("1", '"' + "é" * 9 + '"', "the 18-byte value does not fit the 16-byte slot of item 1"),
        ("-1", '{"bytes": "' + "00" * 9 + '"}', "the 9-byte value does not fit the 8-byte slot of item 2"),
        ("3", "7", "index 3 is out of range"),
        ("-4", "7", "index -4 is out of range"),
        ("0", "9223372036854775808", "does not fit in a 64-bit signed integer"),
        ("0", "[1, 2]", "lists cannot be stored"),
        ("0", '{"other": 1}', 'the only object form is {"bytes": "<hex>"}'),
        ("0", '{"bytes": "abc"}', "even number of digits"),
        ("0", '{"bytes": "zz"}', "hex digits"),
        ("0", "01", "is not a JSON number"),
        ("0", "1.", "is not a JSON number"),
        ("0", "nul", "unexpected character"),
        ("0", "1 2", "unexpected text"),
        ("0", '"unterminated', "unterminated string"),
        ("0", '"\\ud800"', "unpaired surrogate"),
    ],
)
def test_refused_values_exit_1_and_change_nothing(list_tool, make_list, shm_name, index, text, message):
    # Slots: 8 bytes (an int), 16 bytes (8 characters, 15 bytes of UTF-8), 8 bytes.
    sl = make_list([5, "é" * 7 + "!", b"abc"])
    before = bytes(sl.shm.buf)
    proc = tool(list_tool, shm_name, "set", index, text)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert message in error_line(proc)
    assert bytes(sl.shm.buf) == before


def test_missing_name_exits_1_with_one_line(list_tool, shm_name):
    for args in ([shm_name], [shm_name, "set", "0", "1"]):
        proc = tool(list_tool, *args)
        assert proc.returncode == 1
        assert proc.stdout == ""
        assert error_line(proc) == f'list_tool: no shared memory segment named "{shm_name}"'


def test_a_segment_that_is_not_a_list(list_tool, shm_name):
    shm = ferroshm.SharedMemory(shm_name, create=True, size=64)
    try:
        shm.buf[:8] = (1000).to_bytes(8, "little")
        proc = tool(list_tool, shm_name)
        assert proc.returncode == 1
        assert "is not a valid ShareableList" in error_line(proc)
        assert "1000 items do not fit in a 64-byte segment" in proc.stderr
    finally:
        shm.close()
        shm.unlink()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "missing NAME"),
        (["name", "set", "0"], "unexpected arguments"),
        (["name", "get", "0", "1"], "unexpected arguments"),
        (["name", "set", "x", "1"], 'INDEX must be an integer, not "x"'),
    ],
)
def test_usage_errors_exit_2(list_tool, args, message):
    proc = tool(list_tool, *args)
    assert proc.returncode == 2
    line = error_line(proc)
    assert message in line and "usage: list_tool NAME [set INDEX JSON]" in line


def test_printing_does_not_modify_the_list(list_tool, shm_name):
    sl = ferroshm.ShareableList([1, "two", b"three", None], name=shm_name)
    try:
        before = bytes(sl.shm.buf)
        assert tool(list_tool, shm_name).returncode == 0
        assert bytes(sl.shm.buf) == before
    finally:
        sl.shm.unlink()
