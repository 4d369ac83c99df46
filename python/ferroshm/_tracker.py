"""ferroshm's side of the standard library's resource tracker.

Every process tree shares one tracker process
(:mod:`multiprocessing.resource_tracker`), which unlinks the segments still
registered with it once every process holding its pipe has exited. This
module is the only place that talks to it: :mod:`ferroshm.shared_memory`
registers what it creates and unregisters what it unlinks, and the server of
a :class:`~ferroshm.SharedMemoryManager` registers what it owns.

The messages are the standard library's (``CMD:name:shared_memory\\n``), so
segments of ferroshm and of the standard library share one tracker without
surprises; only the way they are sent is faster (see :func:`send`).
"""

from __future__ import annotations

import os
import select
from multiprocessing import resource_tracker

_stdlib_register = resource_tracker.register
_stdlib_unregister = resource_tracker.unregister


# Segments this process has registered with the tracker, by name, with the
# (device, inode) of the object registered. The tracker keeps a set, so a
# second REGISTER of a name it holds changes nothing: attaching again to the
# same object skips the message (a pipe write that wakes the tracker, the
# bulk of an attach's cost). A segment re-created under the same name has
# another inode and is registered again. Inherited across fork, like the
# tracker itself.
registered = {}


def direct_tracker():
    """The standard library's resource tracker object and its lock, when its
    pipe may be written to directly: the tracker has the shape this code
    knows, and neither ``register`` nor ``unregister`` was replaced (by a
    test or a user, who then expects every message to go through them).
    None otherwise."""
    if resource_tracker.register is not _stdlib_register or resource_tracker.unregister is not _stdlib_unregister:
        return None
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    lock = getattr(tracker, "_lock", None)
    return None if lock is None else (tracker, lock)


def send(cmd, name, identity=None):
    """Send ``cmd`` ("REGISTER" or "UNREGISTER") for segment ``name`` (its OS
    name, with the leading '/') to the standard library's resource tracker,
    the one the whole process tree shares.

    When the tracker is running, the message goes straight down its pipe:
    one write instead of the standard library's probe-then-write, and none
    for a REGISTER of an object this process has registered already
    (``identity``, see :data:`registered`). Whenever that is not possible
    (tracker not started yet or gone, a tracker of another shape,
    register/unregister replaced by a test or a user), the standard
    library's own function does it, relaunching the tracker if needed.
    """
    if cmd == "REGISTER" and identity is not None and registered.get(name) == identity:
        return
    if _write_direct(f"{cmd}:{name}:shared_memory\n".encode("ascii")):
        _remember(cmd, name, identity)
        return
    registered.pop(name, None)
    if cmd == "REGISTER":
        resource_tracker.register(name, "shared_memory")
    else:
        resource_tracker.unregister(name, "shared_memory")


def send_all(cmd, names):
    """:func:`send` for several names (no identities): in a single write to
    the tracker's pipe when it can be written to directly, which wakes the
    tracker once instead of once a name. A write of at most ``PIPE_BUF``
    bytes reaches a pipe whole; longer batches go name by name."""
    msg = "".join(f"{cmd}:{name}:shared_memory\n" for name in names).encode("ascii")
    if len(msg) <= getattr(select, "PIPE_BUF", 512) and _write_direct(msg):
        for name in names:
            _remember(cmd, name, None)
        return
    for name in names:
        send(cmd, name)


def _write_direct(msg):
    """Write ``msg`` straight down the running tracker's pipe; whether it
    went (False: no direct tracker, or it is gone, see :func:`send`)."""
    direct = direct_tracker()
    if direct is None or direct[0]._fd is None:
        return False
    tracker, lock = direct
    with lock:
        fd = tracker._fd
        if fd is None:
            return False
        try:
            return os.write(fd, msg) == len(msg)
        except OSError:
            return False  # the tracker is gone: let the stdlib relaunch it


def _remember(cmd, name, identity):
    if cmd == "REGISTER":
        registered[name] = identity
    else:
        registered.pop(name, None)


def announcement(name, first):
    """What ``_native.Segment.open`` needs to register ``name`` with the
    resource tracker the moment it creates the segment, before sizing it
    (for a large segment, the slow part): ``(fd, register, unregister,
    first)``, with ``fd`` a duplicate of the tracker's pipe that
    ``Segment.open`` closes, and ``first`` whether to announce before the
    segment is even created (see ``shared_memory._open_segment``).

    Registering only after the segment is complete, as the standard library
    does, leaves a window in which a SIGKILL leaks the segment for good;
    with reserved pages that window grows with the size. None when the
    tracker cannot be written to directly (see :func:`send`); the caller
    then registers afterwards."""
    direct = direct_tracker()
    if direct is None:
        return None
    tracker, lock = direct
    if getattr(tracker, "_fd", None) is None:
        try:
            tracker.ensure_running()
        except Exception:
            return None
    with lock:
        fd = getattr(tracker, "_fd", None)
        if fd is None:
            return None
        # A duplicate: the tracker's own descriptor may be closed and its
        # number reused (tracker relaunched) while the segment is created.
        fd = os.dup(fd)
    return (
        fd,
        f"REGISTER:{name}:shared_memory\n".encode("ascii"),
        f"UNREGISTER:{name}:shared_memory\n".encode("ascii"),
        first,
    )


def trackable(name):
    """Whether the tracker's line protocol ("CMD:name:rtype\\n", ASCII) can
    carry ``name``: one it cannot would be registered wrongly or not at all,
    and the segment would leak (gh-98896, gh-103043)."""
    return name.isascii() and ":" not in name and "\n" not in name


def check_trackable(name):
    """Raise ValueError, naming the problem, if ``name`` is not
    :func:`trackable`."""
    if not trackable(name):
        raise ValueError(
            f"shared memory name {name!r} cannot be tracked: the resource "
            "tracker carries only ASCII names without ':' or newlines "
            "(use such names with track=False)"
        )
