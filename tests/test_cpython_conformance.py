"""CPython's own ``_TestSharedMemory`` tests, run with ferroshm standing in
for ``multiprocessing.shared_memory`` under every start method.

The tests come from the interpreter's ``test`` package; tests/cpython holds
only the runner and the sitecustomize that substitutes ferroshm in the test
process and every child process it starts.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "cpython"

# Tests left out, by name, with the reason (none: every test of the class runs).
NOT_YET: list[str] = []

HAS_TEST_PACKAGE = importlib.util.find_spec("test._test_multiprocessing") is not None


@pytest.mark.skipif(not HAS_TEST_PACKAGE, reason="this interpreter has no 'test' package")
@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_cpython_shared_memory_suite(start_method):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(HERE / "run_shm_tests.py"), start_method]
    if NOT_YET:
        cmd += ["--exclude", *NOT_YET]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    counts = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", proc.stdout, re.M)
    assert counts, report
    passed, failed, skipped = map(int, counts.groups())
    assert failed == 0 and skipped == 0, report
    assert passed >= 13, report
    assert f"start method: {start_method}" in proc.stdout, report
