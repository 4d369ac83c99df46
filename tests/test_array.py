"""ferroshm.share / empty / zeros / attach: NumPy arrays in shared memory by
name. Behaviour in one process and across processes; lifetime; pickling by
name; results of arithmetic; the manager."""

from __future__ import annotations

import copy
import pickle
import textwrap
from multiprocessing import resource_tracker

import numpy as np
import pytest

import ferroshm
from ferroshm import SharedMemory
from ferroshm.array import SharedArray

from conftest import kill_creator_and_check_cleanup, run_python, segments


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def same_dtype(a: np.dtype, b: np.dtype) -> bool:
    """Equal as NumPy compares them, and described the same, and both
    aligned structs or neither."""
    return a == b and a.descr == b.descr and a.isalignedstruct == b.isalignedstruct and a.str == b.str


DTYPES = [
    np.float64,
    np.float32,
    np.float16,
    np.longdouble,
    np.int8,
    np.uint16,
    ">i4",
    ">f8",
    np.int64,
    np.uint64,
    np.complex64,
    np.clongdouble,
    np.bool_,
    "M8",
    "M8[ns]",
    "M8[D]",
    "m8[10ms]",
    ">M8[us]",
    "S7",
    "U5",
    ">U3",
    "V6",
    np.dtype([("x", "<f4"), ("y", "<i8")]),
    np.dtype([("x", "u1"), ("y", "<i4")], align=True),
    np.dtype([("a", "u1"), ("n", [("x", "u1"), ("y", "<f8")])], align=True),
    np.dtype([(("the title", "t"), "<f8"), ("sub", "<i2", (2, 3)), ("s", "S3"), ("u", "U2")]),
    np.dtype([("when", "M8[s]"), ("dt", "m8[h]"), ("ok", "?"), ("c", "<c16")]),
    np.dtype({"names": ["a", "b"], "formats": ["<i4", "<f8"], "offsets": [0, 8], "itemsize": 24}),
    np.dtype([("caf\u00e9 'quoted' \"name\"\n", "<i4"), ("raw", "V3")]),
]


def sample(shape, dtype) -> np.ndarray:
    """An array of `shape` and `dtype` with varied, non-zero bytes."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = (np.arange(n, dtype=np.uint64) * 2654435761 % 251 + 1).astype(np.uint8)
    out = np.empty(shape, dtype)
    out.reshape(-1).view(np.uint8)[:] = raw
    return out


def raw(a: np.ndarray) -> np.ndarray:
    """The bytes of a contiguous array (C or Fortran), as a writable view."""
    return a.reshape(-1, order="A").view(np.uint8)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape, order", [((), "C"), ((5,), "C"), ((3, 4), "F"), ((2, 0, 3), "C"), ((2, 3, 2), "C")])
def test_share_and_attach_round_trip(dtype, shape, order):
    source = np.asfortranarray(sample(shape, dtype)) if order == "F" else sample(shape, dtype)
    shared = ferroshm.share(source)
    try:
        assert isinstance(shared, SharedArray) and isinstance(shared, np.ndarray)
        assert shared.shape == source.shape and same_dtype(shared.dtype, source.dtype)
        assert shared.tobytes(order="A") == source.tobytes(order="A")
        other = ferroshm.attach(shared.name)
        assert other.name == shared.name
        assert other.shape == source.shape and same_dtype(other.dtype, source.dtype)
        assert (other.flags.c_contiguous, other.flags.f_contiguous) == (
            shared.flags.c_contiguous,
            shared.flags.f_contiguous,
        )
        assert other.tobytes(order="A") == source.tobytes(order="A")
        if other.nbytes:
            raw(other)[0] ^= 0xFF  # the same memory
            assert raw(shared)[0] == raw(other)[0] != raw(source)[0]
        assert address(other) % 64 == 0 and address(shared) % 64 == 0
    finally:
        shared.unlink()


def test_fortran_order_is_kept_and_can_be_chosen():
    f = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    with ferroshm.share(f) as a:
        assert a.flags.f_contiguous and not a.flags.c_contiguous
        b = ferroshm.attach(a.name)
        assert b.flags.f_contiguous and np.array_equal(b, f)
    with ferroshm.share(f, order="C") as a:
        assert a.flags.c_contiguous and np.array_equal(a, f)
    with ferroshm.empty((2, 3), order="F") as a:
        assert a.flags.f_contiguous and ferroshm.attach(a.name).flags.f_contiguous
    # A non-contiguous source is copied in C order.
    with ferroshm.share(np.arange(20).reshape(4, 5)[:, ::2]) as a:
        assert a.flags.c_contiguous and a.tolist() == [[0, 2, 4], [5, 7, 9], [10, 12, 14], [15, 17, 19]]
    with pytest.raises(ValueError, match="order must be"):
        ferroshm.empty(3, order="K")


def test_empty_and_zeros_are_zero_filled_with_numpy_arguments():
    for make in (ferroshm.empty, ferroshm.zeros):
        with make((2, 3), dtype="i2") as a:
            assert a.dtype == np.int16 and a.shape == (2, 3) and not a.any()
        with make(4) as a:  # an int shape, float64 by default
            assert a.dtype == np.float64 and a.shape == (4,)
        with make(np.int64(2), dtype=("<f4", (3,))) as a:  # the sub-array joins the shape
            assert a.shape == (2, 3) and a.dtype == np.float32
    with ferroshm.share([[1, 2], [3, 4]]) as a:  # anything np.asarray takes
        assert a.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(TypeError):
        ferroshm.empty(2.5)
    with pytest.raises(ValueError, match="negative dimensions are not allowed"):
        ferroshm.empty((2, -1))
    with pytest.raises(ValueError, match="array is too big"):
        ferroshm.empty((1 << 40, 1 << 40))
    with pytest.raises(ValueError, match="maximum supported dimension"):
        ferroshm.empty((1,) * 65)


def test_a_chosen_name(shm_name):
    a = ferroshm.zeros(3, name=shm_name)
    try:
        assert a.name == shm_name and a.shm.name == shm_name
        with pytest.raises(FileExistsError):
            ferroshm.zeros(3, name=shm_name)
        with pytest.raises(FileExistsError):
            ferroshm.share([1, 2], shm_name)
        a[:] = 7
        assert ferroshm.attach(shm_name).tolist() == [7, 7, 7]
    finally:
        a.unlink()


@pytest.mark.parametrize(
    "dtype, message",
    [
        (object, "holds Python objects"),
        (np.dtype([("a", "<i4"), ("o", object)]), "holds Python objects"),
        (np.dtype([("a", [("o", "O", (2,))])]), "holds Python objects"),
        (
            np.dtype({"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [4, 0]}),
            "overlapping or out-of-order fields",
        ),
        (np.dtype({"names": ["a", "b"], "formats": ["<i4", "<i8"], "offsets": [0, 0]}), "overlapping"),
    ],
)
def test_dtypes_that_cannot_be_shared_are_refused_before_anything_exists(dtype, message):
    before = segments()
    with pytest.raises(ValueError, match=message):
        ferroshm.empty(3, dtype)
    with pytest.raises(ValueError, match=message):
        ferroshm.share(np.zeros(3, dtype))
    assert segments() == before


def test_variable_width_strings_are_refused():
    # NumPy 2's StringDType: each item points to a string elsewhere.
    before = segments()
    with pytest.raises(ValueError, match="point to memory outside the array"):
        ferroshm.share(np.array(["a", "bcd"], dtype=np.dtypes.StringDType()))
    assert segments() == before


def test_ragged_input_is_refused_before_anything_exists():
    before = segments()
    with pytest.raises(ValueError):
        ferroshm.share([[1, 2], [3]])
    assert segments() == before


def test_metadata_is_not_stored():
    # dtype metadata is a Python dict beside the layout; like np.save, the
    # header describes the layout only.
    dt = np.dtype(np.float64, metadata={"unit": "m"})
    with ferroshm.share(np.ones(2, dt)) as a:
        assert ferroshm.attach(a.name).dtype.metadata is None


def test_itemsize_zero_and_empty_arrays():
    with ferroshm.empty((3,), np.dtype([])) as a:
        assert a.nbytes == 0 and ferroshm.attach(a.name).shape == (3,)
    with ferroshm.empty((0, 5)) as a:
        b = ferroshm.attach(a.name)
        assert b.shape == (0, 5) and b.size == 0
        assert pickle.loads(pickle.dumps(b)).shape == (0, 5)


# --- read-only attach ----------------------------------------------------------


def test_readonly_attach():
    with ferroshm.share(np.arange(4)) as a:
        r = ferroshm.attach(a.name, readonly=True)
        assert not r.flags.writeable and r.tolist() == [0, 1, 2, 3]
        with pytest.raises(ValueError, match="read-only"):
            r[0] = 1
        with pytest.raises(ValueError):
            r.flags.writeable = True  # the mapping itself is PROT_READ
        a[0] = 9
        assert r[0] == 9
        # A read-only view pickles read-only; a writable one does not.
        assert not pickle.loads(pickle.dumps(r[1:])).flags.writeable
        v = a[1:]
        v.flags.writeable = False
        assert not pickle.loads(pickle.dumps(v)).flags.writeable
        assert pickle.loads(pickle.dumps(a[1:])).flags.writeable


# --- lifetime ------------------------------------------------------------------


def test_close_keeps_arrays_and_views_working():
    a = ferroshm.share(np.arange(10.0))
    v = a[2:5]
    a.close()
    a.close()  # idempotent
    assert a.shm.buf is None
    a[0] = 42.0
    v[:] = -1
    assert a[0] == 42.0 and a[2:5].tolist() == [-1, -1, -1]
    b = ferroshm.attach(a.name)  # the name is still there
    assert b[0] == 42.0
    a.unlink()
    b[1] = 5  # mappings outlive the name
    assert a[1] == 5


def test_attach_after_unlink_is_file_not_found():
    a = ferroshm.zeros(3)
    name = a.name
    a.unlink()
    with pytest.raises(FileNotFoundError):
        ferroshm.attach(name)
    with pytest.raises(FileNotFoundError):
        a.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(pickle.dumps(a))


def test_with_unlinks_for_the_creator_and_only_closes_otherwise():
    with ferroshm.zeros(3) as a:
        name = a.name
        with ferroshm.attach(name) as b:
            b[0] = 1
        assert name in segments()  # leaving b's block did not unlink
        assert b.shm.buf is None  # it closed b's handle
    assert name not in segments()
    assert a[0] == 1 and b[0] == 1  # both still usable
    # An explicit unlink inside the block is fine.
    with ferroshm.zeros(3) as c:
        c.unlink()
    # So is one by someone else.
    with ferroshm.zeros(3) as d:
        SharedMemory(d.name, track=False).unlink()


def test_operations_of_a_shared_array_on_a_copy_say_it_is_not_shared():
    with ferroshm.zeros(4) as a:
        c = a[[0, 2]]  # fancy indexing allocates
        assert c.name is None and c.shm is None
        for method in (c.unlink, c.close):
            with pytest.raises(ValueError, match="not in shared memory"):
                method()
        with pytest.raises(ValueError, match="not in shared memory"):
            with c:
                pass
        # It pickles by value, as a plain ndarray.
        back = pickle.loads(pickle.dumps(c))
        assert type(back) is np.ndarray and back.tolist() == [0, 0]


def test_creator_registers_with_the_tracker_and_attachers_do_not(monkeypatch):
    calls = []
    monkeypatch.setattr(resource_tracker, "register", lambda n, t: calls.append(("register", n)))
    monkeypatch.setattr(resource_tracker, "unregister", lambda n, t: calls.append(("unregister", n)))
    a = ferroshm.zeros(3)
    ferroshm.attach(a.name).close()
    pickle.loads(pickle.dumps(a[1:]))
    ferroshm.attach(a.name, readonly=True)
    a.unlink()
    path = "/" + a.name
    assert calls == [("register", path), ("unregister", path)]


KILLED_CREATOR = """
import ferroshm, numpy as np, sys, time
a = ferroshm.share(np.arange(1000.0))
print(a.name, flush=True)
time.sleep(60)
"""


def test_a_killed_creators_array_is_removed_by_its_tracker():
    def check(name):
        assert ferroshm.attach(name)[999] == 999.0

    kill_creator_and_check_cleanup(KILLED_CREATOR, check)


def test_an_unrelated_attacher_never_removes_the_array():
    # gh-82300: with the standard library, a process outside the creator's
    # tree that attaches registers the name with its own resource tracker,
    # which unlinks it when that process exits.
    with ferroshm.share(np.arange(5)) as a:
        for code in (
            f"import ferroshm; b = ferroshm.attach({a.name!r}); b[0] = 100",
            f"import ferroshm, pickle; b = pickle.loads({pickle.dumps(a[2:])!r}); b[0] = 200",
            f"import ferroshm; b = ferroshm.attach({a.name!r}); b.close()",
        ):
            run_python(code)
            assert a.name in segments()
        assert a.tolist() == [100, 1, 200, 3, 4]
        assert ferroshm.attach(a.name).tolist() == [100, 1, 200, 3, 4]


# --- pickling by name ----------------------------------------------------------


def test_pickles_are_the_same_size_whatever_the_array_size():
    small = ferroshm.zeros(128)  # 1 KiB
    large = ferroshm.zeros(8 << 20)  # 64 MiB
    try:
        sizes = {len(pickle.dumps(x, protocol=p)) for x in (small, large) for p in (2, 5)}
        assert max(sizes) < 250
        assert len(pickle.dumps(large[10:20])) < 250
    finally:
        small.unlink()
        large.unlink()


def test_views_pickle_by_name_and_unpickle_onto_the_same_memory():
    a = ferroshm.share(np.arange(24, dtype=np.int32).reshape(4, 6))
    try:
        views = [a, a[1:3], a[:, ::-2], a.T, a[2, 3:], a.reshape(6, 4)[1], a.view(np.uint8)[5:9], a[3, 5]]
        for v in views[:-1]:
            assert v.name == a.name, v
            back = pickle.loads(pickle.dumps(v))
            assert type(back) is SharedArray and back.name == a.name
            assert back.shape == v.shape and back.strides == v.strides and back.dtype == v.dtype
            assert np.array_equal(back, v)
        # a[3, 5] is a scalar: a NumPy int, not an array.
        assert isinstance(views[-1], np.int32)
        # Writes through an unpickled view land in the array.
        w = pickle.loads(pickle.dumps(a[:, ::-2]))
        w[:] = -1
        assert (a[:, 5] == -1).all() and (a[:, 1] == -1).all() and (a[:, 0] != -1).all()
    finally:
        a.unlink()


def test_a_recreated_name_is_not_mistaken_for_the_array(shm_name):
    a = ferroshm.zeros(4, name=shm_name)
    data = pickle.dumps(a[1:])
    a.unlink()
    b = ferroshm.zeros(4, name=shm_name)
    try:
        with pytest.raises(FileNotFoundError, match="its name now belongs to another segment"):
            pickle.loads(data)
    finally:
        b.unlink()


def test_copy_module_and_deepcopy_give_private_arrays():
    with ferroshm.share(np.arange(3)) as a:
        for c in (copy.copy(a), copy.deepcopy(a), a.copy(), a.flatten(), a.astype(float), np.copy(a)):
            assert type(c) is np.ndarray and not np.shares_memory(c, a)
        assert a.astype(a.dtype, copy=False) is a


# --- results are plain arrays --------------------------------------------------


def test_results_of_arithmetic_are_plain_arrays():
    a = ferroshm.share(np.arange(6.0).reshape(2, 3))
    try:
        results = [a + 1, a * a, np.sqrt(a), -a, a > 2, a.sum(axis=0), a.mean(axis=1), np.sort(a), a @ a.T, np.divmod(a, 2)[0]]
        for r in results:
            assert type(r) is np.ndarray, type(r)
            assert not np.shares_memory(r, a)
            assert type(pickle.loads(pickle.dumps(r))) is np.ndarray
        for scalar in (a.sum(), a.max(), a.mean(), np.add.reduce(a, axis=None)):
            assert not isinstance(scalar, np.ndarray)
        assert a.sum() == 15.0
        # In place: the shared array itself.
        b = a
        b += 1
        assert b is a and a[0, 0] == 1.0
        assert np.multiply(a, 2, out=a) is a and a[0, 0] == 2.0
        q, r = np.divmod(a, 4, out=(a, None))
        assert q is a and type(r) is np.ndarray
        assert a.tolist() == [[0, 1, 1], [2, 2, 3]]
        assert np.add.at(a, [0], 1) is None
        assert a[0].tolist() == [1, 2, 2]
        plain = np.zeros((2, 3))
        assert np.add(a, 1, out=plain) is plain
    finally:
        a.unlink()


def test_repr_and_basic_ndarray_behaviour():
    with ferroshm.share(np.arange(3)) as a:
        assert repr(a).startswith("SharedArray([0, 1, 2]")
        assert a.tolist() == [0, 1, 2] and len(a) == 3 and list(a) == [0, 1, 2]
        assert isinstance(a[1:], SharedArray) and a[1:].name == a.name


# --- SharedMemoryManager -------------------------------------------------------


def _worker_fill(v, value):
    v[...] = value


def test_manager_makes_arrays_that_its_shutdown_removes(shm_name):
    import multiprocessing as mp

    with ferroshm.SharedMemoryManager() as smm:
        a = smm.share(np.arange(5))
        b = smm.empty((2, 2), dtype="f4")
        c = smm.zeros(3, name=shm_name)
        d = smm.share(np.asfortranarray(np.ones((2, 3))), name=shm_name + "_d")
        names = [x.name for x in (a, b, c, d)]
        assert c.name == shm_name and d.flags.f_contiguous
        assert a.tolist() == [0, 1, 2, 3, 4] and not b.any() and b.dtype == np.float32
        assert all(n in segments() for n in names)
        assert ferroshm.attach(a.name).tolist() == [0, 1, 2, 3, 4]
        p = mp.get_context("spawn").Process(target=_worker_fill, args=(a[1:3], 9))
        p.start()
        p.join()
        assert p.exitcode == 0 and a.tolist() == [0, 9, 9, 3, 4]
        with a:  # not the owner (the manager is): closes only
            pass
        assert a.name in segments()
        with pytest.raises(ValueError, match="holds Python objects"):
            smm.empty(3, object)
        with pytest.raises(FileExistsError):
            smm.zeros(3, name=shm_name)
    assert not any(n in segments() for n in names)
    assert a.tolist() == [0, 9, 9, 3, 4]  # mappings outlive the manager


def test_importing_ferroshm_does_not_import_numpy():
    out = run_python(
        "import sys, ferroshm\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
        "ferroshm.SharedMemory\n"
        "assert 'numpy' not in sys.modules\n"
        "print(sorted(n for n in ('share', 'attach', 'empty', 'zeros', 'SharedArray') if n in dir(ferroshm)))\n"
        "ferroshm.share\n"
        "assert 'numpy' in sys.modules\n"
        "from ferroshm import attach, SharedArray\n"
        "assert SharedArray.__module__ == 'ferroshm.array'\n"
    )
    assert out.stdout.strip() == "['SharedArray', 'attach', 'empty', 'share', 'zeros']"


def test_without_numpy_the_rest_of_ferroshm_works():
    code = textwrap.dedent(
        """
        import sys
        sys.modules['numpy'] = None  # as if NumPy were not installed
        import ferroshm
        with ferroshm.SharedMemory(create=True, size=8) as s:
            s.unlink()
        try:
            ferroshm.share
        except ImportError as e:
            print('ImportError', 'numpy' in str(e))
        """
    )
    assert run_python(code).stdout.strip() == "ImportError True"
