"""Drop-in replacements for :class:`multiprocessing.managers.SharedMemoryManager`
and :class:`multiprocessing.managers.SharedMemoryServer` that hand out
ferroshm objects.

They are the standard library's classes (subclasses of them), on the standard
library's machinery: the server is a :class:`multiprocessing.managers.Server`,
and allocation is a method call on one object of that server, made through a
:class:`~multiprocessing.managers.BaseProxy`, which keeps one connection per
process and thread (a child process opens its own). What differs, and why:

* **The server creates, owns and tracks the segments.** The standard library
  creates each segment in the process that asks for it, registered with that
  process's resource tracker, and only tells the server its name: when that
  process belongs to another process tree (a client that connected with
  ``address`` and ``authkey``), its tracker unlinks the segment as soon as the
  client exits, while the manager still lists it (gh-110468). Here every
  segment is registered with the tracker the server shares with the process
  that started the manager, before it exists: an unnamed one is created,
  untracked, by the caller under a name the server reserved and registered
  beforehand (in batches), and the server adopts it in the call that returns
  it; a named one (or a list of a name) is created by the server, and the
  caller attaches to it untracked. A segment
  lives until the manager shuts down (or someone unlinks it), whoever asked
  for it and whenever they exit; a caller killed in the middle of a call
  leaves nothing behind that the server does not own.
* **One round trip per allocation**, on a connection kept open, instead of a
  new connection (with its authentication and its server thread) per call.
* **Shutdown always unlinks everything**, also segments someone else already
  unlinked (the standard library's shutdown stops with FileNotFoundError at
  the first of those and leaks the rest).
* **The server does not outlive its owner.** It watches the process that
  started it (a pidfd on Linux, polling elsewhere); when that process dies,
  even by SIGKILL, the server unlinks every segment it owns and exits. It
  does the same on SIGTERM. The standard library's server lives on forever
  after a SIGKILL of its owner, and its segments leak.
* **Named allocation:** ``smm.SharedMemory(size, name=...)`` and
  ``smm.ShareableList(sequence, name=...)`` (gh-101014).
* **Interrupt-safe calls.** A call cut short (KeyboardInterrupt, say) drops
  its connection, whose late reply would otherwise answer the next call.
* **Clear errors.** Using a manager that was never started raises
  ValueError, one that has shut down FileNotFoundError, one whose server is
  gone an OSError (the standard library's types), with messages that say
  what happened and what to do.

It interoperates both ways: a standard-library client can use this server
(through ``track_segment``), and this client can ``connect()`` to a
standard-library server (it then allocates the standard library's way).
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
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from . import _native, _tracker
from .shared_memory import _SHM_NAME_PREFIX, ShareableList, SharedMemory

__all__ = ["SharedMemoryManager", "SharedMemoryServer"]

# Where a server keeps its allocator in its table of shared objects: a fixed
# id, so that clients reach it without a 'create' request (the table's own
# ids are hexadecimal, so this one cannot clash with them).
_ALLOCATOR_ID = "ferroshm-allocator"
_ALLOCATOR_TYPEID = "SharedMemoryAllocator"
_ALLOCATOR_METHODS = ("SharedMemory", "ShareableList", "reserve", "adopt")

# Names a server reserves for a client at a time (see _Segments.reserve):
# one tracker write and one reply carry them all. 16 lines fit in PIPE_BUF.
_RESERVE_BATCH = 16
# Reserved names have 16 hex digits, not CPython's 8: a server unlinks the
# reserved names never adopted at its shutdown, so one must not be taken by
# anybody else by chance.
_RESERVED_HEX_DIGITS = 16


# -- errors -------------------------------------------------------------------


def _not_running_error() -> ValueError:
    return ValueError(
        "SharedMemoryManager is not running: call start() first (or use "
        "'with SharedMemoryManager() as smm:'), or connect() to a running manager"
    )


def _shut_down_error() -> FileNotFoundError:
    return FileNotFoundError(
        errno.ENOENT,
        "SharedMemoryManager has shut down and its segments are gone; "
        "create and start a new SharedMemoryManager to allocate again",
    )


def _shutting_down_error() -> FileNotFoundError:
    return FileNotFoundError(
        errno.ENOENT,
        "the SharedMemoryManager is shutting down and allocates no more "
        "segments; start a new SharedMemoryManager",
    )


def _unreachable_error(exc: Exception, address: Any, during: Optional[str] = None) -> OSError:
    """An OSError of `exc`'s type (ConnectionResetError for a connection that
    ended), saying that the server at `address` is out of reach."""
    if not isinstance(exc, OSError):  # EOFError: the server closed the connection
        exc = ConnectionResetError(errno.ECONNRESET, "the server closed the connection")
    what = exc.strerror or str(exc)
    if during is None:
        message = f"{what}: no SharedMemoryManager server at {address!r}"
    else:
        message = (
            f"{what}: lost the SharedMemoryManager server at {address!r} during "
            f"a {during} request, which may or may not have been carried out"
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
    kind, result = conn.recv()
    if kind == "#RETURN":
        return result
    raise convert_to_error(kind, result)


# -- the server ---------------------------------------------------------------


def _destroy(path: str) -> None:
    """Unlink the segment at `path`, which the server registered with the
    resource tracker, and drop that registration."""
    try:
        _native.unlink(path)
    except FileNotFoundError:
        # Someone unlinked it already, most likely through a handle this
        # manager gave out (those are untracked): the server's registration
        # is still there.
        pass
    except OSError as exc:
        # Still there: leave the registration, so that the tracker tries too.
        util.info("SharedMemoryServer could not unlink %r: %s", path, exc)
        return
    _tracker.send("UNREGISTER", path)


class _Segments:
    """The segments a server owns, in the order it took them, each
    registered with the resource tracker.

    It is the server's ``shared_memory_context``, with the methods of the
    standard library's (``register_segment``, ``destroy_segment``,
    ``unlink``, ``segment_names``), which the inherited server requests and
    types registered with ``_shared_memory_proxy`` use. Segments are taken
    inside :meth:`taking`, so that :meth:`unlink` waits for those being
    created and none slips past a shutdown.
    """

    def __init__(self, name: str) -> None:
        self.shared_memory_context_name = name
        self._paths: Dict[str, None] = {}  # OS names, an ordered set
        # Names handed to clients to create segments under (see reserve).
        self._reserved: Dict[str, None] = {}
        self._cond = threading.Condition()
        self._taking = 0
        self._closed = False

    @contextmanager
    def taking(self) -> Iterator[Callable[[str], None]]:
        """Yield a function that records an OS name as owned; refuse
        (FileNotFoundError) once :meth:`unlink` has begun."""
        with self._cond:
            if self._closed:
                raise _shutting_down_error()
            self._taking += 1
        taken: List[str] = []
        try:
            yield taken.append
        finally:
            with self._cond:
                self._taking -= 1
                self._paths.update(dict.fromkeys(taken))
                self._cond.notify_all()

    @property
    def segment_names(self) -> List[str]:
        with self._cond:
            return [_native.reported_name(path) for path in self._paths]

    def register_segment(self, segment_name: str) -> None:
        """Take ownership of a segment someone else created (a client of the
        standard library's, with ``track_segment``)."""
        path = _native.os_name(segment_name)
        _tracker.check_trackable(path)
        with self.taking() as take:
            _tracker.send("REGISTER", path)
            take(path)

    def reserve(self, count: int) -> List[str]:
        """`count` fresh names for a client to create segments under itself,
        owned by this server from now on: registered with the tracker (in one
        write) and unlinked at shutdown whether or not a segment was ever
        created under them. So a client killed between creating a segment
        and :meth:`adopt` leaves nothing behind. Reported names."""
        paths = [
            _native.random_name(_SHM_NAME_PREFIX, len(_SHM_NAME_PREFIX) + _RESERVED_HEX_DIGITS)
            for _ in range(max(0, min(count, _RESERVE_BATCH)))
        ]
        with self.taking():
            _tracker.send_all("REGISTER", paths)
            with self._cond:
                self._reserved.update(dict.fromkeys(paths))
        return [_native.reported_name(path) for path in paths]

    def adopt(self, segment_name: str) -> None:
        """A client created a segment under a reserved name: it is one of
        this server's segments now (listed, destroyable). Refused once
        :meth:`unlink` has begun (the client then removes it itself)."""
        path = _native.os_name(segment_name)
        with self._cond:
            if self._closed:
                raise _shutting_down_error()
            if path not in self._reserved:
                raise ValueError(f"{segment_name!r} is not a name this SharedMemoryManager reserved")
            del self._reserved[path]
            self._paths[path] = None

    def destroy_segment(self, segment_name: str) -> None:
        """Unlink one segment and stop tracking it (ValueError if unknown,
        as in the standard library)."""
        path = _native.os_name(segment_name)
        with self._cond:
            if path not in self._paths:
                raise ValueError(f"{segment_name!r} is not a segment of this SharedMemoryManager")
            del self._paths[path]
        _destroy(path)

    def unlink(self) -> None:
        """Unlink every segment; from now on no segment can be added."""
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: self._taking == 0)
            paths = [*self._paths, *self._reserved]
            self._paths.clear()
            self._reserved.clear()
        for path in paths:
            _destroy(path)


class _Allocator:
    """The object clients call, one per server: it creates segments that the
    server owns (registered with its resource tracker) and returns their
    names. Errors (FileExistsError for a name in use, ENOSPC, the standard
    library's argument errors) go back to the caller as they are."""

    def __init__(self, segments: _Segments) -> None:
        self._segments = segments

    def SharedMemory(self, size: int, name: Optional[str]) -> str:
        with self._segments.taking() as take:
            shm = SharedMemory(name, create=True, size=size)
            shm.close()
            take(shm._name)
        return shm.name

    def ShareableList(self, items: tuple, name: Optional[str]) -> str:
        with self._segments.taking() as take:
            sl = ShareableList(items, name=name)
            sl.shm.close()
            take(sl.shm._name)
        return sl.shm.name

    def reserve(self, count: int) -> List[str]:
        return self._segments.reserve(count)

    def adopt(self, segment_name: str, refill: int) -> List[str]:
        """Adopt the client's new segment; reply with `refill` more
        reserved names (0: the client has enough)."""
        self._segments.adopt(segment_name)
        return self._segments.reserve(refill) if refill else []


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
    """The server process of a :class:`SharedMemoryManager`; a drop-in for
    :class:`multiprocessing.managers.SharedMemoryServer`, with the same
    requests (``track_segment``, ``release_segment``, ``list_segments``,
    ``shutdown``, ...), and an allocator object that clients call to create
    segments here. Differences, and why:

    * Every segment it owns is registered with its resource tracker (the one
      of the process that started the manager), and with no other, so that
      segments belong to the manager, not to the process that asked for them
      (gh-110468).
    * Stopping, for whatever reason, waits for the allocations in progress,
      then unlinks every segment, also those someone else unlinked first.
    * Started by a manager, it stops (unlinking all its segments) when the
      process that started it dies, even by SIGKILL, or when it gets SIGTERM;
      it ignores SIGINT like the standard library's (bpo-36368).
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
        self.shared_memory_context = _Segments(self.shared_memory_context.shared_memory_context_name)
        allocator = _Allocator(self.shared_memory_context)
        self.id_to_obj[_ALLOCATOR_ID] = (allocator, set(_ALLOCATOR_METHODS), None)

    def serve_forever(self) -> None:
        """Serve until shut down (or the owner dies), then unlink every
        segment and exit (with SystemExit, like the standard library's)."""
        self.stop_event = threading.Event()
        process.current_process()._manager_server = self  # type: ignore[attr-defined]
        try:
            # The threads are started inside the try: Thread.start() waits
            # for the new thread to run, and clients may be served (and own
            # segments) while this thread still waits in the second start();
            # a SIGTERM there must unlink them too.
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
    (one per process and thread, reset after a fork), with calls that cannot
    leave a reply behind."""

    def _connect(self) -> None:
        try:
            BaseProxy._connect(self)  # type: ignore[attr-defined]
        except (OSError, EOFError) as exc:
            raise _unreachable_error(exc, self._token.address) from exc
        self._tls.pid = os.getpid()

    def reserved_names(self) -> List[str]:
        """The names the server reserved for this process and thread (a
        child process, even one of a bare os.fork(), starts with none: the
        parent's are the parent's to use)."""
        tls = self._tls
        if getattr(tls, "pool_pid", None) != os.getpid():
            tls.pool = []
            tls.pool_pid = os.getpid()
        return tls.pool

    def create(self, create: Callable[[str], Any], shm_of: Callable[[Any], SharedMemory]) -> Any:
        """`create(name)` a segment (or list) here under a name the server
        reserved, then have the server adopt it: one round trip, which also
        brings more names when they run low. If the server refuses or cannot
        be reached, the segment is removed again and the error raised."""
        pool = self.reserved_names()
        while True:
            if not pool:
                pool.extend(self._callmethod("reserve", (_RESERVE_BATCH,)))
            name = pool.pop()
            try:
                obj = create(name)
            except FileExistsError:
                continue  # not ours after all (the server still owns the name)
            break
        try:
            pool.extend(self._callmethod("adopt", (name, 0 if pool else _RESERVE_BATCH)))
        except BaseException:
            shm = shm_of(obj)
            shm.close()
            try:
                shm.unlink()
            except OSError:
                pass
            raise
        return obj

    def _callmethod(self, methodname: str, args: tuple = (), kwds: dict = {}) -> Any:
        tls = self._tls
        conn = getattr(tls, "connection", None)
        if conn is not None and getattr(tls, "pid", None) not in (None, os.getpid()):
            # Inherited through a bare os.fork(), which, unlike the start
            # of a multiprocessing child, does not reset it: the parent's.
            del tls.connection
            conn.close()  # this process's copy of the descriptor only
            conn = None
        if conn is None:
            self._connect()
            conn = tls.connection
        try:
            _send(conn, (self._id, methodname, args, kwds))
            kind, result = conn.recv()
        except BaseException as exc:
            # Cut short (KeyboardInterrupt, a lost server): the reply still
            # to come would be read as the next call's. Drop the connection.
            if getattr(tls, "connection", None) is conn:
                del tls.connection
            conn.close()
            if isinstance(exc, (OSError, EOFError)):
                raise _unreachable_error(exc, self._token.address, methodname) from exc
            raise
        if kind == "#RETURN":
            return result
        raise convert_to_error(kind, result)


class SharedMemoryManager(_stdlib.SharedMemoryManager):
    """A drop-in for :class:`multiprocessing.managers.SharedMemoryManager`
    that hands out ferroshm :class:`~ferroshm.SharedMemory` and
    :class:`~ferroshm.ShareableList` objects.

    Same constructor, ``start()``, ``shutdown()``, ``with``, ``get_server()``,
    ``connect()``, ``address`` and ``authkey``. Differences, and why:

    * The server creates the segments, and they belong to the manager: all
      of them are unlinked at its shutdown, whichever process asked for them
      and whether or not it still runs (the standard library's vanish when a
      client from another process tree exits, gh-110468). The objects
      returned are untracked, so closing or losing them, or their process
      exiting, never unlinks anything.
    * If the process that started the manager dies, even by SIGKILL, the
      server unlinks every segment and exits within moments (the standard
      library's server lives on and its segments leak).
    * ``SharedMemory(size, name=...)`` and ``ShareableList(sequence, name=...)``
      create segments with a chosen name (gh-101014).
    * An allocation is one request and reply on a connection each process
      and thread keeps, instead of a new connection per call: many times
      faster.
    * Before ``start()`` the calls raise ValueError, after ``shutdown()``
      FileNotFoundError, as in the standard library, but with messages that
      say what to do.
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

    def _dial(self) -> Any:
        """A new connection to the server, or an error that says why not."""
        if self._address is None:
            raise _not_running_error()
        try:
            return self._Client(self._address, authkey=self._authkey)
        except (OSError, EOFError) as exc:
            raise _unreachable_error(exc, self._address) from exc

    def _probe(self) -> bool:
        """Whether the server has an allocator (else it is the standard
        library's)."""
        conn = self._dial()
        try:
            _dispatch(conn, None, "get_methods", (Token(_ALLOCATOR_TYPEID, self._address, _ALLOCATOR_ID),))
        except RemoteError:  # KeyError: no such object
            return False
        finally:
            conn.close()
        return True

    def _allocator(self) -> Optional[_AllocatorProxy]:
        """The proxy of the server's allocator; None for a standard-library
        server."""
        if self._state.value == State.SHUTDOWN:
            self._allocator_proxy = None
            raise _shut_down_error()
        if self._ferroshm_server is None:
            # Started here (the server is ours), or never started nor
            # connected (an address was given: ask the server).
            self._ferroshm_server = getattr(self, "_process", None) is not None or self._probe()
        if not self._ferroshm_server:
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
            conn = self._dial()
            try:
                _dispatch(conn, None, "track_segment", (shm.name,))
            finally:
                conn.close()
        except BaseException:
            shm.close()
            try:
                shm.unlink()
            except OSError:
                pass
            raise

    def SharedMemory(self, size: int, *, name: Optional[str] = None) -> SharedMemory:
        """Return a new :class:`~ferroshm.SharedMemory` of ``size`` bytes,
        owned by the manager and unlinked at its shutdown.

        ``name`` (keyword only, not in the standard library) chooses the
        segment's name; FileExistsError if it exists, and the server creates
        the segment, which the object returned attaches to untracked. Without
        a name, this process creates it, untracked, under a name the server
        reserved for it, and the server adopts it (one round trip)."""
        allocator = self._allocator()
        if allocator is None:
            shm = SharedMemory(name, create=True, size=size)
            self._hand_over(shm)
            return shm
        if name is None:
            return allocator.create(lambda n: SharedMemory(n, create=True, size=size, track=False), lambda shm: shm)
        segment_name = allocator._callmethod("SharedMemory", (size, name))
        return _attach(lambda n: SharedMemory(n, track=False), segment_name)

    def ShareableList(self, sequence: Optional[Iterable[Any]], *, name: Optional[str] = None) -> ShareableList:
        """Return a new :class:`~ferroshm.ShareableList` holding the items of
        ``sequence``, owned by the manager and unlinked at its shutdown.

        ``name`` (keyword only, not in the standard library) chooses the
        segment's name; FileExistsError if it exists. The items are sent to
        the server, which creates the list; the object returned is attached
        to it untracked."""
        allocator = self._allocator()
        items = () if sequence is None else tuple(sequence)
        if allocator is None:
            sl = ShareableList(items, name=name)
            self._hand_over(sl.shm)
            return sl
        if name is None:
            return allocator.create(lambda n: ShareableList(items, name=n, track=False), lambda sl: sl.shm)
        segment_name = allocator._callmethod("ShareableList", (items, name))
        return _attach(lambda n: ShareableList(name=n, track=False), segment_name)
