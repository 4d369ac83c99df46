"""Figures for the robustness tests: how many examples, inputs, faults and
operations a test got through, shown in pytest's output without ``-s`` and
recorded as junit properties."""

from __future__ import annotations

import json
import os
import sys

#: Where the figures of a whole run are appended, one JSON object a line,
#: when set (``make fuzz`` sets it; any run may).
REPORT_ENV = "FERROSHM_ROBUSTNESS_REPORT"

#: Scales the number of examples/inputs/seconds of the robustness tests.
#: Unset: the bounded numbers ``make test`` uses.
FUZZ_ENV = "FERROSHM_FUZZ_EXAMPLES"


def fuzz_examples(default: int, scale: int = 1) -> int:
    """How many examples a property test runs: ``default`` in ``make test``,
    ``scale`` times ``$FERROSHM_FUZZ_EXAMPLES`` when that is set (``make
    fuzz``; cheap inputs take a larger scale)."""
    value = os.environ.get(FUZZ_ENV)
    return int(value) * scale if value else default


def fuzz_scale(default: float, long: float) -> float:
    """A duration or count: ``default`` normally, ``long`` under ``make fuzz``."""
    return long if os.environ.get(FUZZ_ENV) else default


def last_json_line(text: str) -> dict:
    """The last line of a helper's stdout that is a JSON object."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    raise AssertionError(f"no JSON summary in the helper's output:\n{text}")


def report(request, figures: dict) -> None:
    """Show ``figures`` for the running test: on the terminal (even under
    output capture), as junit properties, and in $FERROSHM_ROBUSTNESS_REPORT."""
    test = request.node.nodeid
    text = ", ".join(f"{k}={v}" for k, v in figures.items())
    for key, value in figures.items():
        request.node.user_properties.append((key, value))
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            sys.stdout.write(f"\n[robustness] {test}: {text}\n")
            sys.stdout.flush()
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"test": test, **figures}) + "\n")
