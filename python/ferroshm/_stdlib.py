"""Installing ferroshm in place of the standard library's shared memory."""

from __future__ import annotations

import sys


def patch_stdlib() -> None:
    """Make the standard library's shared-memory names ferroshm's.

    Afterwards ``multiprocessing.shared_memory`` (as a module, for code that
    imports it from now on, and as an attribute of ``multiprocessing``) is
    :mod:`ferroshm.shared_memory`. Code that already did
    ``from multiprocessing.shared_memory import SharedMemory`` keeps the
    object it has. Child processes started with *spawn* or *forkserver* run a
    fresh interpreter: call this at the top of the module that starts them
    (it runs again in each child when that module is imported), or from a
    ``sitecustomize`` module. Calling it twice is harmless.
    """
    import multiprocessing

    from . import shared_memory

    sys.modules["multiprocessing.shared_memory"] = shared_memory
    multiprocessing.shared_memory = shared_memory
