"""Run CPython's own ``_TestSharedMemory`` tests against ferroshm.

Usage: python run_shm_tests.py START_METHOD [--exclude TEST_NAME ...]

Run with tests/cpython on PYTHONPATH: its sitecustomize installs ferroshm as
``multiprocessing.shared_memory`` in this process and in every child. The
tests come from the interpreter's own ``test`` package; nothing is copied.
Prints unittest's report, then a last line ``N passed, N failed, N skipped``.
Exit status 0 when everything selected ran and passed, 3 when the
interpreter has no ``test`` package.
"""

import argparse
import sys
import unittest

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("start_method", choices=["fork", "spawn", "forkserver"])
    parser.add_argument("--exclude", nargs="*", default=[])
    args = parser.parse_args()
else:
    args = None

import multiprocessing.shared_memory as _shm

if not _shm.__name__.startswith("ferroshm"):
    raise SystemExit("ferroshm is not installed as multiprocessing.shared_memory")

try:
    import test._test_multiprocessing as _tm
except ImportError as exc:  # some distributions ship without the test package
    print(f"no CPython test package: {exc}")
    raise SystemExit(3)

# Each child started by spawn/forkserver imports this file again as
# __mp_main__; the classes must exist there too.
_tm.install_tests_in_module_dict(
    globals(), args.start_method if args else "fork", only_type="processes"
)

if __name__ == "__main__":
    seen_methods = set()

    class Case(globals()["WithProcessesTestSharedMemory"]):
        def setUp(self):
            seen_methods.add(_tm.multiprocessing.get_start_method())
            super().setUp()

    case = Case
    names = unittest.TestLoader().getTestCaseNames(case)
    unknown = set(args.exclude) - set(names)
    if unknown:
        raise SystemExit(f"no such tests to exclude: {sorted(unknown)}")
    suite = unittest.TestSuite(case(n) for n in names if n not in args.exclude)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    print(f"start method: {', '.join(sorted(seen_methods))}")
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    for test, reason in result.skipped:
        print(f"skipped {test.id()}: {reason}")
    sys.exit(0 if failed == 0 and skipped == 0 else 1)
