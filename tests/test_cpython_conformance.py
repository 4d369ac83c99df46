"""CPython's own shared-memory tests, run with ferroshm standing in for
``multiprocessing.shared_memory`` under every start method:
``_TestSharedMemory`` on every version, and ``TestSharedMemoryNames`` (names
with ``:`` and newlines) from 3.14, and wherever a patch release took it over.

The tests come from the interpreter's ``test`` package; tests/cpython holds
only the runner and the sitecustomize that substitutes ferroshm in the test
process and every child process it starts.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "cpython"

# Tests left out, by "Class.method", with the reason (none: every test runs).
NOT_YET: list[str] = []

#: Tests that run and must fail for now, by "Class.method", with the reason.
#: (A test listed here that passes fails the run.) Only the tests of the
#: running version's classes count.
#: Tests expected to fail, by name, with the reason (none).
EXPECTED_FAILURES: dict[str, str] = {}

TEST_MODULE = importlib.util.find_spec("test._test_multiprocessing")
HAS_TEST_PACKAGE = TEST_MODULE is not None

#: How many tests each class has, by version: _TestSharedMemory grew in 3.10
#: and 3.13; TestSharedMemoryNames is new in 3.14. Later versions have at
#: least the last known version's.
TESTS_IN_CLASS = {
    "_TestSharedMemory": {(3, 9): 8, (3, 10): 13, (3, 11): 13, (3, 12): 13, (3, 13): 16, (3, 14): 16, (3, 15): 16},
    "TestSharedMemoryNames": {(3, 14): 1, (3, 15): 1},
}
KNOWN_VERSIONS = sorted(TESTS_IN_CLASS["_TestSharedMemory"])


@functools.cache
def classes_of_this_version() -> dict[str, int]:
    """The classes this version has, with their (least) number of tests,
    and those a later patch release of an earlier version took over
    (Debian's 3.13.15 has TestSharedMemoryNames and the JSON tracker
    messages it tests), with their first version's count."""
    version = min(sys.version_info[:2], KNOWN_VERSIONS[-1])
    source = Path(TEST_MODULE.origin).read_text(encoding="utf-8")
    return {
        name: counts[version] if version in counts else counts[min(counts)]
        for name, counts in TESTS_IN_CLASS.items()
        if version in counts or re.search(rf"^class {name}\(", source, re.M)
    }


@pytest.mark.skipif(not HAS_TEST_PACKAGE, reason="this interpreter has no 'test' package")
@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("substitute", ["ferroshm.shared_memory", "ferroshm"])
def test_cpython_shared_memory_suite(start_method, substitute):
    """The interpreter's own tests pass with ferroshm as
    ``multiprocessing.shared_memory``: the module (what ``patch_stdlib``
    installs) and the top-level package (what ``import ferroshm as
    shared_memory`` gives), whose hooks the tests patch."""
    classes = classes_of_this_version()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "FERROSHM_SUBSTITUTE": substitute,
    }
    expected_failures = [t for t in EXPECTED_FAILURES if t.split(".")[0] in classes]
    cmd = [sys.executable, str(HERE / "run_shm_tests.py"), start_method]
    if NOT_YET:
        cmd += ["--exclude", *NOT_YET]
    if expected_failures:
        cmd += ["--expect-failure", *expected_failures]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    counts = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", proc.stdout, re.M)
    assert counts, report
    passed, failed, skipped = map(int, counts.groups())
    assert failed == 0 and skipped == 0, report
    lines = {
        m["name"]: {k: int(v) for k, v in m.groupdict().items() if k != "name"}
        for m in re.finditer(
            r"^class (?P<name>\w+): (?P<tests>\d+) tests, (?P<passed>\d+) passed, (?P<failed>\d+) failed, "
            r"(?P<skipped>\d+) skipped, (?P<xfailed>\d+) expected failures, "
            r"substituted interpreters: (?P<substituted>\d+)$",
            proc.stdout, re.M)
    }
    assert set(lines) == set(classes), report
    for name, least in classes.items():
        got = lines[name]
        if sys.version_info[:2] <= KNOWN_VERSIONS[-1]:
            assert got["tests"] == least, report
        else:
            assert got["tests"] >= least, report
        excluded = sum(t.startswith(name + ".") for t in NOT_YET)
        xfail = sum(t.startswith(name + ".") for t in expected_failures)
        assert got["xfailed"] == xfail, report
        assert got["passed"] == got["tests"] - excluded - xfail, report
        # Every class starts other interpreters (children, the resource
        # tracker, TestSharedMemoryNames's programs): ferroshm was in them.
        assert got["substituted"] > 0, report
        if os.environ.get("FERROSHM_CPYTHON_REPORT"):  # .ci/matrix.py's summary
            with open(os.environ["FERROSHM_CPYTHON_REPORT"], "a") as f:
                f.write(json.dumps({"class": name, "start_method": start_method, "substitute": substitute,
                                    "passed": got["passed"], "in_class": got["tests"],
                                    "expected_failures": got["xfailed"]}) + "\n")
    assert passed == sum(lines[n]["passed"] for n in lines), report
    assert f"start method: {start_method}" in proc.stdout, report
    assert f"multiprocessing.shared_memory: {substitute} from " in proc.stdout, report
