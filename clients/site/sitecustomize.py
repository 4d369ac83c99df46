"""Loaded by every interpreter of a real-client run (clients/run.py).

clients/run.py puts this directory on PYTHONPATH, so every Python process a
library's tests start, spawn and forkserver children and ``python -c``
subprocesses included, runs this first:

* in the ferroshm run (FERROSHM_CLIENTS_MODE=ferroshm) it calls
  ``ferroshm.patch_stdlib()`` before anything imports
  ``multiprocessing.shared_memory``, and checks that it took;
* in both runs it appends one line (pid, mode, what ``SharedMemory`` is) to
  FERROSHM_CLIENTS_PROCESSES, so the report says how many interpreters each
  run had and that every one of the ferroshm run's was patched.

In the stdlib run it imports nothing but ``os``.
"""

import os

_mode = os.environ.get("FERROSHM_CLIENTS_MODE")
_implementation = "-"
if _mode == "ferroshm":
    import sys

    import ferroshm

    ferroshm.patch_stdlib()
    import multiprocessing.shared_memory

    _implementation = multiprocessing.shared_memory.SharedMemory.__module__
    if sys.modules["multiprocessing.shared_memory"] is not ferroshm.shared_memory:
        _implementation = "unpatched"

_log = os.environ.get("FERROSHM_CLIENTS_PROCESSES")
if _mode and _log:
    _fd = os.open(_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(_fd, f"{os.getpid()} {_mode} {_implementation}\n".encode())
    finally:
        os.close(_fd)
