"""pytest plugin of the real-client suite (loaded by clients/run.py with -p).

After each test it appends one JSON line to FERROSHM_CLIENTS_OUTCOMES: the
test's node id, its outcome (the worst of its setup, call, teardown and
subtest reports: passed < skipped/xfailed < xpassed < failed < error), the
first line of the failure's message, and the names that appeared in /dev/shm
while it ran and were still there when it finished (so that a segment left at
the end can be traced to the test that made it). One line per test, written
as it finishes, so a run cut short by its time limit still reports the tests
it did run. When pytest is done it creates FERROSHM_CLIENTS_OUTCOMES + ".done".
"""

from __future__ import annotations

import json
import os

_SHM = "/dev/shm"
_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "xpassed": 2, "failed": 3, "error": 4}


def _names() -> set[str]:
    try:
        return set(os.listdir(_SHM))
    except OSError:
        return set()


def _outcome(report) -> str:
    xfail = hasattr(report, "wasxfail")
    if report.when in ("setup", "teardown"):
        if report.failed:
            return "error"
        if report.skipped:
            return "xfailed" if xfail else "skipped"
        return "passed"
    if report.passed:
        return "xpassed" if xfail else "passed"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return "failed"


def _message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message
    elif isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        text = str(report.longrepr[-1])
    else:
        text = str(report.longrepr or "")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


class _Recorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.tests: dict[str, dict] = {}
        self.before: set[str] = set()

    def pytest_runtest_logstart(self, nodeid, location):
        self.before = _names()
        self.tests[nodeid] = {"nodeid": nodeid, "outcome": "passed", "message": ""}

    def pytest_runtest_logreport(self, report):
        test = self.tests.setdefault(report.nodeid, {"nodeid": report.nodeid, "outcome": "passed", "message": ""})
        outcome = _outcome(report)
        if _RANK[outcome] > _RANK[test["outcome"]]:
            test["outcome"] = outcome
            test["message"] = _message(report) if outcome != "xpassed" else ""

    def pytest_collectreport(self, report):
        # A module that fails to import in one run loses its tests there:
        # it is reported as a test of its own, "error" (collection).
        if report.failed:
            self._write({"nodeid": report.nodeid or "<collection>", "outcome": "error",
                         "message": _message(report), "new_segments": []})

    def pytest_runtest_logfinish(self, nodeid, location):
        test = self.tests.pop(nodeid, None)
        if test is None:
            return
        test["new_segments"] = sorted(_names() - self.before)
        self._write(test)

    def _write(self, test: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(test) + "\n")


def pytest_unconfigure(config):
    # pytest is done; what remains is the interpreter's exit (multiprocessing
    # joins its children then). clients/run.py gives that a grace period.
    path = os.environ.get("FERROSHM_CLIENTS_OUTCOMES")
    if path:
        with open(path + ".done", "w", encoding="utf-8"):
            pass


def pytest_configure(config):
    path = os.environ.get("FERROSHM_CLIENTS_OUTCOMES")
    if path:
        config.pluginmanager.register(_Recorder(path), "ferroshm_clients_recorder")
