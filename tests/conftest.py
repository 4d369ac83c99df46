"""Shared fixtures: unique segment names, and a guard that fails any test
that leaves a segment behind in /dev/shm."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# NumPy's OpenBLAS starts a thread per core when imported, and the tests fork:
# forking a multi-threaded process is deprecated (a DeprecationWarning since
# 3.12, an error under -Werror from 3.15). One BLAS thread, the caller's.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

SHM_DIR = Path("/dev/shm")
_counter = itertools.count()


def segments() -> set[str]:
    """Names of the POSIX shared-memory segments that exist now."""
    if not SHM_DIR.is_dir():
        return set()
    return {p.name for p in SHM_DIR.iterdir() if not p.name.startswith("sem.")}


@pytest.fixture
def shm_name() -> str:
    """A segment name no other test or run uses."""
    return f"fshm_test_{os.getpid()}_{next(_counter)}"


@pytest.fixture(autouse=True)
def no_leaked_segments(request):
    """Fail the test if it leaves a segment in /dev/shm.

    Resource trackers of child processes may need a moment to clean up after
    the test's processes end, so the check waits a little before failing.
    The check compares /dev/shm before and after the test, so one leak fails
    one test only. Leaked segments are reported, not removed: on a shared
    machine a segment that appeared meanwhile may belong to someone else.
    """
    before = segments()
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = segments() - before
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if leaked:
        pytest.fail(f"test left segments in /dev/shm: {sorted(leaked)}")


def run_python(code: str, *, timeout: float = 60, env: dict | None = None, check: bool = True):
    """Run ``code`` in a fresh interpreter (so that a crash fails the test
    instead of killing the runner) and return the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"child exited with {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def kill_creator_and_check_cleanup(code: str, while_alive=None) -> None:
    """Run ``code`` (which creates a segment, prints its name and sleeps) in
    a fresh interpreter, call ``while_alive(name)``, SIGKILL it, and assert
    that its resource tracker warned of the leak and removed the segment."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        name = proc.stdout.readline().strip()
        assert name in segments()
        if while_alive is not None:
            while_alive(name)
    finally:
        proc.kill()
        proc.wait()
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert "1 leaked shared_memory objects" in err
    assert name not in segments()


def stdlib_can_track(name: str) -> bool:
    """Whether the running standard library's resource tracker can carry
    ``name`` (OS name, leading '/'): the line format before 3.14 (ASCII, no
    ':' or newline); from 3.14 a name with a newline goes as JSON, and so
    does every name when ``_use_simple_format`` is off (as in 3.15)."""
    from multiprocessing import resource_tracker

    if not hasattr(resource_tracker, "_decode_message"):
        return name.isascii() and ":" not in name and "\n" not in name
    simple = getattr(resource_tracker._resource_tracker, "_use_simple_format", True) and "\n" not in name
    return name.isascii() if simple else len(name.encode()) <= 255


ROOT = Path(__file__).resolve().parent.parent


def build_example(name: str) -> str:
    """Path of the Rust example ``name`` (examples/NAME.rs), built in release
    mode; skips the test where cargo is not installed."""
    import json
    import shutil

    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed")
    proc = subprocess.run(
        ["cargo", "build", "--release", "--example", name, "--message-format=json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise AssertionError(f"cargo build failed:\n{proc.stderr}")
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == name and msg.get("executable"):
            return msg["executable"]
    raise AssertionError(f"cargo did not report the {name} executable:\n{proc.stdout}")


def run_tool(exe: str, *args: str) -> subprocess.CompletedProcess:
    """Run a built example with ``args``."""
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
