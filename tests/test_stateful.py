"""Stateful property tests (issue 5): hypothesis state machines drive
SharedMemory and ShareableList through create, attach, write, NumPy views,
pickling, child processes, close and unlink in any order, and check every
step against a plain Python model.

The machines live in helpers_robustness/stateful_machines.py and run in a
child interpreter, so that a crash fails the test instead of killing
pytest. ``make test`` runs a bounded number of examples; ``make fuzz`` sets
FERROSHM_FUZZ_EXAMPLES for many more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_robustness.report import FUZZ_ENV, fuzz_examples, last_json_line, report

pytest.importorskip("hypothesis")
pytest.importorskip("numpy")

SCRIPT = Path(__file__).parent / "helpers_robustness" / "stateful_machines.py"

#: Examples per machine in ``make test`` (kept so that this file takes well
#: under a minute on a loaded two-core machine).
DEFAULT_EXAMPLES = {"shm": 50, "list": 50}


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("machine", ["shm", "list"])
def test_state_machine(machine, request):
    examples = fuzz_examples(DEFAULT_EXAMPLES[machine])
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), machine],
        capture_output=True,
        text=True,
        timeout=3000,
        env={**os.environ, FUZZ_ENV: str(examples)},
    )
    assert proc.returncode == 0, (
        f"state machine {machine!r} failed (exit {proc.returncode})\n"
        f"--- stdout\n{proc.stdout[-20000:]}\n--- stderr\n{proc.stderr[-20000:]}"
    )
    figures = last_json_line(proc.stdout)
    # Every example ran, and each one stepped through rules.
    assert figures["examples"] >= examples
    assert figures["steps"] >= examples
    assert figures["leftovers"] == []
    # The resource tracker saw a consistent story: nothing left registered
    # at exit, no UNREGISTER of a name it did not know.
    assert "leaked shared_memory" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    report(request, {k: v for k, v in figures.items() if k != "leftovers"})
