"""NumPy arrays in shared memory, by name.

``ferroshm.share(a)`` copies an array into a new segment, ``ferroshm.empty``
and ``ferroshm.zeros`` make new ones, ``ferroshm.attach(name)`` attaches to
one from any process; each returns a :class:`SharedArray`, an
:class:`numpy.ndarray` whose elements are the segment's bytes.

The segment starts with a small header (dtype, shape, order; see the README
and :mod:`ferroshm._native`'s ``ArrayHeader``), so attaching needs the name
only. A shared array, and any slice or view of one, pickles by name: handing
it to a worker process (``ProcessPoolExecutor``, ``multiprocessing.Pool``, a
``Queue``, joblib, Dask) costs the same whatever its size, and the worker
writes into the same memory. Results of arithmetic are ordinary arrays.

Lifetime: the process that creates an array owns its name (registered with
the resource tracker, like ``SharedMemory(create=True)``): ``unlink()``, or
leaving a ``with`` block, removes it, and so does the tracker if the
creator's process tree ends first. Attaching never registers the name, so
no attaching process removes it, even one outside the creator's process tree
(gh-82300). Arrays and views keep their mapping alive after ``close()`` and
after ``unlink()``.

This module imports NumPy; ``import ferroshm`` does not import this module
until one of its names is used.
"""

from __future__ import annotations

import errno
import operator
import os
from typing import Any, Callable, Optional, Sequence, SupportsIndex, Tuple, Union

import numpy as np

from . import _native
from .shared_memory import SharedMemory

__all__ = ["SharedArray", "share", "empty", "zeros", "attach"]

_ShapeLike = Union[SupportsIndex, Sequence[SupportsIndex]]


class _ReadOnlySharedMemory(SharedMemory):
    """A SharedMemory attached read-only (``O_RDONLY``, ``PROT_READ``)."""

    _flags = os.O_RDONLY


class _Handle:
    """The segment behind a shared array and every view of it: the
    :class:`SharedMemory` handle, the mapping (its memoryview, which keeps
    it mapped), and whether this process created the name (and so owns
    it)."""

    __slots__ = ("shm", "name", "identity", "buf", "_start", "owner", "unlinked")

    def __init__(self, shm: SharedMemory, owner: bool) -> None:
        self.shm = shm
        self.name: str = shm.name
        self.identity: Tuple[int, int] = shm._identity
        self.buf = shm.buf
        self._start: Optional[int] = None
        self.owner = owner
        self.unlinked = False

    @property
    def start(self) -> int:
        """The address of the mapping's first byte (found when first
        needed: to pickle a view, as its offset in the segment)."""
        if self._start is None:
            self._start = _address(np.frombuffer(self.buf, np.uint8, count=1))
        return self._start


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def _plain(x: np.ndarray) -> np.ndarray:
    """``x`` as a plain ndarray view."""
    return x.view(np.ndarray)


class SharedArray(np.ndarray):
    """A NumPy array whose elements live in a named shared-memory segment.

    Made by :func:`share`, :func:`empty`, :func:`zeros` or :func:`attach`
    (or a ``SharedMemoryManager``'s ``share``/``empty``/``zeros``); never
    construct it directly. It is an ``ndarray`` in every respect, plus:

    * ``name``: the segment's name (as ``SharedMemory.name`` reports it),
      for :func:`attach` in another process; ``None`` for an array that is
      not in shared memory (see below).
    * ``unlink()``: remove the name (once, from any process); ``close()``:
      drop this process's handle (the memory stays mapped while any array
      uses it); ``with``: on exit, the creator unlinks and closes, any other
      process only closes.
    * Pickling by name: an array, or a slice or view of it, pickles as
      (name, the segment's inode, offset, shape, strides, dtype, read-only
      flag), and unpickles by attaching to the same memory (untracked);
      FileNotFoundError if the segment was unlinked meanwhile, even if
      another has taken its name.

    Slices and views (``a[2:]``, ``a.T``, ``a.reshape(...)`` when it makes a
    view, ``a.view(dtype)``) are SharedArrays of the same segment. Results
    of ufuncs and reductions (``a + 1``, ``np.sqrt(a)``, ``a.sum()``) and of
    ``copy()``, ``astype()`` and ``flatten()`` are plain ndarrays (an
    in-place ufunc with ``out=`` a shared array returns it). Other NumPy
    operations that allocate new memory (``a[[0, 2]]``, ``np.dot``) return a
    SharedArray that is not in shared memory: its ``name`` is None and it
    pickles by value.
    """

    _handle: Optional[_Handle] = None

    def __array_finalize__(self, obj: Any) -> None:
        # A view's base is the array that provides its memory (NumPy
        # collapses chains of views to the first owner of a different
        # type): a view of a shared array has it as its base; an array with
        # memory of its own (a copy) has none, or a private one.
        base = self.base
        if isinstance(base, SharedArray):
            self._handle = base._handle

    # -- what a shared array adds -------------------------------------------

    @property
    def name(self) -> Optional[str]:
        """The segment's name, for :func:`attach`; None if this array is
        not in shared memory."""
        handle = self._handle
        return None if handle is None else handle.name

    @property
    def shm(self) -> Optional[SharedMemory]:
        """This process's :class:`~ferroshm.SharedMemory` handle of the
        segment (header included); None if not in shared memory."""
        handle = self._handle
        return None if handle is None else handle.shm

    def _shared(self) -> _Handle:
        handle = self._handle
        if handle is None:
            raise ValueError("this array is not in shared memory (it is the result of an operation that copies)")
        return handle

    def unlink(self) -> None:
        """Remove the segment's name, so that no process can attach any
        more: call it once, from any one process. Arrays already attached,
        here and elsewhere, keep working. FileNotFoundError if the name is
        gone already."""
        handle = self._shared()
        handle.shm.unlink()
        handle.unlinked = True

    def close(self) -> None:
        """Drop this process's handle of the segment. Unlike
        ``SharedMemory.close()`` with the standard library, this never
        raises and never unmaps memory in use: this array and its views
        keep working, and the mapping goes with the last of them."""
        self._shared().shm.close()

    def __enter__(self) -> "SharedArray":
        self._shared()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        handle = self._shared()
        if handle.owner and not handle.unlinked:
            handle.unlinked = True
            try:
                handle.shm.unlink()
            except FileNotFoundError:
                pass  # someone else unlinked it: the goal is reached
        handle.shm.close()

    # -- pickling by name ---------------------------------------------------

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        handle = self._handle
        if handle is None:
            return np.asarray(self).__reduce_ex__(protocol)
        return (
            _rebuild,
            (
                handle.name,
                handle.identity,
                _address(self) - handle.start,
                self.shape,
                self.strides,
                # A plain dtype as its string (smaller, and quicker to
                # unpickle); a structured one as itself.
                self.dtype.str if self.dtype.names is None else self.dtype,
                not self.flags.writeable,
            ),
        )

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    # -- results are plain arrays -------------------------------------------

    def __array_wrap__(self, array: np.ndarray, context: Any = None, return_scalar: bool = False) -> Any:
        # Called on the results of ufuncs, reductions and a few functions:
        # a new array is a plain one; an output that is shared memory (an
        # in-place operation, out=...) stays what it is.
        if return_scalar:
            return array[()]
        if isinstance(array, SharedArray) and array._handle is not None:
            return array
        return array if type(array) is np.ndarray else array.view(np.ndarray)

    def copy(self, order: Any = "C") -> np.ndarray:  # type: ignore[override]
        """A copy in private memory: a plain ndarray."""
        return np.ndarray.copy(_plain(self), order)

    def __copy__(self) -> np.ndarray:  # type: ignore[override]
        return np.ndarray.copy(_plain(self), "K")

    def __deepcopy__(self, memo: Any) -> np.ndarray:  # type: ignore[override]
        return np.ndarray.copy(_plain(self), "K")

    def astype(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """As ``ndarray.astype``; a copy is a plain ndarray."""
        result = np.ndarray.astype(self, *args, **kwargs)
        return result if result is self else _plain(result)

    def flatten(self, order: Any = "C") -> np.ndarray:  # type: ignore[override]
        """A flattened copy in private memory: a plain ndarray."""
        return np.ndarray.flatten(_plain(self), order)


# -- dtypes ---------------------------------------------------------------------


def _describe(dtype: np.dtype) -> Tuple[str, bool]:
    """The description of ``dtype`` the header stores (NumPy's ``.npy``
    descr, as Python literal text) and whether it is an aligned struct.
    ValueError, before anything is created, for what cannot be shared."""
    if not getattr(type(dtype), "_legacy", True):
        raise ValueError(
            f"cannot put an array of dtype {dtype!r} in shared memory: its items point to "
            "memory outside the array (use a fixed-size dtype such as 'U10' or 'S10')"
        )
    if dtype.hasobject:
        raise ValueError(
            f"cannot put an array of dtype {dtype} in shared memory: it holds Python objects, "
            "which are pointers into one process's memory"
        )
    if dtype.names is None:
        return repr(dtype.str), False
    try:
        descr = dtype.descr
    except ValueError as exc:  # overlapping or out-of-order fields
        raise ValueError(
            f"cannot put an array of dtype {dtype} in shared memory: {exc} (NumPy's .npy "
            "format cannot describe it either)"
        ) from None
    return repr(descr), bool(dtype.isalignedstruct)


def _dtype_from_descr(descr: Any, aligned: bool) -> np.dtype:
    """The dtype of a description (the objects ``ArrayHeader.descr``
    gives), as ``numpy.lib.format.descr_to_dtype`` makes it, with
    ``align=True`` restored for an aligned struct."""
    if isinstance(descr, str):
        return np.dtype(descr)
    names, formats, titles, offsets = [], [], [], []
    offset = 0
    for field in descr:
        name, sub = field[0], field[1]
        dt = _dtype_from_descr(sub, aligned)
        if len(field) == 3:
            dt = np.dtype((dt, field[2]))
        if not (name == "" and dt.type is np.void and dt.names is None):
            title, name = name if isinstance(name, tuple) else (None, name)
            names.append(name)
            formats.append(dt)
            titles.append(title)
            offsets.append(offset)
        offset += dt.itemsize
    spec = {"names": names, "formats": formats, "titles": titles, "offsets": offsets, "itemsize": offset}
    if aligned:
        spec["aligned"] = True
    return np.dtype(spec)  # type: ignore[call-overload]


def _header_dtype(header: _native.ArrayHeader) -> np.dtype:
    try:
        dtype = _dtype_from_descr(header.descr, header.aligned_struct)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"the array header's dtype {header.descr_text} is not one NumPy accepts: {exc}") from None
    if dtype.itemsize != header.itemsize or dtype.hasobject:
        raise ValueError(
            f"the array header's dtype {header.descr_text} has items of {dtype.itemsize} bytes "
            f"in NumPy, not {header.itemsize}"
        )
    return dtype


# -- making and attaching -------------------------------------------------------


def _shape(shape: _ShapeLike) -> Tuple[int, ...]:
    try:
        return (operator.index(shape),)  # type: ignore[arg-type]
    except TypeError:
        return tuple(operator.index(d) for d in shape)  # type: ignore[union-attr]


def _fortran(order: str) -> bool:
    if order not in ("C", "F"):
        raise ValueError(f"order must be one of 'C' or 'F' (got {order!r})")
    return order == "F"


def _wrap(shm: SharedMemory, header: _native.ArrayHeader, dtype: np.dtype, owner: bool) -> SharedArray:
    """The SharedArray of the whole array in ``shm``."""
    array = np.ndarray.__new__(
        SharedArray,
        header.shape,
        dtype,
        buffer=shm.buf,
        offset=header.data_offset,
        order="F" if header.fortran else "C",
    )
    array._handle = _Handle(shm, owner)
    return array


def _create(
    shape: _ShapeLike,
    dtype: Any,
    order: str,
    allocate: Callable[[int], SharedMemory],
    owner: bool,
) -> SharedArray:
    """A new zero-filled array in the segment ``allocate(size)`` returns;
    everything that can be wrong with the arguments is found before it is
    called."""
    dtype = np.dtype(dtype)
    dims = _shape(shape)
    if dtype.subdtype is not None:  # as np.empty: the sub-array joins the shape
        dtype, sub = dtype.subdtype
        dims += sub
    descr, aligned = _describe(dtype)
    header = _native.ArrayHeader(descr, dims, _fortran(order), aligned)
    shm = allocate(header.segment_len)
    try:
        header.write(shm)
        return _wrap(shm, header, dtype, owner)
    except BaseException:
        shm.close()
        if owner:
            try:
                shm.unlink()
            except OSError:
                pass
        raise


def _open(name: str, readonly: bool) -> Tuple[SharedMemory, _native.ArrayHeader]:
    """Attach to ``name`` untracked and read its header."""
    shm = (_ReadOnlySharedMemory if readonly else SharedMemory)(name, track=False)
    try:
        return shm, _native.ArrayHeader.read(shm)
    except BaseException:
        shm.close()
        raise


def _new_segment(name: Optional[str]) -> Callable[[int], SharedMemory]:
    return lambda size: SharedMemory(name, create=True, size=size)


def empty(shape: _ShapeLike, dtype: Any = float, name: Optional[str] = None, *, order: str = "C") -> SharedArray:
    """A new shared array of ``shape`` and ``dtype``, in a new segment named
    ``name`` (a random ``psm_`` name by default; FileExistsError if the name
    is taken), owned by this process (see :class:`SharedArray`).

    As ``numpy.empty``, but the elements are zero: new segments are
    zero-filled by the OS (and ferroshm reserves their pages, so a full
    ``/dev/shm`` is an OSError here rather than a SIGBUS later). The data
    starts 64-byte aligned. ``dtype`` may be any NumPy dtype without Python
    objects (numbers, bool, datetime, fixed-size bytes and str, structured);
    others raise ValueError before anything is created."""
    return _create(shape, dtype, order, _new_segment(name), owner=True)


def zeros(shape: _ShapeLike, dtype: Any = float, name: Optional[str] = None, *, order: str = "C") -> SharedArray:
    """A new shared array of zeros: as :func:`empty` (whose elements are
    zero too), named after ``numpy.zeros``."""
    return _create(shape, dtype, order, _new_segment(name), owner=True)


def _share(array: Any, order: str, allocate: Callable[[int], SharedMemory], owner: bool) -> SharedArray:
    source = np.asarray(array)
    if order in ("K", "A"):
        order = "F" if source.flags.f_contiguous and not source.flags.c_contiguous else "C"
    shared = _create(source.shape, source.dtype, order, allocate, owner)
    try:
        target = shared.view(np.ndarray)
        if source.flags.c_contiguous if order == "C" else source.flags.f_contiguous:
            # Byte for byte, padding of structured dtypes included.
            target.reshape(-1, order="A").view(np.uint8)[:] = source.reshape(-1, order="A").view(np.uint8)
        else:
            np.copyto(target, source, casting="no")
    except BaseException:
        shared.close()
        if owner:
            shared.unlink()
        raise
    return shared


def share(array: Any, name: Optional[str] = None, *, order: str = "K") -> SharedArray:
    """A copy of ``array`` (anything ``numpy.asarray`` takes) in a new
    shared array: same shape, dtype and values, in C order, or in Fortran
    order when ``array`` is Fortran-contiguous (``order="K"``, the default;
    or ``"C"``, ``"F"``). Named ``name`` (random by default) and owned by
    this process, as :func:`empty`."""
    return _share(array, order, _new_segment(name), owner=True)


def attach(name: str, readonly: bool = False) -> SharedArray:
    """The shared array ``name``, made by any process: the same shape,
    dtype and memory order, the same memory. ``readonly=True`` maps it
    read-only (``array.flags.writeable`` is False).

    Attaching never registers the name with this process's resource
    tracker, so neither this process nor its tracker ever removes it (only
    an explicit ``unlink()`` does). FileNotFoundError if there is no such
    segment (or it was unlinked); ValueError if the segment holds no
    ferroshm array, or a corrupt or unsupported header."""
    shm, header = _open(name, readonly)
    try:
        return _wrap(shm, header, _header_dtype(header), owner=False)
    except BaseException:
        shm.close()
        raise


def _rebuild(
    name: str,
    identity: Tuple[int, int],
    offset: int,
    shape: Tuple[int, ...],
    strides: Tuple[int, ...],
    dtype: Union[str, np.dtype],
    readonly: bool,
) -> SharedArray:
    """Unpickle a shared array or view: attach to ``name`` and view the
    same bytes. FileNotFoundError if the segment was unlinked (also when a
    new one has taken its name); ValueError if the view does not lie inside
    the segment.

    The header is not read: the pickle says where the view is, and NumPy
    checks that it lies inside the mapping. (Reading it would touch the
    segment's first page, a page fault, for nothing.)"""
    shm = (_ReadOnlySharedMemory if readonly else SharedMemory)(name, track=False)
    try:
        if shm._identity != identity:
            raise FileNotFoundError(
                errno.ENOENT,
                "the shared array was unlinked: its name now belongs to another segment",
                name,
            )
        array = np.ndarray.__new__(SharedArray, shape, dtype, buffer=shm.buf, offset=offset, strides=strides)
        array._handle = _Handle(shm, owner=False)
        return array
    except BaseException:
        shm.close()
        raise
