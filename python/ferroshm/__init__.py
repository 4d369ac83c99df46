"""ferroshm: a drop-in, crash-proof, fast replacement for
:mod:`multiprocessing.shared_memory`, written in Rust.

``import ferroshm as shared_memory`` and use it as the standard library
module: same classes, arguments, errors and bytes in shared memory, so
processes running the standard library and ferroshm share segments.
"""

from ._native import __version__
from ._stdlib import patch_stdlib
from .shared_memory import ShareableList, SharedMemory
from .managers import SharedMemoryManager, SharedMemoryServer

__all__ = ["ShareableList", "SharedMemory", "SharedMemoryManager", "SharedMemoryServer", "patch_stdlib"]
