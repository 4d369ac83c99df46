"""ferroshm's side of the standard library's resource tracker.

Every process tree shares one tracker process
(:mod:`multiprocessing.resource_tracker`), which unlinks the segments still
registered with it once every process holding its pipe has exited.
``SharedMemory`` registers what it creates and attaches, and unregisters
what it unlinks, natively (``ferroshm._native``), in the running standard
library's message formats; the server of a
:class:`~ferroshm.SharedMemoryManager` registers what it owns through
:func:`send` and :func:`send_all` here.
"""

from __future__ import annotations

import os

from . import _native

#: send(cmd, name, identity=None): "REGISTER" or "UNREGISTER" for the segment
#: ``name`` (OS name, leading '/'), straight down the tracker's pipe when
#: possible; a REGISTER of an object (``identity``: device, inode) this
#: process registered already sends nothing.
send = _native.tracker_send

#: send_all(cmd, names): several names in one pipe write when they fit.
send_all = _native.tracker_send_all

#: check_trackable(name): ValueError, naming the problem, if the running
#: standard library's tracker cannot carry ``name``.
check_trackable = _native.check_trackable


def trackable(name: str) -> bool:
    """Whether the running standard library's resource tracker can carry
    ``name`` (see :func:`check_trackable`)."""
    try:
        check_trackable(name)
    except ValueError:
        return False
    return True


# After the standard library's own fork hook (registered when
# multiprocessing.resource_tracker was imported, before this module): a raw
# os.fork() child on Python 3.14+ drops the inherited tracker pipe
# (gh-146313), and its registrations stay its parent's tracker's.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_native.tracker_after_fork_in_child)
