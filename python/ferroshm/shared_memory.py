"""Drop-in replacement for :mod:`multiprocessing.shared_memory`.

This module has the standard library module's public names and the private
hooks CPython's own tests use (``_make_filename``, ``_SHM_NAME_PREFIX``,
``_USE_POSIX``, ``SharedMemory._name``/``_flags``/``_mode``), so it can stand
in for ``multiprocessing.shared_memory`` (see :func:`ferroshm.patch_stdlib`).
``SharedMemory`` and ``ShareableList`` are native classes of
``ferroshm._native``: segments are created, mapped, unmapped and unlinked,
and registered with the resource tracker, by the Rust core. This file holds
the module's naming hooks, which ``SharedMemory`` reads at call time.

``FERROSHM_RESERVE=0`` in the environment (read when this module is
imported) makes new segments sparse by default, as the standard library's
are (see ``SharedMemory``'s ``reserve``).
"""

from __future__ import annotations

import os

from . import _native

__all__ = ["SharedMemory", "ShareableList"]

# As in CPython: POSIX segments are shm_open names, with a resource tracker;
# Windows ones are named file mappings (wnsm_ names, no leading slash), with
# no tracker (a segment goes with its last handle) and a no-op unlink().
_USE_POSIX = os.name != "nt"
if _USE_POSIX:
    from multiprocessing import resource_tracker  # noqa: F401  (as the stdlib module has it)

    from . import _tracker  # noqa: F401  (its fork hook)

_O_CREX = os.O_CREAT | os.O_EXCL

# FreeBSD (and perhaps other BSDs) limit names to 14 characters.
_SHM_SAFE_NAME_LENGTH = 14

# Shared memory block name prefix
if _USE_POSIX:
    _SHM_NAME_PREFIX = "/psm_"
else:  # pragma: no cover
    _SHM_NAME_PREFIX = "wnsm_"

_encoding = "utf8"


def _make_filename():
    """Create a random filename for the shared memory object."""
    # The name must begin with a slash on POSIX; CPython's tests patch this
    # function, so SharedMemory looks it up here at call time (and, while it
    # is this one, makes the name itself, the same way).
    return _native.random_name(_SHM_NAME_PREFIX, _SHM_SAFE_NAME_LENGTH)


def _reserve_default(value):
    """Whether ``FERROSHM_RESERVE`` (unset, or ``1``/``0`` and their
    spellings) asks for reserved pages."""
    text = (value or "1").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"FERROSHM_RESERVE={value!r}: expected 1 (reserve pages, the default) or 0 (sparse)")


_native._set_hooks(globals(), _make_filename, _reserve_default(os.environ.get("FERROSHM_RESERVE")))

SharedMemory = _native.SharedMemory


def _in_placeholder(name, size):
    """A new untracked SharedMemory of ``size`` bytes in the placeholder
    ``name`` (OS name): an empty object that a SharedMemoryManager's server
    created and tracks, sized and mapped here. FileExistsError if it is not
    empty any more, FileNotFoundError if it is gone."""
    return SharedMemory._in_placeholder(name, size)


class ItemTypeError(KeyError, TypeError):
    """A value of a type ShareableList cannot store.

    The standard library raises ``KeyError(type)`` here; this error is a
    KeyError, so code written for it still works, and a TypeError, which is
    what it is."""

    def __init__(self, item_type):
        super().__init__(item_type)
        self.item_type = item_type

    def __str__(self):
        return (
            f"ShareableList cannot store a {self.item_type.__qualname__!r}: items must be "
            "int, float, bool, None, str or bytes (or subclasses of these)"
        )


ShareableList = _native.ShareableList
