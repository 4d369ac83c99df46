"""Drop-in replacement for :mod:`multiprocessing.shared_memory`.

This module has the standard library module's public names and the private
hooks CPython's own tests use (``_make_filename``, ``_SHM_NAME_PREFIX``,
``_USE_POSIX``, ``SharedMemory._name``/``_flags``/``_mode``), so it can stand
in for ``multiprocessing.shared_memory`` (see :func:`ferroshm.patch_stdlib`).
Segments are created, mapped, unmapped and unlinked by the Rust core in
``ferroshm._native``; this file holds only argument checking in the standard
library's order and naming hooks; the resource-tracker calls are
:mod:`ferroshm._tracker`'s.
"""

from __future__ import annotations

import operator
import os

from . import _native
from ._tracker import announcement as _announcement
from ._tracker import check_trackable as _check_trackable
from ._tracker import registered as _registered
from ._tracker import send as _tracker_send

__all__ = ["SharedMemory", "ShareableList"]

# As in CPython: POSIX segments are shm_open names, with a resource tracker;
# Windows ones are named file mappings (wnsm_ names, no leading slash), with
# no tracker (a segment goes with its last handle) and a no-op unlink().
_USE_POSIX = os.name != "nt"
if _USE_POSIX:
    from multiprocessing import resource_tracker
else:  # pragma: no cover - built for Windows, not run there (README "Platforms")
    resource_tracker = None

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
    # function, so SharedMemory looks it up here at call time.
    return _native.random_name(_SHM_NAME_PREFIX, _SHM_SAFE_NAME_LENGTH)


def _open_segment(name, flags, mode, size, track, random_name=False):
    # A fresh random name is announced before it is even created (if it
    # turns out to be taken, the announcement is taken back); a name the
    # caller chose, or one this process has registered already, may be
    # someone's, so it is announced only once this call has created it.
    first = random_name and name not in _registered
    announce = _announcement(name, first) if track and flags & os.O_CREAT else None
    # Segment.open closes the announcement's descriptor itself.
    return _native.Segment.open(name, flags, mode, size, announce=announce)


class SharedMemory:
    """Creates a new shared memory block or attaches to an existing one.

    Same arguments, attributes and errors as
    :class:`multiprocessing.shared_memory.SharedMemory` (Python 3.13), with
    these differences:

    * ``close()`` never raises :class:`BufferError` and never unmaps memory
      that a memoryview or NumPy array still uses: the last reference to the
      mapping unmaps it. After ``close()``, ``buf`` is ``None``.
    * Creating reserves the pages (Linux), so a full ``/dev/shm`` raises
      ``OSError(ENOSPC)`` here instead of killing the process with SIGBUS on
      first write.
    * Any failure after the segment exists removes it only if this call
      created it; an attach never unlinks someone else's segment.
    * Names the resource tracker cannot carry are refused with
      :class:`ValueError` before anything is created (when ``track`` is true).
    * It is a context manager: ``with SharedMemory(...) as shm:`` closes
      (does not unlink) on exit.
    * There is no ``__del__``: an instance that is garbage-collected is
      closed by its native handle, without running Python code (so without
      ``close()`` of a subclass), and a Ctrl-C that arrives meanwhile is
      never lost in a finalizer.
    """

    # Class-level defaults, also the fallbacks after a failed __init__.
    # Subclasses override _flags and _mode (CPython's tests do).
    _name = None
    _fd = -1
    _mmap = None
    _buf = None
    _segment = None
    _size = 0
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True if _USE_POSIX else False
    _track = True

    def __init__(self, name=None, create=False, size=0, *, track=True):
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            self._flags = _O_CREX | os.O_RDWR
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
        if name is None and not self._flags & os.O_EXCL:
            raise ValueError("'name' can only be None if create=True")
        self._track = track
        # Windows has no resource tracker: `track` is kept but ignored there.
        track = track and _USE_POSIX

        # Checked before anything exists (the standard library only finds
        # out in ftruncate, after creating the segment, and leaks it).
        new_size = operator.index(size) if create else None
        flags = self._flags
        mode = self._mode

        if name is None:
            while True:
                name = _make_filename()
                if track:
                    _check_trackable(name)
                try:
                    segment = _open_segment(name, flags, mode, new_size, track, random_name=True)
                except FileExistsError:
                    continue
                break
        else:
            if self._prepend_leading_slash:
                name = "/" + name
            if track:
                _check_trackable(name)
            segment = _open_segment(name, flags, mode, new_size, track)
        self._name = name

        # Whatever stops us from here on (a failed registration, or a
        # KeyboardInterrupt from a signal handler) removes what this call
        # created: the caller never gets a handle to it, so no one else
        # could. (Segment.open runs pending signal handlers itself before
        # it returns, for signals that arrived during the create.)
        registered = segment.announced
        try:
            if registered:
                _registered[name] = segment.identity
            elif track:
                _tracker_send("REGISTER", name, segment.identity)
                registered = True
            self._segment = segment
            self._size = segment.size
            self._buf = segment.memoryview()
        except BaseException:
            self._buf = None
            segment.close()
            if segment.created:
                try:
                    _native.unlink(name)
                except OSError:
                    pass
                else:
                    if registered:
                        _tracker_send("UNREGISTER", name)
            raise

    # No __del__: the native handle (``_segment``) unmaps the segment when
    # the last reference to its mapping goes, as close() would. A Python
    # finalizer runs pending signal handlers at its first instruction, and
    # the KeyboardInterrupt of a SIGINT that arrived while a ShareableList
    # was being freed would be raised there, where Python discards it
    # ("Exception ignored in ... __del__"): the program would carry on as if
    # Ctrl-C had never been pressed.

    def __reduce__(self):
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self):
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def buf(self):
        """A memoryview of contents of the shared memory block."""
        return self._buf

    @property
    def name(self):
        """Unique name that identifies the shared memory block."""
        reported_name = self._name
        if _USE_POSIX and self._prepend_leading_slash:
            if self._name.startswith("/"):
                reported_name = self._name[1:]
        return reported_name

    @property
    def size(self):
        """Size in bytes."""
        return self._size

    def close(self):
        """Closes access to the shared memory from this instance but does
        not destroy the shared memory block.

        Unlike the standard library, this never raises BufferError: memory
        that a memoryview or array still uses stays mapped until the last of
        them is gone."""
        self._buf = None
        segment = self._segment
        if segment is not None:
            self._segment = None
            segment.close()

    def unlink(self):
        """Requests that the underlying shared memory block be destroyed.

        Unlink should be called once (and only once) across all handles
        which have access to the shared memory block, even if these
        handles belong to different processes. Closing and unlinking may
        happen in any order, but trying to access data inside a shared
        memory block after unlinking may result in memory errors,
        depending on platform.

        This method has no effect on Windows, where the only way to
        delete a shared memory block is to close all handles."""
        if _USE_POSIX and self._name:
            _native.unlink(self._name)
            if self._track:
                _tracker_send("UNREGISTER", self._name)


def _in_placeholder(name, size):
    """A new untracked SharedMemory of ``size`` bytes in the placeholder
    ``name`` (OS name): an empty object that a SharedMemoryManager's server
    created and tracks, sized and mapped here. FileExistsError if it is not
    empty any more, FileNotFoundError if it is gone."""
    if not size >= 0:
        raise ValueError("'size' must be a positive integer")
    if size == 0:
        raise ValueError("'size' must be a positive number different from zero")
    segment = _native.Segment.open(name, os.O_RDWR, size=operator.index(size), placeholder=True)
    shm = SharedMemory.__new__(SharedMemory)
    shm._name, shm._track, shm._segment, shm._size = name, False, segment, segment.size
    shm._buf = segment.memoryview()
    return shm


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
