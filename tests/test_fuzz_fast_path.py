"""Differential fuzzing of ShareableList's item reads and writes (issue 19's
fast path) through real segments: every outcome, value or ValueError, and
every byte a write leaves, must be what a plain-Python model of the layout's
rules gives for the same bytes, before and after a hostile peer rewrites
offsets, formats and codes under the attached list.

The fuzzer (helpers_robustness/fast_path_fuzz.py) runs in a child
interpreter, so a crash fails the test instead of the runner. ``make fuzz``
runs it longer; the Rust harness in fuzz/ checks the fast path against the
slow path with guard pages around every block.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_robustness.report import FUZZ_ENV, fuzz_examples, last_json_line, report

pytest.importorskip("hypothesis")

TESTS = Path(__file__).parent
SCRIPT = TESTS / "helpers_robustness" / "fast_path_fuzz.py"


@pytest.mark.timeout(3600)
def test_item_access_matches_the_layout_model(request):
    examples = fuzz_examples(300, scale=10)  # per strategy; three strategies
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=3000,
        env={**os.environ, FUZZ_ENV: str(examples), "PYTHONPATH": path},
    )
    assert proc.returncode == 0, (
        f"fast-path fuzzer failed (exit {proc.returncode})\n"
        f"--- stdout\n{proc.stdout[-20000:]}\n--- stderr\n{proc.stderr[-20000:]}"
    )
    figures = last_json_line(proc.stdout)
    assert figures["examples"] >= 3 * examples
    # Both outcomes of reads and of writes were exercised, on lists that
    # attached, and under a hostile peer's rewrites.
    assert figures["attached"] > examples
    assert figures["read_values"] > 0 and figures["read_errors"] > 0
    assert figures["writes"] > figures["write_errors"] > 0
    assert figures["hostile_rewrites"] > 0
    assert "leaked shared_memory" not in proc.stderr, proc.stderr
    report(request, figures)
