"""Installing ferroshm in place of the standard library's shared memory."""

from __future__ import annotations

import sys


def patch_stdlib() -> None:
    """Make the standard library's shared-memory names ferroshm's.

    Afterwards:

    * ``multiprocessing.shared_memory`` (as a module, for code that imports it
      from now on, and as an attribute of ``multiprocessing``) is
      :mod:`ferroshm.shared_memory`;
    * the standard library's own module object, for code that imported it
      before, has ferroshm's ``SharedMemory`` and ``ShareableList``;
    * ``multiprocessing.managers.SharedMemoryManager`` and
      ``multiprocessing.managers.SharedMemoryServer`` are ferroshm's (see
      :mod:`ferroshm.managers`), and the rest of ``multiprocessing.managers``
      uses ferroshm's shared memory.

    Code that already did ``from multiprocessing.shared_memory import
    SharedMemory`` (or ``from multiprocessing.managers import
    SharedMemoryManager``) keeps the object it has: patch first.

    Child processes: a child started with *fork* inherits the patch. One
    started with *spawn* or *forkserver* runs a fresh interpreter, so it must
    patch again, in one of these ways:

    * call ``ferroshm.patch_stdlib()`` at the top level of the main module,
      above the imports that use ``multiprocessing.shared_memory`` (each
      *spawn* child imports that module again, as ``__mp_main__``, and the
      *forkserver* process preloads it before forking children);
    * call it at the top of the child's target function, or pass it as a
      pool's ``initializer``;
    * or call it from a ``sitecustomize`` module on the children's
      ``PYTHONPATH`` (what ferroshm's CPython conformance run does), which
      covers every interpreter, ``python -c`` subprocesses included.

    The server process of a ferroshm :class:`~ferroshm.SharedMemoryManager`
    needs no patch: it is ferroshm code whatever the start method.
    Calling this twice is harmless.
    """
    import multiprocessing

    from . import managers, shared_memory

    original = sys.modules.get("multiprocessing.shared_memory")
    if original is not None and original is not shared_memory:
        # Code holding the standard library's module object sees ours too.
        original.SharedMemory = shared_memory.SharedMemory  # type: ignore[attr-defined]
        original.ShareableList = shared_memory.ShareableList  # type: ignore[attr-defined]
    sys.modules["multiprocessing.shared_memory"] = shared_memory
    multiprocessing.shared_memory = shared_memory  # type: ignore[attr-defined]

    import multiprocessing.managers as stdlib_managers

    stdlib_managers.shared_memory = shared_memory  # type: ignore[attr-defined]
    stdlib_managers.SharedMemoryManager = managers.SharedMemoryManager  # type: ignore[assignment,misc]
    stdlib_managers.SharedMemoryServer = managers.SharedMemoryServer  # type: ignore[assignment,misc]
