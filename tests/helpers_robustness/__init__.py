"""Helper scripts and utilities for the robustness tests (issue 5).

The scripts here run in a child interpreter, so that a crash (SIGSEGV,
SIGBUS, abort) fails the test that started them instead of killing pytest.
"""

import sys


def gil_enabled() -> bool:
    """Whether the GIL is on now (always, before 3.13)."""
    return getattr(sys, "_is_gil_enabled", lambda: True)()
