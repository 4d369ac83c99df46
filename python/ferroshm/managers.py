"""Drop-in replacements for :class:`multiprocessing.managers.SharedMemoryManager`
and :class:`multiprocessing.managers.SharedMemoryServer` that hand out
ferroshm objects.

They subclass the standard library's classes and run on its machinery: a
:class:`~multiprocessing.managers.Server` with one allocator object, called
through a :class:`~multiprocessing.managers.BaseProxy` (one connection per
process and thread). What differs, and why:

* **The server owns every name.** It registers each with the resource
  tracker it shares with the process that started the manager, then creates
  it, before any client uses it. Unnamed allocations go into *placeholders*:
  empty objects the server made, handed to a process 2, 4, 8, then 16 at a
  time; the caller sizes and maps one itself, untracked. A segment lives until
  shutdown however its client ends (gh-110468), and a client killed at any
  point leaves nothing the server does not own.
* **No round trip per unnamed allocation**, only one per batch; named ones
  (``name=...``, gh-101014) are made by the server in one round trip, on a
  connection kept open (the standard library opens one per call).
* **Shutdown unlinks everything**, placeholders used or not, also segments
  someone else unlinked (the standard library stops at the first of those).
* **The server does not outlive its owner**: when the process that started
  it dies, even by SIGKILL, or on SIGTERM, it unlinks everything and exits.
* **Interrupt-safe calls**: a call cut short drops its connection, whose
  late reply would otherwise answer the next call.
* **Clear errors**, of the standard library's types: ValueError before
  ``start()``, FileNotFoundError after ``shutdown()``, OSError when the
  server is gone.

It interoperates both ways: a standard-library client uses this server
through ``track_segment``, and this client ``connect()``-ed to a
standard-library server allocates the standard library's way (as it does on
Windows, where sections cannot be created empty and sized later).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import threading
import time
from contextlib import contextmanager
from multiprocessing import managers as _stdlib
from multiprocessing import process, util
from multiprocessing.managers import BaseProxy, RemoteError, State, Token
from multiprocessing.managers import convert_to_error  # type: ignore[attr-defined]
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional

from . import _native, _tracker
from .shared_memory import _SHM_NAME_PREFIX, _USE_POSIX, ShareableList, SharedMemory, _in_placeholder

if TYPE_CHECKING:  # ferroshm.array imports NumPy: only when arrays are made
    from .array import SharedArray

__all__ = ["SharedMemoryManager", "SharedMemoryServer"]

# The allocator's fixed id in the server's table of shared objects (whose own
# ids are hexadecimal), so that clients reach it without a 'create' request.
_ALLOCATOR_ID = "ferroshm-allocator"
_ALLOCATOR_TYPEID = "SharedMemoryAllocator"
_ALLOCATOR_METHODS = ("SharedMemory", "ShareableList", "reserve")

# Placeholders made per request at the most (a client asks for 2, then
# twice as many each time, up to this): one tracker write (16 lines fit in
# PIPE_BUF) and one reply. Their names have 16 hex digits, not CPython's 8,
# so that nobody else takes one by chance.
_RESERVE_BATCH = 16
_PLACEHOLDER_NAME_LENGTH = len(_SHM_NAME_PREFIX) + 16


# -- errors -------------------------------------------------------------------


def _not_running_error() -> ValueError:
    return ValueError(
        "SharedMemoryManager is not running: call start() first (or use "
        "'with SharedMemoryManager() as smm:'), or connect() to a running manager"
    )


def _shut_down_error() -> FileNotFoundError:
    return FileNotFoundError(
        errno.ENOENT,
        "SharedMemoryManager has shut down (or is shutting down) and its segments "
        "are gone; create and start a new SharedMemoryManager to allocate again",
    )


def _unreachable_error(exc: Exception, address: Any, during: Optional[str] = None) -> OSError:
    """An OSError of `exc`'s type saying that the server at `address` is out
    of reach (ConnectionResetError for a connection that ended)."""
    if not isinstance(exc, OSError):  # EOFError: the server closed the connection
        exc = ConnectionResetError(errno.ECONNRESET, "the server closed the connection")
    server = f"SharedMemoryManager server at {address!r}"
    message = f"{exc.strerror or exc}: " + (
        f"lost the {server} during a {during} request, which may or may not have been carried out"
        if during
        else f"no {server}"
    )
    message += " (it was shut down, or its process exited); start a new SharedMemoryManager"
    try:
        return type(exc)(exc.errno, message)
    except Exception:
        return exc


def _attach(attach: Callable[[str], Any], name: str) -> Any:
    """`attach(name)` to a segment the server just created for us."""
    try:
        return attach(name)
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT,
            f"segment {name!r} was unlinked before it could be attached: the "
            "SharedMemoryManager shut down meanwhile, or someone unlinked it",
        ) from None


def _send(conn: Any, obj: Any) -> None:
    """``conn.send(obj)``, with the pickle copied out of the BytesIO it is
    written to. The standard library's ``send`` passes a memoryview of that
    BytesIO down to the write; when the write fails (the server is gone),
    the exception's traceback keeps the view, and when the exception is
    collected as part of a reference cycle, the BytesIO is finalized while
    still exported: "Exception ignored in: <_io.BytesIO ...>" (BufferError,
    Python 3.13). Messages here are small, so the copy costs nothing."""
    with ForkingPickler.dumps(obj) as view:
        data = bytes(view)
    conn.send_bytes(data)


def _dispatch(conn: Any, ident: Any, methodname: str, args: tuple = ()) -> Any:
    """The standard library's ``managers.dispatch``, sending with :func:`_send`."""
    _send(conn, (ident, methodname, args, {}))
    return _result(*conn.recv())


def _result(kind: str, result: Any) -> Any:
    """A server's reply: the result, or its error raised."""
    if kind == "#RETURN":
        return result
    raise convert_to_error(kind, result)


# -- the server ---------------------------------------------------------------


def _destroy(path: str) -> None:
    """Unlink `path`, registered by the server, and drop its registration."""
    try:
        _native.unlink(path)
    except FileNotFoundError:
        pass  # unlinked through a handle this manager gave out (untracked)
    except OSError as exc:
        # Still there: leave the registration, so that the tracker tries too.
        util.info("SharedMemoryServer could not unlink %r: %s", path, exc)
        return
    _tracker.send("UNREGISTER", path)


def _sized(path: str) -> bool:
    """Whether a client sized the placeholder `path` (or removed it, which
    only its user would do): then it is a segment."""
    try:
        return _native.object_size(path) > 0
    except OSError:
        return True


class _Segments:
    """A server's ``shared_memory_context``: the names it owns, each
    registered with the resource tracker, with the standard library's
    methods (``register_segment``, ``destroy_segment``, ``unlink``,
    ``segment_names``). Names are taken inside :meth:`taking`, so that
    :meth:`unlink` waits for those being created and none slips past it.
    Placeholders handed out are segments once their client sized them.

    It is also the allocator object clients call (``SharedMemory``,
    ``ShareableList``, ``reserve``); errors (FileExistsError for a name in
    use, ENOSPC, argument errors) go back to the caller as they are.
    """

    def __init__(self, name: str) -> None:
        self.shared_memory_context_name = name
        self._paths: Dict[str, None] = {}  # segments' OS names, an ordered set
        self._placeholders: Dict[str, None] = {}  # handed out, not seen sized yet
        self._cond = threading.Condition()
        self._taking = 0
        self._closed = False

    @contextmanager
    def taking(self) -> Iterator[Callable[[str], None]]:
        """Yield a function that records an OS name as a segment; refuse
        (FileNotFoundError) once :meth:`unlink` has begun."""
        with self._cond:
            if self._closed:
                raise _shut_down_error()
            self._taking += 1
        taken: List[str] = []
        try:
            yield taken.append
        finally:
            with self._cond:
                self._taking -= 1
                self._paths.update(dict.fromkeys(taken))
                self._cond.notify_all()

    def _promote(self, paths: Iterable[str]) -> None:
        """Record the sized placeholders among `paths` as segments (lock
        held): a stat of each, only when someone asks."""
        for path in [p for p in paths if p in self._placeholders and _sized(p)]:
            del self._placeholders[path]
            self._paths[path] = None

    @property
    def segment_names(self) -> List[str]:
        with self._cond:
            self._promote(list(self._placeholders))
            return [_native.reported_name(path) for path in self._paths]

    def register_segment(self, segment_name: str) -> None:
        """Take over a segment someone else created (a standard-library
        client's ``track_segment``)."""
        path = _native.os_name(segment_name)
        _tracker.check_trackable(path)
        with self.taking() as take:
            _tracker.send("REGISTER", path)
            take(path)

    def reserve(self, count: int) -> List[str]:
        """Create up to `count` placeholders, registered first (one tracker
        write), and return their OS names. Unlinked at shutdown, sized or
        not, so a client killed at any point leaves nothing behind."""
        paths = [
            _native.random_name(_SHM_NAME_PREFIX, _PLACEHOLDER_NAME_LENGTH)
            for _ in range(max(0, min(count, _RESERVE_BATCH)))
        ]
        made: List[str] = []
        with self.taking():
            _tracker.send_all("REGISTER", paths)
            try:
                for path in paths:
                    try:
                        _native.create_placeholder(path)
                    except FileExistsError:
                        continue  # someone else's
                    made.append(path)
            finally:
                with self._cond:
                    self._placeholders.update(dict.fromkeys(made))
                if len(made) < len(paths):
                    _tracker.send_all("UNREGISTER", [p for p in paths if p not in made])
        return made

    def SharedMemory(self, size: int, name: Optional[str]) -> str:
        with self.taking() as take:
            shm = SharedMemory(name, create=True, size=size)
            shm.close()
            take(shm._name)
        return shm.name

    def ShareableList(self, items: tuple, name: Optional[str]) -> str:
        with self.taking() as take:
            sl = ShareableList(items, name=name)
            sl.shm.close()
            take(sl.shm._name)
        return sl.shm.name

    def destroy_segment(self, segment_name: str) -> None:
        """Unlink one segment and stop tracking it (ValueError if unknown,
        as in the standard library)."""
        path = _native.os_name(segment_name)
        with self._cond:
            self._promote([path])
            if path not in self._paths:
                raise ValueError(f"{segment_name!r} is not a segment of this SharedMemoryManager")
            del self._paths[path]
        _destroy(path)

    def unlink(self) -> None:
        """Unlink every name; from now on no name can be added."""
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: self._taking == 0)
            paths = [*self._paths, *self._placeholders]
            self._paths.clear()
            self._placeholders.clear()
        for path in paths:
            _destroy(path)


def _wait_for_exit(pid: int) -> None:
    """Return when process `pid` has exited."""
    pidfd_open = getattr(os, "pidfd_open", None)  # Linux 5.3+, Python 3.9+
    if pidfd_open is not None:
        try:
            fd = pidfd_open(pid)
        except ProcessLookupError:
            return
        except OSError:
            pass
        else:
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                while not poller.poll():
                    pass
            finally:
                os.close(fd)
            return
    # Elsewhere, poll. When the owner is our parent (fork and spawn), being
    # reparented also says it died, even while it is an unreaped zombie.
    is_parent = os.getppid() == pid
    while True:
        if is_parent and os.getppid() != pid:
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(0.25)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


class SharedMemoryServer(_stdlib.SharedMemoryServer):
    """The server process of a :class:`SharedMemoryManager`: the standard
    library's, with the same requests (``track_segment``, ``release_segment``,
    ``list_segments``, ``shutdown``, ...) and an allocator object. Every name
    it owns is registered with its resource tracker (the one of the process
    that started the manager) and no other (gh-110468). Stopping, for
    whatever reason (``shutdown``, SIGTERM, its owner's death, even by
    SIGKILL), waits for the allocations in progress, then unlinks every
    name. It ignores SIGINT like the standard library's (bpo-36368).
    """

    # The pid of the process that started this server, watched while it
    # serves (set in a manager's server process; None: nobody is watched).
    owner_pid: Optional[int] = None
    # Server's, for the type checker.
    id_to_obj: Dict[str, Any]
    stop_event: threading.Event
    shared_memory_context: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        segments = _Segments(self.shared_memory_context.shared_memory_context_name)
        self.shared_memory_context = segments
        self.id_to_obj[_ALLOCATOR_ID] = (segments, set(_ALLOCATOR_METHODS), None)

    def serve_forever(self) -> None:
        """Serve until shut down (or the owner dies), then unlink every
        segment and exit (with SystemExit, like the standard library's)."""
        self.stop_event = threading.Event()
        process.current_process()._manager_server = self  # type: ignore[attr-defined]
        try:
            # Inside the try: a SIGTERM while the threads start (clients may
            # be served already) must unlink too.
            threading.Thread(target=self.accepter, name="SharedMemoryServer-accepter", daemon=True).start()
            if self.owner_pid is not None:
                threading.Thread(target=self._watch_owner, name="SharedMemoryServer-owner-watch", daemon=True).start()
            while not self.stop_event.is_set():
                self.stop_event.wait(1)
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            if self.owner_pid is not None:
                # A second SIGTERM must not cut the cleanup short.
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.shared_memory_context.unlink()
            sys.exit(0)

    def _watch_owner(self) -> None:
        owner = self.owner_pid
        assert owner is not None
        _wait_for_exit(owner)
        util.info("SharedMemoryServer: owner process %d is gone; unlinking all segments", owner)
        self.shared_memory_context.unlink()
        self.stop_event.set()


# -- the manager --------------------------------------------------------------


class _AllocatorProxy(BaseProxy):
    """The proxy of a server's allocator: :class:`BaseProxy`'s connection
    (one per process and thread), with calls that cannot leave a reply
    behind, and the placeholders the server made for this process and
    thread."""

    def _connect(self) -> None:
        try:
            BaseProxy._connect(self)  # type: ignore[attr-defined]
        except (OSError, EOFError) as exc:
            raise _unreachable_error(exc, self._token.address) from exc
        self._tls.pid = os.getpid()

    def placeholders(self) -> List[str]:
        """The placeholders the server made for this process (its threads
        share them). A child, even one of a bare os.fork(), starts with
        none: the parent's are the parent's to use."""
        return self.__dict__.setdefault("_pools", {}).setdefault(os.getpid(), [])

    def allocate(self, fill: Callable[[str], Any]) -> Any:
        """`fill(path)` the next placeholder: size and map it (a round trip
        for more only when they run out). A placeholder found sized
        (FileExistsError) is someone else's: skip it. One found gone means
        the server unlinked it at shutdown."""
        pool = self.placeholders()
        if pool:
            self._check_server()
        while True:
            try:
                path = pool.pop()
            except IndexError:
                more = self._callmethod("reserve", (self._batch(),))
                if not more:
                    raise _shut_down_error() from None
                pool.extend(more)
                continue
            try:
                return fill(path)
            except BaseException as exc:
                try:
                    size = _native.object_size(path)
                except OSError:
                    size = -1
                if size == 0:  # untouched (a bad argument, say): still good
                    pool.append(path)
                if isinstance(exc, FileExistsError):
                    continue
                if isinstance(exc, FileNotFoundError) and size < 0:
                    pool.clear()
                    raise _shut_down_error() from None
                raise

    def _batch(self) -> int:
        """How many placeholders to ask for: 2 at first, twice as many at
        each refill after that, up to 16, so that a process that allocates
        only once or twice leaves at most one unused until shutdown."""
        batches = self.__dict__.setdefault("_batches", {})
        count = batches[os.getpid()] = min(2 * batches.get(os.getpid(), 1), _RESERVE_BATCH)
        return count

    def _check_server(self) -> None:
        """Raise (as a call would) if the server is gone, before using a
        placeholder it made: a poll(2) of this thread's connection, which
        only the server's end closing makes readable between calls."""
        conn = getattr(self._tls, "connection", None)
        if conn is not None and getattr(self._tls, "pid", None) == os.getpid():
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN)
            if not poller.poll(0):
                return
            del self._tls.connection
            conn.close()
        self._callmethod("reserve", (0,))  # a new connection: fails if the server is gone

    def _callmethod(self, methodname: str, args: tuple = (), kwds: dict = {}) -> Any:
        tls = self._tls
        conn = getattr(tls, "connection", None)
        if conn is not None and getattr(tls, "pid", None) not in (None, os.getpid()):
            # Inherited through a bare os.fork(), which, unlike the start of
            # a multiprocessing child, does not reset it: the parent's.
            del tls.connection
            conn.close()  # this process's copy of the descriptor only
            conn = None
        if conn is None:
            self._connect()
            conn = tls.connection
        try:
            _send(conn, (self._id, methodname, args, kwds))
            reply = conn.recv()
        except BaseException as exc:
            # Cut short (KeyboardInterrupt, a lost server): the reply still
            # to come would be read as the next call's. Drop the connection.
            if getattr(tls, "connection", None) is conn:
                del tls.connection
            conn.close()
            if isinstance(exc, (OSError, EOFError)):
                raise _unreachable_error(exc, self._token.address, methodname) from exc
            raise
        return _result(*reply)


class SharedMemoryManager(_stdlib.SharedMemoryManager):
    """A drop-in for :class:`multiprocessing.managers.SharedMemoryManager`
    that hands out ferroshm :class:`~ferroshm.SharedMemory` and
    :class:`~ferroshm.ShareableList` objects: same constructor, ``start()``,
    ``shutdown()``, ``with``, ``get_server()``, ``connect()``, ``address``,
    ``authkey``. The segments belong to the manager (the objects returned are
    untracked) and all are unlinked at its shutdown, or when the process
    that started it dies; ``name=...`` chooses a segment's name; unnamed
    allocations need no round trip to the server (see the module's
    documentation).
    """

    _Server = SharedMemoryServer
    # BaseManager's, for the type checker.
    _state: Any
    _address: Any
    _authkey: bytes
    _serializer: str
    _Client: Callable[..., Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._allocator_proxy: Optional[_AllocatorProxy] = None
        # Whether the server has an allocator (None: not known yet).
        self._ferroshm_server: Optional[bool] = None

    def __del__(self, _debug: Callable[[str], None] = util.debug, _getpid: Callable[[], int] = os.getpid) -> None:
        # The standard library's logs through its module's ``util`` and
        # ``getpid``, which are None when a manager outlives the wiping of
        # module globals at interpreter exit (free-threaded 3.13 finalizes
        # module-level managers that late): "Exception ignored ...
        # AttributeError" on stderr. The same log, bound at definition.
        _debug(f"{self.__class__.__name__}.__del__ by pid {_getpid()}")

    @classmethod
    def _run_server(
        cls,
        registry: Any,
        address: Any,
        authkey: bytes,
        serializer: str,
        writer: Any,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: tuple = (),
    ) -> None:
        # Runs in the server process; the standard library's, plus the
        # owner watch and SIGTERM.
        # bpo-36368: Ctrl-C in the terminal must not kill the server.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # SIGTERM (Process.terminate()) stops it cleanly: segments unlinked.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        if initializer is not None:
            initializer(*initargs)
        server = cls._Server(registry, address, authkey, serializer)
        # The process that started the manager, whatever the start method.
        server.owner_pid = process.parent_process().pid  # type: ignore[union-attr]
        writer.send(server.address)
        writer.close()
        util.info("manager serving at %r", server.address)
        server.serve_forever()

    def connect(self) -> None:
        """Connect to a running server at ``address`` with ``authkey``
        (AuthenticationError if the key is wrong)."""
        self._ferroshm_server = self._probe()
        self._state.value = State.STARTED

    def _request(self, method: str, *args: Any) -> Any:
        """`method` on a connection of its own (the standard library's way),
        or an error that says why not."""
        if self._address is None:
            raise _not_running_error()
        try:
            conn = self._Client(self._address, authkey=self._authkey)
        except (OSError, EOFError) as exc:
            raise _unreachable_error(exc, self._address) from exc
        try:
            return _dispatch(conn, None, method, args)
        finally:
            conn.close()

    def _probe(self) -> bool:
        """Whether the server has an allocator (else it is the standard
        library's)."""
        try:
            self._request("get_methods", Token(_ALLOCATOR_TYPEID, self._address, _ALLOCATOR_ID))
        except RemoteError:  # KeyError: no such object
            return False
        return True

    def _allocator(self) -> Optional[_AllocatorProxy]:
        """The proxy of the server's allocator; None for a standard-library
        server, and on Windows, where sections cannot be created empty and
        sized later: there the caller allocates the standard library's way."""
        if self._state.value == State.SHUTDOWN:
            self._allocator_proxy = None
            raise _shut_down_error()
        if self._ferroshm_server is None:
            # Started here (the server is ours), or never started nor
            # connected (an address was given: ask the server).
            self._ferroshm_server = getattr(self, "_process", None) is not None or self._probe()
        if not self._ferroshm_server or not _USE_POSIX:
            return None
        proxy = self._allocator_proxy
        if proxy is None:
            token = Token(_ALLOCATOR_TYPEID, self._address, _ALLOCATOR_ID)
            # Owned by the server, not counted: no incref or decref requests.
            proxy = _AllocatorProxy(
                token, self._serializer, authkey=self._authkey, exposed=_ALLOCATOR_METHODS, manager_owned=True
            )
            proxy._Client = self._Client
            self._allocator_proxy = proxy
        return proxy

    def _hand_over(self, shm: SharedMemory) -> None:
        """Give `shm`, just created here, to a standard-library server, its
        way (``track_segment``); unlink it if that fails."""
        try:
            self._request("track_segment", shm.name)
        except BaseException:
            shm.close()
            try:
                shm.unlink()
            except OSError:
                pass
            raise

    def SharedMemory(self, size: int, *, name: Optional[str] = None) -> SharedMemory:
        """A new :class:`~ferroshm.SharedMemory` of ``size`` bytes, owned by
        the manager. ``name`` (keyword only, not in the standard library)
        chooses its name: FileExistsError if that exists."""
        allocator = self._allocator()
        if allocator is None:
            shm = SharedMemory(name, create=True, size=size)
            self._hand_over(shm)
            return shm
        if name is None:
            return allocator.allocate(lambda path: _in_placeholder(path, size))
        segment_name = allocator._callmethod("SharedMemory", (size, name))
        return _attach(lambda n: SharedMemory(n, track=False), segment_name)

    def ShareableList(self, sequence: Optional[Iterable[Any]], *, name: Optional[str] = None) -> ShareableList:
        """A new :class:`~ferroshm.ShareableList` of the items of
        ``sequence``, owned by the manager. ``name`` (keyword only, not in the
        standard library) chooses its name: FileExistsError if that exists
        (the server then creates the list)."""
        allocator = self._allocator()
        items = () if sequence is None else tuple(sequence)
        if allocator is None:
            sl = ShareableList(items, name=name)
            self._hand_over(sl.shm)
            return sl
        if name is None:
            return allocator.allocate(
                lambda path: ShareableList._create_in(items, lambda size: _in_placeholder(path, size))
            )
        segment_name = allocator._callmethod("ShareableList", (items, name))
        return _attach(lambda n: ShareableList(name=n, track=False), segment_name)

    # -- NumPy arrays (ferroshm.array), owned by the manager --------------------

    def _array_segment(self, name: Optional[str]) -> Callable[[int], Any]:
        return lambda size: self.SharedMemory(size, name=name)

    def share(self, array: Any, *, name: Optional[str] = None, order: str = "K") -> SharedArray:
        """A copy of ``array`` in a new shared array (a
        :class:`ferroshm.SharedArray`, as :func:`ferroshm.share` makes)
        owned by the manager: its shutdown removes it. ``name`` chooses the
        segment's name (FileExistsError if that exists)."""
        from .array import _share

        return _share(array, order, self._array_segment(name), owner=False)

    def empty(self, shape: Any, dtype: Any = float, *, name: Optional[str] = None, order: str = "C") -> SharedArray:
        """A new shared array of ``shape`` and ``dtype`` (zero-filled, as
        :func:`ferroshm.empty` makes) owned by the manager: its shutdown
        removes it."""
        from .array import _create

        return _create(shape, dtype, order, self._array_segment(name), owner=False)

    def zeros(self, shape: Any, dtype: Any = float, *, name: Optional[str] = None, order: str = "C") -> SharedArray:
        """A new shared array of zeros owned by the manager: as :meth:`empty`."""
        from .array import _create

        return _create(shape, dtype, order, self._array_segment(name), owner=False)
