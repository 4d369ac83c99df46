"""The standard library's private SharedMemory attributes that public code
uses (``_fd``, ``_mmap``, ``_buf``, ``_name``, ``_size``, ``_flags``,
``_mode``, ``_track``, and the "disarm" assignments before ``close()``),
checked against the standard library itself where the behaviour is meant
to be the same, and ferroshm's own guarantees where it is meant to differ
(no BufferError from ``close()``, no descriptor held unless asked for)."""

from __future__ import annotations

import mmap
import os
import pickle
import stat
import sys
from multiprocessing import shared_memory as stdlib_shm

import numpy as np
import pytest

import ferroshm
from conftest import SHM_DIR

IMPLS = {"stdlib": stdlib_shm.SharedMemory, "ferroshm": ferroshm.SharedMemory}


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    return IMPLS[request.param]


def open_fds() -> set[int]:
    """The open descriptors (without the one the listing itself used)."""
    listed = {int(fd) for fd in os.listdir("/proc/self/fd")}
    return {fd for fd in listed if _is_open(fd)}


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def test_fd_is_a_descriptor_of_the_segment(impl, shm_name):
    shm = impl(shm_name, create=True, size=4096)
    try:
        assert isinstance(shm._fd, int) and shm._fd >= 0
        st = os.fstat(shm._fd)
        assert identity(st) == identity(os.stat(SHM_DIR / shm_name))
        assert stat.S_ISREG(st.st_mode) and st.st_size == 4096
        assert not os.get_inheritable(shm._fd)  # close-on-exec, as shm_open gives it
        # What real code does with it: reserve pages, grow the object.
        os.posix_fallocate(shm._fd, 0, shm.size)
        os.ftruncate(shm._fd, 8192)
        assert os.stat(SHM_DIR / shm_name).st_size == 8192
        assert shm._fd == shm._fd  # the same descriptor every time
    finally:
        shm.close()
        shm.unlink()


def test_fd_of_an_attach_and_close_closes_it(impl, shm_name):
    with ferroshm.SharedMemory(shm_name, create=True, size=100, track=False) as owner:
        other = impl(shm_name, track=False) if sys.version_info >= (3, 13) or impl is ferroshm.SharedMemory else impl(shm_name)
        fd = other._fd
        assert identity(os.fstat(fd)) == identity(os.stat(SHM_DIR / shm_name))
        other.close()
        assert other._fd == -1
        with pytest.raises(OSError):
            os.fstat(fd)
        owner.unlink()


def test_caller_closing_fd_first_is_respected(impl, shm_name):
    """``os.close(shm._fd); shm._fd = -1``: dropping the spare descriptor."""
    shm = impl(shm_name, create=True, size=100)
    try:
        os.close(shm._fd)
        shm._fd = -1
        shm.buf[0] = 7
        assert shm.buf[0] == 7
    finally:
        shm.close()
        shm.unlink()
    assert shm._fd == -1


def test_close_leaves_a_reused_descriptor_number_alone(shm_name, tmp_path):
    """The caller closed ``_fd`` without saying so and the number went to
    another file: ferroshm's close() closes only a descriptor of the
    segment (the standard library would close the other file)."""
    shm = ferroshm.SharedMemory(shm_name, create=True, size=100)
    try:
        number = shm._fd
        os.close(number)
        with open(tmp_path / "other", "wb") as other:
            if other.fileno() != number:
                os.dup2(other.fileno(), number)
            shm.close()
            os.fstat(number)  # still open
            if other.fileno() != number:
                os.close(number)
    finally:
        shm.unlink()


def test_no_descriptor_is_held_unless_asked_for(shm_name):
    before = open_fds()
    made = [ferroshm.SharedMemory(f"{shm_name}_{i}", create=True, size=4096) for i in range(20)]
    attached = [ferroshm.SharedMemory(s.name) for s in made]
    assert open_fds() == before  # the stdlib holds 2 per segment
    try:
        fd = made[0]._fd
        assert open_fds() == before | {fd}
        view = made[1]._mmap  # an mmap holds a duplicate of _fd, as in the stdlib
        assert len(open_fds() - before) == 3
        del view
    finally:
        for s in attached + made:
            s.close()
        for s in made:
            s.unlink()
    assert open_fds() == before


def test_fd_after_the_name_is_gone_is_minus_one(shm_name):
    shm = ferroshm.SharedMemory(shm_name, create=True, size=100)
    shm.unlink()
    assert shm._fd == -1  # never opened before the unlink: nothing to reopen
    # A segment re-created under the name is not this one.
    with ferroshm.SharedMemory(shm_name, create=True, size=100) as other:
        assert shm._fd == -1
        other.unlink()
    shm.close()


def test_fd_never_opens_another_object_under_the_name(shm_name):
    """The name unlinked through another handle and re-created: ``_fd`` of
    the first creator is not a descriptor of the new object (its own object
    is found from the mapping)."""
    first = ferroshm.SharedMemory(shm_name, create=True, size=100)
    ferroshm.SharedMemory(shm_name, track=False).unlink()
    with ferroshm.SharedMemory(shm_name, create=True, size=200) as second:
        assert first._fd == -1
        assert first._identity != second._identity
        assert os.fstat(second._fd).st_size == 200
        second.unlink()
    first.close()  # (its registration, of the same name, went with second's unlink)


def test_mmap_is_an_mmap_of_the_segment(impl, shm_name):
    shm = impl(shm_name, create=True, size=mmap.PAGESIZE * 2)
    try:
        m = shm._mmap
        assert isinstance(m, mmap.mmap)
        assert m.size() == len(m) == shm.size
        m[:5] = b"hello"
        assert bytes(shm.buf[:5]) == b"hello"
        shm.buf[5:10] = b"world"
        assert m[5:10] == b"world"
        # As a file object (torch.save(tensor, shm._mmap), pickle.dump).
        m.seek(0)
        pickle.dump({"a": [1, 2, 3]}, m)
        m.seek(0)
        assert pickle.load(m) == {"a": [1, 2, 3]}
        # madvise(MADV_REMOVE) frees the pages: both mappings read zeros.
        if hasattr(mmap, "MADV_REMOVE"):
            m.madvise(mmap.MADV_REMOVE, 0, shm.size)
            assert bytes(shm.buf[:16]) == bytes(16)
        del m
    finally:
        shm.close()
        shm.unlink()
    assert shm._mmap is None


def test_close_with_the_mmap_exported_is_quiet(shm_name):
    """The standard library raises BufferError here; ferroshm leaves the
    mmap to close itself when its last user goes."""
    shm = ferroshm.SharedMemory(shm_name, create=True, size=4096)
    view = memoryview(shm._mmap)
    arr = np.frombuffer(shm.buf, dtype=np.uint8)
    view[0] = 9
    shm.close()
    assert view[0] == 9 and arr[0] == 9
    view[1] = 10
    assert arr[1] == 10
    view.release()
    del arr
    ferroshm.SharedMemory(shm_name).unlink()


def test_disarm_assignments_before_close(impl, shm_name):
    """``shm._buf = None; shm._mmap = None`` before ``close()`` (code that
    keeps arrays on a segment alive past close with the stdlib)."""
    shm = impl(shm_name, create=True, size=80)
    arr = np.ndarray((10,), dtype=np.int64, buffer=shm.buf)
    arr[:] = np.arange(10)
    shm._buf = None
    shm._mmap = None
    shm.close()
    assert shm.buf is None and shm._mmap is None
    assert arr.sum() == 45  # the memory is still mapped
    del arr
    impl(shm_name).unlink() if impl is ferroshm.SharedMemory else _stdlib_unlink(shm_name)


def _stdlib_unlink(name):
    other = stdlib_shm.SharedMemory(name)
    other.close()
    other.unlink()


def test_plain_attributes(impl, shm_name):
    shm = impl(shm_name, create=True, size=10)
    try:
        assert shm._name == "/" + shm_name
        assert shm._size == 10
        assert shm._flags == os.O_CREAT | os.O_EXCL | os.O_RDWR
        assert shm._mode == 0o600
        if impl is ferroshm.SharedMemory or sys.version_info >= (3, 13):
            assert shm._track is True
        assert shm._prepend_leading_slash is True
        assert isinstance(shm._buf, memoryview) and shm._buf is shm.buf
        other = impl(shm_name)
        assert other._flags == os.O_RDWR
        other.close()
    finally:
        shm.close()
        shm.unlink()


def test_subclass_class_attributes_open_or_create(impl, shm_name):
    """CPython's own test: ``_flags = O_CREAT | O_RDWR`` in a subclass
    attaches when the name exists (and ``_mode`` is read the same way)."""

    class OpenOrCreate(impl):
        _flags = os.O_CREAT | os.O_RDWR
        _mode = 0o640

    shm = impl(shm_name, create=True, size=64)
    try:
        same = OpenOrCreate(shm_name)
        assert same.size == 64 and same._flags == os.O_CREAT | os.O_RDWR
        same.close()
    finally:
        shm.close()
        shm.unlink()


def test_instances_take_attributes_and_weak_references(impl, shm_name):
    import weakref

    shm = impl(shm_name, create=True, size=10)
    shm.label = "frames"
    ref = weakref.ref(shm)
    assert ref() is shm and shm.label == "frames"
    shm.close()
    shm.unlink()
