"""Typed interface of ferroshm's native module. Use the ``ferroshm``
package rather than this module: its API may change between releases."""

from typing import Optional

class Segment:
    """An open, mapped segment; ``close()`` drops this handle's hold on it."""

    @staticmethod
    def open(name: str, flags: int, mode: int = 0o600, size: Optional[int] = None, reserve: bool = True) -> Segment:
        """Open ``name`` (leading '/' included) with ``open(2)`` flags and
        mode; ``size`` is what a newly created object is truncated to."""
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def created(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def memoryview(self) -> memoryview:
        """A new writable 1-D memoryview of format 'B' over the mapping; it
        keeps the mapping alive by itself."""
    def close(self) -> None: ...

class Mapping:
    """The buffer exporter behind ``SharedMemory.buf``."""

    def __len__(self) -> int: ...

def unlink(name: str) -> None:
    """Remove the segment ``name`` (leading '/' included)."""

def random_name(prefix: str, length: int) -> str:
    """``prefix`` followed by random hex digits, ``length`` characters in all."""
