"""Helper scripts and utilities for the robustness tests (issue 5).

The scripts here run in a child interpreter, so that a crash (SIGSEGV,
SIGBUS, abort) fails the test that started them instead of killing pytest.
"""
