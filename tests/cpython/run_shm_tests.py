"""Run CPython's own ``_TestSharedMemory`` tests against ferroshm.

Usage: python run_shm_tests.py START_METHOD [--exclude TEST_NAME ...]

Run with tests/cpython on PYTHONPATH: its sitecustomize installs ferroshm as
``multiprocessing.shared_memory`` in this process and in every child
(``ferroshm.shared_memory``, or the top-level ``ferroshm`` package when
``FERROSHM_SUBSTITUTE=ferroshm``). The tests come from the interpreter's own
``test`` package; nothing is copied. Prints unittest's report, then the
number of tests in the class and a last line ``N passed, N failed, N
skipped``.
Exit status 0 when everything selected ran and passed, 3 when the
interpreter has no ``test`` package.
"""

import argparse
import inspect
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

if _shm.__name__ not in ("ferroshm", "ferroshm.shared_memory"):
    raise SystemExit(f"multiprocessing.shared_memory is {_shm.__name__}, not ferroshm: is tests/cpython on PYTHONPATH?")

try:
    import test._test_multiprocessing as _tm
except ImportError as exc:  # some distributions ship without the test package
    print(f"no CPython test package: {exc}")
    raise SystemExit(3)


def install_shared_memory_tests(globs, start_method):
    """Put CPython's ``WithProcessesTestSharedMemory`` (``_TestSharedMemory``
    with the processes mixin) and the ``setUpModule``/``tearDownModule`` that
    select ``start_method`` into ``globs``, using the interpreter's own
    ``install_tests_in_module_dict``.

    Python 3.11+ can install the processes-type classes only
    (``only_type="processes"``); 3.9 and 3.10 have no such parameter and
    install every test class of the module for every type. Either way the
    classes are built in a scratch namespace and only the three names this
    runner needs are kept, so the test case is the version's own, built by
    the version's own code."""
    install = _tm.install_tests_in_module_dict
    scratch = {"__name__": globs["__name__"]}
    if "only_type" in inspect.signature(install).parameters:
        install(scratch, start_method, only_type="processes")
    else:
        install(scratch, start_method)
    for name in ("WithProcessesTestSharedMemory", "setUpModule", "tearDownModule"):
        globs[name] = scratch[name]


# Each child started by spawn/forkserver imports this file again as
# __mp_main__; the classes must exist there too.
install_shared_memory_tests(globals(), args.start_method if args else "fork")

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
    print(f"multiprocessing.shared_memory: {_shm.__name__} from {_shm.__file__}")
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"tests in the class: {len(names)}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    for test, reason in result.skipped:
        print(f"skipped {test.id()}: {reason}")
    sys.exit(0 if failed == 0 and skipped == 0 else 1)
