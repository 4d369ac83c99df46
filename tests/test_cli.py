"""The command line, ``python -m ferroshm``: ls, inspect, rm, bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from multiprocessing import shared_memory as std
from pathlib import Path

import pytest

import ferroshm
from ferroshm import _native

from conftest import SHM_DIR, segments

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ferroshm", *args], capture_output=True, text=True, timeout=120
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def cleanup():
    """Names (without '/') to remove after the test if they still exist."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            _native.unlink("/" + name)
        except FileNotFoundError:
            pass


@pytest.fixture
def raw_segment(shm_name, cleanup):
    """An untracked 100-byte segment starting with b'hello'."""
    shm = ferroshm.SharedMemory(shm_name, create=True, size=100, track=False)
    cleanup.append(shm_name)
    shm.buf[:5] = b"hello"
    shm.close()
    return shm_name


def ls_json() -> dict[str, dict]:
    proc = cli("ls", "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return {entry["name"]: entry for entry in json.loads(proc.stdout)}


# --- ls -----------------------------------------------------------------------------------


def test_ls_json_describes_each_segment_and_its_kind(shm_name, cleanup):
    names = {kind: f"{shm_name}_{kind}" for kind in ("ours", "std", "raw", "zeros", "empty", "bad")}
    cleanup.extend(names.values())
    ours = ferroshm.ShareableList([1, "two", b"three", None, True, 2.5], name=names["ours"])
    theirs = std.ShareableList(["stdlib", 7], name=names["std"])
    ferroshm.ShareableList([], name=names["empty"]).shm.close()
    for key, size in (("raw", 100), ("zeros", 4096), ("bad", 64)):
        shm = ferroshm.SharedMemory(names[key], create=True, size=size, track=False)
        if key == "raw":
            shm.buf[:5] = b"hello"
        if key == "bad":  # 1000 items cannot fit in 64 bytes
            shm.buf[:8] = (1000).to_bytes(8, sys.byteorder)
        shm.close()
    try:
        listed = ls_json()
        expected = {"ours": "shareable_list", "std": "shareable_list", "empty": "shareable_list",
                    "raw": "raw", "zeros": "raw", "bad": "raw"}
        for key, kind in expected.items():
            entry = listed[names[key]]
            assert entry["kind"] == kind, (key, entry)
            st = os.stat(SHM_DIR / names[key])
            assert entry["size"] == st.st_size
            assert entry["uid"] == st.st_uid == os.getuid()
            assert entry["mode"] == 0o600
            assert entry["mtime"] == st.st_mtime
            assert set(entry) >= {"name", "size", "uid", "mode", "mtime", "kind"}
        assert listed[names["ours"]]["items"] == 6
        assert listed[names["ours"]]["size"] == 166
        assert listed[names["std"]]["items"] == 2
        assert listed[names["empty"]]["items"] == 0 and listed[names["empty"]]["size"] == 16
        assert listed[names["raw"]]["items"] is None
    finally:
        ours.shm.close()
        ours.shm.unlink()
        theirs.shm.close()
        theirs.shm.unlink()


def test_every_item_is_read_to_decide_the_kind(shm_name):
    sl = ferroshm.ShareableList([1, "fine", "broken"], name=shm_name)
    try:
        assert ls_json()[shm_name]["kind"] == "shareable_list"
        # Make the last str invalid UTF-8: the header is still valid.
        data_start = 8 * (3 + 2)
        sl.shm.buf[data_start + 16] = 0xFF
        assert ls_json()[shm_name]["kind"] == "raw"
    finally:
        sl.shm.unlink()


def test_ls_table(shm_name, cleanup):
    sl = ferroshm.ShareableList([1, 2, 3], name=shm_name)
    seg = _native.Segment.open(f"/{shm_name}_raw", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o640, 4096)
    cleanup.append(f"{shm_name}_raw")
    seg.close()
    try:
        proc = cli("ls")
        assert proc.returncode == 0 and proc.stderr == ""
        lines = proc.stdout.splitlines()
        assert lines[0].split() == ["NAME", "SIZE", "OWNER", "MODE", "AGE", "KIND"]
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        owner = __import__("pwd").getpwuid(os.getuid()).pw_name
        name, size, who, mode, age, *kind = rows[shm_name]
        assert (size, who, mode, kind) == ("91", owner, "rw-------", ["shareable_list", "(3", "items)"])
        assert age[-1] in "smhd" and age[:-1].isdigit()
        name, size, who, mode, age, *kind = rows[f"{shm_name}_raw"]
        assert (size, mode, kind) == ("4096", "rw-r-----", ["raw"])
    finally:
        sl.shm.unlink()


def test_ls_and_inspect_change_nothing_and_track_nothing(shm_name):
    sl = std.ShareableList([1, "two", b"three"], name=shm_name)
    try:
        before = bytes(sl.shm.buf)
        st = os.stat(SHM_DIR / shm_name)
        for args in (["ls"], ["ls", "--json"], ["inspect", shm_name], ["inspect", shm_name, "--json"]):
            proc = cli(*args)
            assert proc.returncode == 0, proc.stderr
            # A resource tracker of the CLI's own would have removed the
            # segment when the CLI exited, with a warning.
            assert proc.stderr == ""
            assert (SHM_DIR / shm_name).exists()
        assert bytes(sl.shm.buf) == before
        after = os.stat(SHM_DIR / shm_name)
        assert (after.st_mtime_ns, after.st_ctime_ns, after.st_size) == (st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_an_empty_file_is_raw(shm_name, cleanup):
    fd = os.open(SHM_DIR / shm_name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    cleanup.append(shm_name)
    assert ls_json()[shm_name]["kind"] == "raw"
    proc = cli("inspect", shm_name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{shm_name}: raw, 0 bytes\n"


# --- inspect ------------------------------------------------------------------------------


def test_inspect_a_list(shm_name):
    sl = ferroshm.ShareableList([1, "two", b"th\x00ree", None, True, 2.5, "ünï"], name=shm_name)
    try:
        proc = cli("inspect", shm_name)
        assert proc.returncode == 0 and proc.stderr == ""
        assert proc.stdout.splitlines() == [
            f"{shm_name}: shareable_list, 7 items, {sl.shm.size} bytes",
            "  [0]  q         1",
            "  [1]  8s        'two'",
            "  [2]  8s        b'th\\x00ree'",
            "  [3]  xxxxxx?x  None",
            "  [4]  xxxxxxx?  True",
            "  [5]  d         2.5",
            "  [6]  8s        'ünï'",
        ]
        out = json.loads(cli("inspect", "/" + shm_name, "--json").stdout)
        assert out == {
            "name": shm_name,
            "size": sl.shm.size,
            "kind": "shareable_list",
            "items": [
                {"format": "q", "value": 1},
                {"format": "8s", "value": "two"},
                {"format": "8s", "value": {"bytes": b"th\x00ree".hex()}},
                {"format": "xxxxxx?x", "value": None},
                {"format": "xxxxxxx?", "value": True},
                {"format": "d", "value": 2.5},
                {"format": "8s", "value": "ünï"},
            ],
        }
    finally:
        sl.shm.unlink()


def test_inspect_a_raw_segment(raw_segment):
    proc = cli("inspect", raw_segment, "--bytes", "20")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.splitlines() == [
        f"{raw_segment}: raw, 100 bytes, first 20 shown",
        "  00000000  68 65 6c 6c 6f 00 00 00  00 00 00 00 00 00 00 00  |hello...........|",
        "  00000010  00 00 00 00" + " " * 37 + "  |....|",
    ]
    default = cli("inspect", raw_segment)
    assert default.stdout.splitlines()[0] == f"{raw_segment}: raw, 100 bytes"
    assert len(default.stdout.splitlines()) == 1 + 7  # 100 bytes, 16 a line
    out = json.loads(cli("inspect", raw_segment, "--json", "--bytes", "8").stdout)
    assert out == {"name": raw_segment, "size": 100, "kind": "raw", "bytes": b"hello\0\0\0".hex()}


def test_inspect_a_missing_name(shm_name):
    proc = cli("inspect", shm_name)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert one_line_error(proc) == f"ferroshm: no shared memory segment named {shm_name!r}"


# --- rm -----------------------------------------------------------------------------------


def test_rm_removes_every_name_given(shm_name, cleanup):
    names = [f"{shm_name}_{i}" for i in range(3)]
    cleanup.extend(names)
    for name in names:
        ferroshm.SharedMemory(name, create=True, size=10, track=False).close()
    proc = cli("rm", names[0], "/" + names[1], names[2])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert not any((SHM_DIR / n).exists() for n in names)


def test_rm_reports_missing_names_and_removes_the_others(shm_name, cleanup):
    present = [f"{shm_name}_a", f"{shm_name}_b"]
    cleanup.extend(present)
    for name in present:
        ferroshm.SharedMemory(name, create=True, size=10, track=False).close()
    missing = f"{shm_name}_missing"
    proc = cli("rm", present[0], missing, present[1], "bad/name")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"ferroshm: no shared memory segment named {missing!r}",
        "ferroshm: invalid segment name 'bad/name'",
    ]
    assert not any((SHM_DIR / n).exists() for n in present)


def test_rm_a_single_missing_name(shm_name):
    proc = cli("rm", shm_name)
    assert proc.returncode == 1
    assert one_line_error(proc) == f"ferroshm: no shared memory segment named {shm_name!r}"


def test_rm_a_list_that_python_still_has_open(shm_name):
    sl = ferroshm.ShareableList(["still", "mapped"], name=shm_name)
    proc = cli("rm", shm_name)
    assert proc.returncode == 0, proc.stderr
    assert shm_name not in segments()
    assert list(sl) == ["still", "mapped"]  # the mapping outlives the name
    # The creator registered it with the resource tracker; tell it the
    # segment is gone rather than let it warn at exit.
    from multiprocessing import resource_tracker

    resource_tracker.unregister(sl.shm._name, "shared_memory")
    sl.shm.close()


# --- usage and bench ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["inspect"], ["rm"], ["inspect", "x", "--bytes", "-1"]])
def test_usage_errors_exit_2(args):
    proc = cli(*args)
    assert proc.returncode == 2
    assert "usage: ferroshm" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_names_every_command():
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("ls", "inspect", "rm", "bench"):
        assert f"    {command}" in proc.stdout


def test_bench_runs_the_benchmark_of_the_checkout():
    from ferroshm import __main__ as cli_main

    checkout = Path(__file__).resolve().parent.parent
    from_checkout = Path(ferroshm.__file__).resolve().parent == checkout / "python" / "ferroshm"
    proc = cli("bench", "--help")
    if not from_checkout:
        # ferroshm installed from a wheel (make test-wheels): the benchmark
        # is not part of the package, and the installed command says so.
        assert cli_main._find_bench() is None
        assert proc.returncode == 1 and "the benchmark is not installed with the package" in proc.stderr
        return
    assert cli_main._find_bench() == checkout / "benches" / "bench.py"
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ferroshm bench")
    assert "benchmark" in proc.stdout.lower()


def test_bench_without_a_checkout_says_so(monkeypatch, capsys):
    from ferroshm import __main__ as cli_main

    monkeypatch.setattr(cli_main, "_find_bench", lambda: None)
    assert cli_main.main(["bench"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("ferroshm: the benchmark is not installed with the package")
    assert len(err.splitlines()) == 1


def test_console_script():
    script = Path(sys.executable).with_name("ferroshm")
    if not script.exists():
        pytest.skip("the ferroshm console script is not installed in this environment")
    proc = subprocess.run([str(script), "ls", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), list)


# --- failures that need another user's segment, simulated in-process ------------------------


def _denied(*_args, **_kwargs):
    raise PermissionError(13, "Permission denied", "/theirs")


def test_a_segment_that_cannot_be_opened_is_of_unknown_kind(monkeypatch):
    from ferroshm import __main__ as cli_main

    monkeypatch.setattr(cli_main._native, "read_list", _denied)
    assert cli_main._classify("/theirs", 100) == ("unknown", None)


def test_inspect_and_rm_without_permission(monkeypatch, capsys):
    from ferroshm import __main__ as cli_main

    monkeypatch.setattr(cli_main, "_open_read_only", _denied)
    monkeypatch.setattr(cli_main._native, "unlink", _denied)
    assert cli_main.main(["inspect", "theirs"]) == 1
    assert cli_main.main(["rm", "theirs"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "ferroshm: cannot open 'theirs': Permission denied",
        "ferroshm: cannot remove 'theirs': Permission denied",
    ]
