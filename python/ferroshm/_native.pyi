"""Typed interface of ferroshm's native module. Use the ``ferroshm``
package rather than this module: its API may change between releases."""

import sys
from collections.abc import Iterable
from types import GenericAlias, TracebackType
from typing import Any, Callable, Generic, Optional, SupportsIndex, Tuple, TypeVar, final, overload

from typing_extensions import disjoint_base

# Not re-exported: ShareableList raises it, but it is defined (and
# importable) in ferroshm.shared_memory.
from .shared_memory import ItemTypeError  # noqa: F401

if sys.version_info >= (3, 11):
    from typing import Self
else:
    from typing_extensions import Self

# The types a ShareableList stores (subclasses are stored as these).
_SLT = TypeVar("_SLT", int, float, bool, str, bytes, None)

__all__ = [
    "SharedMemory",
    "_set_hooks",
    "tracker_send",
    "tracker_send_all",
    "check_trackable",
    "tracker_registrations",
    "tracker_after_fork_in_child",
    "Segment",
    "Mapping",
    "unlink",
    "random_name",
    "create_placeholder",
    "object_size",
    "os_name",
    "reported_name",
    "ShareableList",
    "ListIter",
    "read_list",
    "ArrayHeader",
    "SEGMENT_DIR",
    "__version__",
]

__version__: str
"""The crate's version (Cargo.toml), which is also the package's."""

SEGMENT_DIR: Optional[str]
"""Where named segments appear as files (Linux: ``/dev/shm``), or None
where the platform has no such directory."""

@disjoint_base
class SharedMemory:
    """Creates a new shared memory block or attaches to an existing one.

    Same arguments, attributes and errors as
    :class:`multiprocessing.shared_memory.SharedMemory` (Python 3.13); its
    home is ``ferroshm.shared_memory``. Differences: ``close()`` never
    raises BufferError nor unmaps memory still in use; creating reserves the
    pages (``reserve=False`` or ``FERROSHM_RESERVE=0``: sparse, as the
    standard library); a failure never removes a segment this call did not
    create; names the resource tracker cannot carry are refused before
    anything is created; a context manager; ``_fd`` and ``_mmap`` are made
    on first use; no ``__del__``."""

    _flags: int
    _mode: int
    _prepend_leading_slash: bool
    _name: Any
    _size: int
    _track: bool
    _buf: Any
    _fd: int
    _mmap: Any
    @property
    def _identity(self) -> Tuple[int, int]:
        """(device, inode) of the open segment (ValueError after close)."""

    def __init__(
        self,
        name: Optional[str] = None,
        create: bool = False,
        size: int = 0,
        *,
        track: bool = True,
        reserve: Optional[bool] = None,
    ) -> None: ...
    @staticmethod
    def _in_placeholder(name: str, size: int, reserve: Optional[bool] = None) -> SharedMemory:
        """A new untracked SharedMemory of ``size`` bytes in the placeholder
        ``name`` (OS name), for SharedMemoryManager clients."""
    def __reduce__(self) -> tuple[type[Self], tuple[str, bool, int]]: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *_exc_info: object) -> None: ...
    @property
    def buf(self) -> Optional[memoryview]:
        """A memoryview of contents of the shared memory block."""
    @property
    def name(self) -> str:
        """Unique name that identifies the shared memory block."""
    @property
    def size(self) -> int:
        """Size in bytes."""
    def close(self) -> None:
        """Closes access to the shared memory from this instance but does
        not destroy the shared memory block; never raises BufferError."""
    def unlink(self) -> None:
        """Requests that the underlying shared memory block be destroyed."""

def _set_hooks(module_dict: dict[str, Any], make_filename: Callable[[], str], reserve_default: bool) -> None:
    """Called by ``ferroshm.shared_memory`` when it is imported."""

def tracker_send(cmd: str, name: str, identity: Optional[Tuple[int, int]] = None) -> None:
    """Send ``cmd`` ("REGISTER" or "UNREGISTER") for the segment ``name`` (OS
    name) to the standard library's resource tracker, in its own format."""

def tracker_send_all(cmd: str, names: list[str]) -> None:
    """:func:`tracker_send` for several names, in one write when possible."""

def check_trackable(name: str) -> None:
    """ValueError if the running standard library's resource tracker cannot
    carry ``name`` (OS name, leading '/')."""

def tracker_registrations() -> Tuple[list[str], list[str]]:
    """``(registered, inherited)``: the names this process registered, and
    those a raw-fork parent registered with a tracker this process cannot
    reach."""

def tracker_after_fork_in_child() -> None:
    """The fork hook: after a raw fork that dropped the tracker's pipe, this
    process's registrations are its parent's."""

@final
class Segment:
    """An open, mapped segment; ``close()`` drops this handle's hold on it."""

    @staticmethod
    def open(
        name: str,
        flags: int,
        mode: int = 0o600,
        size: Optional[int] = None,
        reserve: bool = True,
        placeholder: bool = False,
    ) -> Segment:
        """Open ``name`` (leading '/' included) with ``open(2)`` flags and
        mode; ``size`` is what a newly created object is truncated to (pages
        reserved with ``reserve``). Nothing is registered with the resource
        tracker.

        With ``placeholder``, ``name`` is an existing empty object (see
        :func:`create_placeholder`) that this call sizes to ``size`` bytes
        (pages reserved) and maps: FileExistsError if it is not empty any
        more, FileNotFoundError if it is gone; nothing is created, and
        nothing removed on failure. POSIX only."""
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def created(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def identity(self) -> Tuple[int, int]:
        """(device, inode) of the object: equal for handles on the same
        object, different for an object re-created under the same name."""
    def memoryview(self) -> memoryview:
        """A new writable 1-D memoryview of format 'B' over the mapping; it
        keeps the mapping alive by itself."""
    def close(self) -> None: ...

@final
class Mapping:
    """The buffer exporter behind ``SharedMemory.buf``."""

    def __len__(self) -> int: ...

def unlink(name: str) -> None:
    """Remove the segment ``name`` (leading '/' included)."""

def create_placeholder(name: str, mode: int = 0o600) -> None:
    """Create ``name`` (leading '/' included) as an empty placeholder object
    (size 0), to be sized later by ``Segment.open(..., placeholder=True)``;
    FileExistsError if the name is taken. POSIX only."""

def object_size(name: str) -> int:
    """The size in bytes of the object ``name`` (leading '/' included) now,
    without mapping it: 0 for a placeholder nobody sized yet. POSIX only."""

def random_name(prefix: str, length: int) -> str:
    """``prefix`` followed by random hex digits, ``length`` characters in all."""

def os_name(name: str) -> str:
    """The OS name of the segment Python reports as ``name`` (POSIX: with a
    leading '/'; a name that has it is returned unchanged)."""

def reported_name(os_name: str) -> str:
    """The name Python reports for the OS name ``os_name`` (POSIX: without
    the leading '/')."""

def read_list(name: str) -> list[tuple[str, int | float | bool | str | bytes | None]]:
    """Open the segment ``name`` (leading '/' included) read-only, without the
    resource tracker, and read every item of the ShareableList in it as
    ``(format, value)`` pairs. ValueError when the bytes are not a valid
    list; OSError when it cannot be opened. Never writes the segment."""

@disjoint_base
class ShareableList(Generic[_SLT]):
    """A list whose items live in shared memory, byte-compatible with
    :class:`multiprocessing.shared_memory.ShareableList` (Python 3.9+
    layout). Defined here; its home is ``ferroshm.shared_memory`` (its
    ``__module__``), re-exported by ``ferroshm``.

    ``ShareableList(sequence=None, *, name=None)`` creates a new list from
    any iterable (generators too, consumed before any segment exists), or
    attaches to the list ``name`` when ``sequence`` is None, reading only its
    header. Items are int (64-bit), float, bool, None, str and bytes;
    subclasses of these (IntEnum, numpy.float64, ...) are stored as the base
    type. Other values raise :class:`~ferroshm.shared_memory.ItemTypeError`
    (a KeyError, as the standard library raises, and a TypeError); an int
    outside 64 bits raises ``struct.error``; a str or bytes item over
    9,999,991 bytes, ValueError; nothing is created when any item is refused.

    Differences from the standard library: str slots are sized in UTF-8
    bytes, so non-ASCII text round-trips (and stock readers read it intact);
    indices outside [-len, len) raise IndexError and non-integer indices
    TypeError, as for list; slices read as lists; a failed assignment
    changes nothing; a corrupt or hostile segment raises ValueError instead
    of reading or writing garbage; numeric items are written and read as
    single 8-byte accesses, so a concurrent reader never sees a torn int or
    float written by ferroshm; ``close()``, ``unlink()`` and ``with`` work on
    the list itself, and every operation after ``close()`` raises
    ValueError. As in the standard library, trailing NUL bytes of str and
    bytes items are dropped on reading (the layout cannot tell them from
    padding), and the length and slot sizes are fixed at creation.
    """

    def __init__(
        self, sequence: Optional[Iterable[_SLT]] = None, *, name: Optional[str] = None, track: bool = True
    ) -> None:
        """For subclasses: ``super().__init__(sequence, name=name)`` creates
        or attaches the list when the subclass defines its own ``__init__``.
        Does nothing on a list that already is one."""
    @staticmethod
    def _create_in(sequence: Iterable[_SLT], make_shm: Callable[[int], SharedMemory]) -> ShareableList[_SLT]:
        """A new list of the items of ``sequence`` in the SharedMemory that
        ``make_shm(size)`` returns (``size`` bytes or more): for
        ``SharedMemoryManager``, whose clients write lists into placeholders
        its server made. If writing fails or is interrupted, that
        SharedMemory is closed and unlinked."""
    @overload
    def __getitem__(self, position: SupportsIndex, /) -> _SLT:
        """The item at ``position`` (IndexError outside [-len, len))."""
    @overload
    def __getitem__(self, position: slice, /) -> list[_SLT]:
        """The items in ``position``, as a new list."""
    def __setitem__(self, position: SupportsIndex, value: _SLT, /) -> None:
        """Store ``value`` at ``position``. A str or bytes value must fit the
        item's slot (ValueError "bytes/str item exceeds available storage");
        the item may change type. On any error nothing is written. Slice
        assignment raises TypeError."""
    def __len__(self) -> int:
        """The item count, read from shared memory on every call."""
    def __iter__(self) -> ListIter[_SLT]:
        """Iterate over the items, reading each when it is reached."""
    def __reversed__(self) -> ListIter[_SLT]:
        """Iterate over the items from the last one."""
    def __contains__(self, value: object, /) -> bool: ...
    def count(self, value: object) -> int:
        """Number of items equal to ``value``."""
    def index(self, value: object) -> int:
        """Position of the first item equal to ``value``; ValueError when
        there is none, worded as the running standard library words it:
        ``"ShareableList.index(x): x not in list"`` from Python 3.14,
        ``f"{value!r} not in this container"`` before."""
    @property
    def format(self) -> str:
        """The struct formats of all items, joined (e.g. ``'q8sd'``)."""
    @property
    def shm(self) -> SharedMemory:
        """The :class:`~ferroshm.shared_memory.SharedMemory` holding the list."""
    def _get_packing_format(self, position: int) -> str:
        """The struct format of one item, e.g. ``'q'`` or ``'16s'``."""
    def __reduce__(self) -> tuple[Callable[[], ShareableList[_SLT]], tuple[()]]:
        """``(functools.partial(type(self), name=self.shm.name), ())``: a
        pickle names the list, so its size does not depend on the length."""
    def __class_getitem__(cls, item: Any) -> GenericAlias: ...
    def close(self) -> None:
        """Close this process's access to the list (``self.shm.close()``);
        the segment stays until it is unlinked."""
    def unlink(self) -> None:
        """Destroy the list's segment (``self.shm.unlink()``); call it once,
        from any process, when no one needs the list any more."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool:
        """Close the list (without unlinking it); exceptions propagate."""

@final
class ListIter(Generic[_SLT]):
    """Iterator over a :class:`ShareableList`, forwards or backwards. Each
    item is read when it is reached, so it sees concurrent writes; after the
    list is closed, ``next()`` raises ValueError."""

    def __iter__(self) -> Self: ...
    def __next__(self) -> _SLT: ...
    def __length_hint__(self) -> int:
        """Items not yet returned."""

# The descriptions of NumPy dtypes, as ``dtype.descr`` gives them: a type
# string, or a list of (name, descr) / (name, descr, shape) fields, with
# (title, name) for a titled field.
_Descr = Any

@final
class ArrayHeader:
    """The header of a shared NumPy array (``ferroshm.array``): dtype
    description, shape, memory order and where the data is. Made from a
    description to create an array, or read from a segment (and checked) to
    attach to one; the layout is documented in the README."""

    def __new__(cls, descr: str, shape: Iterable[int], fortran: bool = False, aligned_struct: bool = False) -> Self:
        """The header of a new array: ``descr`` is the text of the dtype's
        description (``repr(dtype.descr)`` for a structured dtype,
        ``repr(dtype.str)`` otherwise). ValueError, before anything exists,
        for a description that cannot be shared (object dtypes) or read back,
        negative dimensions, more than 64 of them, or an array too big for
        memory."""
    @staticmethod
    def read(segment: SharedMemory) -> ArrayHeader:
        """Read and check the header at the start of the open ``segment``
        (a ``SharedMemory``); ValueError when it holds no array or a
        corrupt, unsupported or out-of-bounds header."""
    @staticmethod
    def decode(data: bytes, segment_len: Optional[int] = None) -> ArrayHeader:
        """Check a header from ``data``, the first bytes of a segment of
        ``segment_len`` bytes (default ``len(data)``), as ``read`` does."""
    def write(self, segment: SharedMemory) -> None:
        """Write the header at the start of ``segment``, the magic bytes
        last; ValueError if the segment is too small or read-only."""
    def encode(self) -> bytes:
        """The header's bytes, as ``write`` stores them."""
    @property
    def descr(self) -> _Descr:
        """The description as ``dtype.descr`` objects: a type string, or a
        list of field tuples."""
    @property
    def descr_text(self) -> str:
        """The description's text, as stored."""
    @property
    def shape(self) -> Tuple[int, ...]: ...
    @property
    def fortran(self) -> bool:
        """Whether the data is in Fortran (column-major) order."""
    @property
    def aligned_struct(self) -> bool:
        """Whether the structured dtype was made with ``align=True``."""
    @property
    def itemsize(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def data_offset(self) -> int:
        """Where the data starts in the segment (a multiple of 64)."""
    @property
    def header_len(self) -> int: ...
    @property
    def segment_len(self) -> int:
        """The segment size the array needs: data offset plus data."""
