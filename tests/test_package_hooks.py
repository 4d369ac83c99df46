"""``import ferroshm as shared_memory`` (what the README advertises) gives a
module whose private hooks behave as the standard library module's do for
code that reads and patches them (CPython's own tests patch
``multiprocessing.shared_memory._make_filename``): the package's hooks are
ferroshm.shared_memory's, and patching either name is seen by SharedMemory.

tests/test_cpython_conformance.py runs CPython's suite with the package as
``multiprocessing.shared_memory`` too.
"""

from __future__ import annotations

import itertools
from unittest import mock

import pytest

import ferroshm
from ferroshm import shared_memory as fsm

HOOKS = ["_make_filename", "_SHM_NAME_PREFIX", "_SHM_SAFE_NAME_LENGTH", "_USE_POSIX", "_O_CREX", "_encoding"]


@pytest.mark.parametrize("hook", HOOKS)
def test_hooks_are_the_modules(hook):
    assert getattr(ferroshm, hook) is getattr(fsm, hook)
    assert hook in dir(ferroshm)


def names_from(shm_name):
    """A _make_filename replacement giving ``/<shm_name>_0``, ``_1``, ..."""
    counter = itertools.count()
    return lambda: f"/{shm_name}_{next(counter)}"


def test_mock_patch_on_the_package_names_new_segments(shm_name):
    original = fsm._make_filename
    with mock.patch("ferroshm._make_filename", names_from(shm_name)) as patched:
        assert fsm._make_filename is patched and ferroshm._make_filename is patched
        with ferroshm.SharedMemory(create=True, size=8) as shm:
            shm.unlink()
    assert shm._name == f"/{shm_name}_0"
    assert ferroshm._make_filename is original and fsm._make_filename is original


def test_mock_patch_object_collision_retry_as_in_cpythons_test(shm_name):
    # CPython's test_shared_memory_recreate: the patched names collide with
    # an existing segment, so creation retries with the next name.
    names = iter([f"/{shm_name}_a", f"/{shm_name}_a", f"/{shm_name}_b"])
    with mock.patch.object(ferroshm, "_make_filename", side_effect=lambda: next(names)) as patched:
        with ferroshm.SharedMemory(create=True, size=8) as first, ferroshm.SharedMemory(create=True, size=8) as second:
            first.unlink()
            second.unlink()
        assert patched.call_count == 3
    assert (first._name, second._name) == (f"/{shm_name}_a", f"/{shm_name}_b")
    assert ferroshm._make_filename is fsm._make_filename
    assert "_make_filename" not in vars(ferroshm)  # still read through, not copied


def test_monkeypatch_and_assignment_on_the_package(monkeypatch, shm_name):
    original = fsm._make_filename
    monkeypatch.setattr(ferroshm, "_make_filename", names_from(shm_name))
    with ferroshm.SharedMemory(create=True, size=8) as shm:
        shm.unlink()
    assert shm._name == f"/{shm_name}_0"
    monkeypatch.undo()
    assert fsm._make_filename is original

    ferroshm._make_filename = names_from(shm_name + "x")
    try:
        assert fsm._make_filename is ferroshm._make_filename
    finally:
        ferroshm._make_filename = original
    assert fsm._make_filename is original


def test_patching_the_module_shows_on_the_package(monkeypatch, shm_name):
    monkeypatch.setattr(fsm, "_SHM_NAME_PREFIX", f"/{shm_name}_")
    assert ferroshm._SHM_NAME_PREFIX == f"/{shm_name}_"
    with ferroshm.SharedMemory(create=True, size=8) as shm:  # the prefix is read at call time
        shm.unlink()
    assert shm.name.startswith(f"{shm_name}_")


def test_deleting_a_hook_deletes_it_from_the_module():
    original = fsm._encoding
    del ferroshm._encoding
    try:
        assert not hasattr(fsm, "_encoding") and not hasattr(ferroshm, "_encoding")
    finally:
        ferroshm._encoding = original
    assert fsm._encoding == ferroshm._encoding == "utf8"


def test_other_attributes_stay_the_packages(monkeypatch):
    monkeypatch.setattr(ferroshm, "_note", "mine", raising=False)
    assert ferroshm._note == "mine" and not hasattr(fsm, "_note")
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        ferroshm.no_such_name
