"""Run CPython's own shared-memory tests against ferroshm: ``_TestSharedMemory``
(with the processes mixin) and, from Python 3.14, ``TestSharedMemoryNames``.

Usage: python run_shm_tests.py START_METHOD [--exclude TEST ...] [--expect-failure TEST ...]

TEST is ``Class.method`` (``_TestSharedMemory.test_shared_memory_basics``).
Run with tests/cpython on PYTHONPATH: its sitecustomize installs ferroshm as
``multiprocessing.shared_memory`` in this process and in every child
(``ferroshm.shared_memory``, or the top-level ``ferroshm`` package when
``FERROSHM_SUBSTITUTE=ferroshm``). The tests come from the interpreter's own
``test`` package; nothing is copied.

``TestSharedMemoryNames`` runs its programs with ``python -I`` (test.support's
``assert_python_ok``), which ignores PYTHONPATH; they are run without ``-I``
here (PYTHONPATH passed explicitly), so that they use ferroshm too, and the
interpreters that loaded the sitecustomize are counted to show it.

An excluded test does not run. An expected failure runs and must fail: if
it passes, that is a failure (as unittest's ``expectedFailure``).

Prints unittest's report, then a line per class ``class NAME: N tests, N
passed, N failed, N skipped, N expected failures, substituted interpreters:
N`` (the other interpreters that its tests started with ferroshm), and a
last line ``N passed, N failed, N skipped``. Exit status 0 when everything
selected ran as expected, 3 when the interpreter has no ``test`` package.
"""

import argparse
import inspect
import os
import sys
import tempfile
import unittest

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("start_method", choices=["fork", "spawn", "forkserver"])
    parser.add_argument("--exclude", nargs="*", default=[])
    parser.add_argument("--expect-failure", nargs="*", default=[])
    args = parser.parse_args()
else:
    args = None

import multiprocessing.shared_memory as _shm

if _shm.__name__ not in ("ferroshm", "ferroshm.shared_memory"):
    raise SystemExit(f"multiprocessing.shared_memory is {_shm.__name__}, not ferroshm: is tests/cpython on PYTHONPATH?")

try:
    import test._test_multiprocessing as _tm
    from test.support import script_helper
except ImportError as exc:  # some distributions ship without the test package
    print(f"no CPython test package: {exc}")
    raise SystemExit(3)

#: The classes run, by the name reports use, and the name they are installed under.
CLASSES = {"_TestSharedMemory": "WithProcessesTestSharedMemory", "TestSharedMemoryNames": "TestSharedMemoryNames"}


def install_shared_memory_tests(globs, start_method):
    """Put CPython's ``WithProcessesTestSharedMemory`` (``_TestSharedMemory``
    with the processes mixin), ``TestSharedMemoryNames`` where the version
    has it, and the ``setUpModule``/``tearDownModule`` that select
    ``start_method`` into ``globs``, using the interpreter's own
    ``install_tests_in_module_dict``.

    Python 3.11+ can install the processes-type classes only
    (``only_type="processes"``), and the plain test cases only
    (``exclude_types=True``, as CPython's ``test_misc`` modules do); 3.9 and
    3.10 have no such parameters and install every test class of the module
    for every type. Either way the classes are built in a scratch namespace
    and only the names this runner needs are kept, so the test cases are the
    version's own, built by the version's own code."""
    install = _tm.install_tests_in_module_dict
    scratch = {"__name__": globs["__name__"]}
    parameters = inspect.signature(install).parameters
    if "only_type" in parameters:
        install(scratch, start_method, only_type="processes")
        plain = {"__name__": globs["__name__"]}
        install(plain, start_method, exclude_types=True)
        if "TestSharedMemoryNames" in plain:
            scratch["TestSharedMemoryNames"] = plain["TestSharedMemoryNames"]
    else:
        install(scratch, start_method)
    for name in ("setUpModule", "tearDownModule", *CLASSES.values()):
        if name in scratch:
            globs[name] = scratch[name]


# Each child started by spawn/forkserver imports this file again as
# __mp_main__; the classes must exist there too.
install_shared_memory_tests(globals(), args.start_method if args else "fork")


def run_programs_with_ferroshm():
    """Make test.support's ``python -I -c ...`` programs run without ``-I``,
    with this PYTHONPATH (so the sitecustomize substitutes ferroshm there)."""
    original = script_helper.run_python_until_end

    def run_python_until_end(*args, **env_vars):
        # An environment variable given makes it run without -I and -E.
        env_vars.setdefault("PYTHONPATH", os.environ["PYTHONPATH"])
        return original(*args, **env_vars)

    script_helper.run_python_until_end = run_python_until_end


def substituted(log):
    """The pids, other than this one, of the interpreters that wrote ``log``."""
    with open(log) as f:
        return {line.split()[0] for line in f} - {str(os.getpid())}


if __name__ == "__main__":
    seen_methods = set()
    run_programs_with_ferroshm()
    # The sitecustomize writes a line here in every interpreter it runs in.
    log = tempfile.NamedTemporaryFile("r", prefix="ferroshm-substituted-", suffix=".log")
    os.environ["FERROSHM_SUBSTITUTE_LOG"] = log.name

    by_class = {}  # report name -> {"Class.method": test}
    for label, installed in CLASSES.items():
        if installed not in globals():
            continue

        class Case(globals()[installed]):
            def setUp(self):
                seen_methods.add(_tm.multiprocessing.get_start_method())
                super().setUp()

        Case.__name__ = Case.__qualname__ = installed
        by_class[label] = {f"{label}.{n}": Case(n) for n in unittest.TestLoader().getTestCaseNames(Case)}
    known = {k for tests in by_class.values() for k in tests}
    unknown = (set(args.exclude) | set(args.expect_failure)) - known
    if unknown:
        raise SystemExit(f"no such tests to exclude or expect to fail: {sorted(unknown)}")

    totals = [0, 0, 0]
    summaries = []
    skips = []
    for label, tests in by_class.items():
        # One suite per class, so each gets the module's setUp/tearDown and
        # its own count of substituted interpreters.
        before = substituted(log.name)
        suite = unittest.TestSuite(t for k, t in tests.items() if k not in args.exclude)
        result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
        children = len(substituted(log.name) - before)

        def key_of(test):
            test = getattr(test, "test_case", test)  # a failed subTest's test
            name = getattr(test, "_testMethodName", None)
            return f"{label}.{name}" if name else repr(test)  # a failed fixture: not a test of the class

        failed_keys = {key_of(t) for t, _ in result.failures + result.errors}
        failed_keys |= {key_of(t) for t in result.unexpectedSuccesses}
        skipped = {key_of(t) for t, _ in result.skipped}
        skips += result.skipped
        ran = [k for k in tests if k not in args.exclude]
        expected = {k for k in ran if k in args.expect_failure}
        # An expected failure that passed is a failure; one that failed is not.
        failed = [k for k in ran if k not in skipped and (k in failed_keys) != (k in expected)]
        failed += sorted(failed_keys - set(ran))  # fixtures
        passed = [k for k in ran if k not in failed and k not in skipped and k not in expected]
        xfailed = len(expected - set(failed))
        summaries.append(f"class {label}: {len(tests)} tests, {len(passed)} passed, {len(failed)} failed, "
                         f"{len(skipped)} skipped, {xfailed} expected failures, "
                         f"substituted interpreters: {children}")
        summaries += [f"FAILED {k}" + (" (expected to fail, but passed)" if k in expected else "") for k in failed]
        totals = [totals[0] + len(passed), totals[1] + len(failed), totals[2] + len(skipped)]
    print(f"start method: {', '.join(sorted(seen_methods))}")
    print(f"multiprocessing.shared_memory: {_shm.__name__} from {_shm.__file__}")
    print("\n".join(summaries))
    print(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    for test, reason in skips:
        print(f"skipped {test.id()}: {reason}")
    sys.exit(0 if totals[1] == 0 and totals[2] == 0 else 1)
