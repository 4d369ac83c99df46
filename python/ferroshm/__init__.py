"""ferroshm: a drop-in, crash-proof, fast replacement for
:mod:`multiprocessing.shared_memory`, written in Rust.

``import ferroshm as shared_memory`` and use it as the standard library
module: same classes, arguments, errors and bytes in shared memory, so
processes running the standard library and ferroshm share segments.

The standard library module's private hooks (``_make_filename``,
``_SHM_NAME_PREFIX``, ``_SHM_SAFE_NAME_LENGTH``, ``_USE_POSIX``, ``_O_CREX``,
``_encoding``), which CPython's own tests read and patch, are reachable here
too, and are one and the same as :mod:`ferroshm.shared_memory`'s: reading
``ferroshm._make_filename`` reads the module's current one, and patching it
here (``mock.patch("ferroshm._make_filename", ...)``, pytest's
``monkeypatch``, plain assignment, ``del``) patches the module, so that
``SharedMemory`` sees it, whichever of the two names was patched.
"""

import sys
import types
from typing import TYPE_CHECKING

from . import shared_memory as _shared_memory
from ._native import __version__
from ._stdlib import patch_stdlib
from .shared_memory import ShareableList, SharedMemory
from .managers import SharedMemoryManager, SharedMemoryServer

__all__ = ["ShareableList", "SharedMemory", "SharedMemoryManager", "SharedMemoryServer", "patch_stdlib"]

#: Names that live in ferroshm.shared_memory and are reached through here.
_SHARED_MEMORY_HOOKS = ("_make_filename", "_SHM_NAME_PREFIX", "_SHM_SAFE_NAME_LENGTH", "_USE_POSIX", "_O_CREX", "_encoding")


# NumPy arrays in shared memory (ferroshm.array: share, empty, zeros,
# attach). Loaded on first use, so that importing ferroshm does not import
# NumPy, which stays optional; not in __all__ for the same reason.
_ARRAY_NAMES = ("SharedArray", "attach", "empty", "share", "zeros")

if TYPE_CHECKING:
    from .array import SharedArray, attach, empty, share, zeros


def __getattr__(name):
    if name in _ARRAY_NAMES:
        from . import array

        value = globals()[name] = getattr(array, name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SHARED_MEMORY_HOOKS) | set(_ARRAY_NAMES))


def _forwarded(name):
    """A property that reads, sets and deletes ``name`` in
    :mod:`ferroshm.shared_memory`.

    A property, that is a data descriptor of the module's type, rather than
    a copy in the package's namespace or a module ``__getattr__``: reads see
    the module's current value, and the patching tools restore it through
    the property. ``unittest.mock.patch`` restores an attribute it did not
    find in the namespace by deleting it and, once it is gone, setting the
    original back; pytest's ``monkeypatch`` sets the original back."""

    def get(module):
        return getattr(_shared_memory, name)

    def set_(module, value):
        setattr(_shared_memory, name, value)

    def delete(module):
        delattr(_shared_memory, name)

    return property(get, set_, delete, f"ferroshm.shared_memory.{name}")


class _Package(types.ModuleType):
    """The ``ferroshm`` package's module type: the standard library module's
    private hooks, forwarded to :mod:`ferroshm.shared_memory`."""


for _name in _SHARED_MEMORY_HOOKS:
    setattr(_Package, _name, _forwarded(_name))
del _name

sys.modules[__name__].__class__ = _Package
