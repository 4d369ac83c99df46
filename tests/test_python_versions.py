"""ferroshm behaves as the Python 3.13 standard library (plus its fixes) on
every supported interpreter, 3.9 to 3.13; it does not follow the running
interpreter's standard library where that differs.

Each test pins one behaviour that changed in the standard library between
3.9 and 3.13: ferroshm's side is asserted on every version, the standard
library's side as it is on the running version, so the suite says which
versions differ and how. (The argument-error wording of ShareableList,
which Python 3.10 changed, is in test_shareable_list.py's
test_unexpected_arguments; CPython's own tests of each version run in
test_cpython_conformance.py.)
"""

from __future__ import annotations

import sys
from multiprocessing import shared_memory as std

import pytest

import ferroshm

from conftest import segments

#: First releases whose _posixshmem refuses an embedded NUL (gh-115886);
#: earlier ones cut the name at the NUL.
NUL_REFUSED_SINCE = {(3, 11): (3, 11, 9), (3, 12): (3, 12, 3)}


def stdlib_refuses_embedded_nul() -> bool:
    minor = sys.version_info[:2]
    if minor in NUL_REFUSED_SINCE:
        return sys.version_info[:3] >= NUL_REFUSED_SINCE[minor]
    return minor >= (3, 13)


def test_track_keyword_on_every_version(shm_name):
    # gh-82300: `track` is new in 3.13; ferroshm has it on every version.
    with ferroshm.SharedMemory(shm_name, create=True, size=8, track=False) as shm:
        try:
            with ferroshm.SharedMemory(shm_name, track=False) as other:
                assert other.size == 8
            if sys.version_info >= (3, 13):
                theirs = std.SharedMemory(shm_name, track=False)  # no `with` in the stdlib
                assert theirs.size == 8
                theirs.close()
            else:
                with pytest.raises(TypeError, match="unexpected keyword argument 'track'"):
                    std.SharedMemory(shm_name, track=False)
        finally:
            shm.unlink()


def test_embedded_nul_refused_on_every_version(shm_name):
    # gh-115886: 3.11.9, 3.12.3 and 3.13 refuse a name with a NUL; earlier
    # releases cut it there, so "name\0a" attached to "name". ferroshm refuses
    # it on every version, before any system call.
    before = segments()
    with ferroshm.SharedMemory(shm_name, create=True, size=8) as shm:
        try:
            with pytest.raises(ValueError, match="embedded null character"):
                ferroshm.SharedMemory(shm_name + "\0a")
            if stdlib_refuses_embedded_nul():
                with pytest.raises(ValueError, match="embedded null character"):
                    std.SharedMemory(shm_name + "\0a")
            else:
                theirs = std.SharedMemory(shm_name + "\0a")  # the NUL cut the name
                assert theirs.size == 8 and theirs.name == shm_name + "\0a"
                theirs.close()
        finally:
            shm.unlink()
    assert segments() == before


def test_index_message_is_313s_on_every_version():
    # 3.14 words it "ShareableList.index(x): x not in list" (gh-121288);
    # ferroshm keeps the 3.9-3.13 message everywhere.
    sl = ferroshm.ShareableList([1])
    try:
        with pytest.raises(ValueError) as e:
            sl.index(2)
        assert str(e.value) == "2 not in this container"
    finally:
        sl.close()
        sl.unlink()
