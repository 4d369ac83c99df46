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


#: How many tests CPython's ``_TestSharedMemory`` has, by version: the
#: class grew in 3.10 and 3.13. Later versions have at least 3.13's.
TESTS_IN_CLASS = {(3, 9): 8, (3, 10): 13, (3, 11): 13, (3, 12): 13, (3, 13): 16}
MIN_TESTS = TESTS_IN_CLASS.get(sys.version_info[:2], 16)


@pytest.mark.skipif(not HAS_TEST_PACKAGE, reason="this interpreter has no 'test' package")
@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("substitute", ["ferroshm.shared_memory", "ferroshm"])
def test_cpython_shared_memory_suite(start_method, substitute):
    """The interpreter's own tests pass with ferroshm as
    ``multiprocessing.shared_memory``: the module (what ``patch_stdlib``
    installs) and the top-level package (what ``import ferroshm as
    shared_memory`` gives), whose hooks the tests patch."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "FERROSHM_SUBSTITUTE": substitute,
    }
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
    in_class = re.search(r"^tests in the class: (\d+)$", proc.stdout, re.M)
    assert in_class, report
    assert passed == int(in_class.group(1)) - len(NOT_YET), report
    if sys.version_info[:2] in TESTS_IN_CLASS:
        assert int(in_class.group(1)) == MIN_TESTS, report
    else:
        assert int(in_class.group(1)) >= MIN_TESTS, report
    assert f"start method: {start_method}" in proc.stdout, report
    assert f"multiprocessing.shared_memory: {substitute} from " in proc.stdout, report
