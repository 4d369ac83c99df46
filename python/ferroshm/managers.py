"""Drop-in replacements for :class:`multiprocessing.managers.SharedMemoryManager`
and :class:`multiprocessing.managers.SharedMemoryServer` that hand out
ferroshm objects.

How this manager differs from the standard library's, and why:

* **The segments belong to the manager's server.** The standard library
  creates each segment in the process that asks for it, registered with that
  process's resource tracker, and only tells the server its name: when that
  process belongs to another process tree (a client that connected with
  ``address`` and ``authkey``), its tracker unlinks the segment as soon as the
  client exits, while the manager still lists it (gh-110468). Here the only
  resource-tracker registration of a segment is the server's, made with the
  tracker it shares with the process that started the manager; the objects
  handed out are untracked. A segment lives until the manager shuts down (or
  someone unlinks it), whoever asked for it and whenever they exit.
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
* **No new connection per call.** The standard library opens, authenticates
  and closes a connection (and the server starts a thread) for every
  allocation. Here each process and thread keeps one authenticated
  connection to the server (a forked child opens its own: it never uses its
  parent's).
* **Clear errors.** Using a manager that was never started raises
  ValueError, and one that has shut down FileNotFoundError (the standard
  library's types), with messages that say what to do.

It interoperates both ways: a standard-library client can use this server
(through ``track_segment``), and this client can ``connect()`` to a
standard-library server (it then allocates the standard library's way).

Who creates a segment. ``smm.SharedMemory(size)`` over the usual Unix-socket
connection creates the segment in the calling process (untracked there), and
hands it to the server with a one-way message on the connection before
returning it; the server takes ownership (and registers it) when it reads
the message, which costs the caller one write. The server stops reading
before it unlinks everything, and processes whatever was sent before that
(messages are read even after their sender has exited); a message sent after
fails to send, and the caller unlinks the segment itself and gets the
error. Only a caller killed in the microseconds between creating and sending
can leave a segment to nobody. Named segments, lists, and any allocation
over a TCP connection (where a failed send is not reported at once) are
created by the server, in one request and reply.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pickle
import secrets
import select
import signal
import socket
import struct
import sys
import termios
import threading
import time
from multiprocessing import process, resource_tracker, util
from multiprocessing.context import ProcessError
from multiprocessing.managers import BaseManager, RemoteError, Server
from multiprocessing.managers import State, dispatch  # type: ignore[attr-defined]
from traceback import format_exc
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

# Where segments appear as files (Linux); hand-over orphans are found there.
_SEGMENT_DIR = "/dev/shm"

from . import _native
from . import shared_memory as _shared_memory
from .shared_memory import ShareableList, SharedMemory

__all__ = ["SharedMemoryManager", "SharedMemoryServer"]

# -- the connection protocol --------------------------------------------------
#
# After the standard handshake (authentication, then one 'open_channel'
# request answered the standard way), a connection carries frames: a 4-byte
# little-endian length, then a payload whose first byte says what it is:
#   b"C" + pickle of (operation, arguments): a call, answered by a frame
#        holding the pickle of (True, result) or (False, exception);
#   b"A" + ASCII name (with its leading '/'): "own this segment", unanswered.
# Only calls are answered, so a client reads exactly one frame per call.

_HEADER = struct.Struct("<I")
_READ_SIZE = 1 << 16
# Protocol 4 is read by every Python the package supports (3.9+), so a client
# and a server may run different Python versions.
_PICKLE_PROTOCOL = 4
_CALL = b"C"
_ADOPT = b"A"


def _write_frame(fd: int, payload: bytes) -> None:
    data = _HEADER.pack(len(payload)) + payload
    sent = os.write(fd, data)
    if sent < len(data):
        view = memoryview(data)
        while sent < len(data):
            sent += os.write(fd, view[sent:])


def _read_frame(fd: int) -> bytes:
    """Read one frame; nothing may follow it (a client's reply)."""
    data = os.read(fd, _READ_SIZE)
    if len(data) >= _HEADER.size:
        (size,) = _HEADER.unpack_from(data)
        if len(data) == _HEADER.size + size:
            return data[_HEADER.size :]
    if not data:
        raise EOFError("the other end closed the connection")
    buf = bytearray(data)
    while len(buf) < _HEADER.size:
        more = os.read(fd, _HEADER.size - len(buf))
        if not more:
            raise EOFError("the other end closed the connection")
        buf += more
    (size,) = _HEADER.unpack_from(buf)
    end = _HEADER.size + size
    while len(buf) < end:
        more = os.read(fd, min(end - len(buf), _READ_SIZE))
        if not more:
            raise EOFError("the other end closed the connection")
        buf += more
    if len(buf) != end:
        raise OSError(errno.EPROTO, "unexpected data on a SharedMemoryManager connection")
    return bytes(buf[_HEADER.size :])


_HANGUP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


def _poll_hangup(fd: int) -> bool:
    """Whether the peer of socket `fd` has hung up (without waiting)."""
    poller = select.poll()
    poller.register(fd, _HANGUP)
    return any(events & _HANGUP for _, events in poller.poll(0))


class _ChannelLost(Exception):
    """The connection to the server broke during a request."""

    def __init__(self, delivered: bool) -> None:
        super().__init__(delivered)
        self.delivered = delivered


class _Channel:
    """One process's (one thread's) authenticated connection to a server."""

    __slots__ = ("_conn", "_fd", "pid", "handover_prefix")
    stdlib_server = False

    def __init__(self, conn: Any, handover_prefix: Optional[str]) -> None:
        self._conn = conn
        self._fd = conn.fileno()
        self.pid = os.getpid()
        # Segments created here may be handed over with a one-way message
        # when the connection is a Unix socket (where a send to a closed
        # server fails). They are named with this prefix, which is the
        # server's: whatever a caller killed before the hand-over leaves
        # behind, the server finds by name and unlinks when it stops.
        self.handover_prefix = handover_prefix

    def call(self, op: str, args: tuple) -> Any:
        request = _CALL + pickle.dumps((op, args), _PICKLE_PROTOCOL)
        delivered = False
        try:
            _write_frame(self._fd, request)
            delivered = True
            reply = _read_frame(self._fd)
        except (OSError, EOFError) as exc:
            self.close()
            raise _ChannelLost(delivered) from exc
        except BaseException:
            # Interrupted (KeyboardInterrupt, say) halfway through an
            # exchange: the reply would be read as the answer to the next
            # call, so this connection cannot be used any more.
            self.close()
            raise
        ok, value = pickle.loads(reply)
        if ok:
            return value
        raise value

    def adopt(self, path: str) -> None:
        """Hand the segment at `path` over to the server."""
        try:
            # A one-way message to a server that has gone can still be
            # accepted by the socket: look for the hang-up first.
            if _poll_hangup(self._fd):
                raise ConnectionResetError(errno.ECONNRESET, "the SharedMemoryManager server hung up")
            _write_frame(self._fd, _ADOPT + path.encode("ascii"))
        except OSError as exc:
            self.close()
            raise _ChannelLost(False) from exc
        except BaseException:
            self.close()  # perhaps half a frame went out
            raise

    def close(self) -> None:
        # In a forked child this closes the child's copy of the descriptor
        # only; the parent's connection is untouched.
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @property
    def closed(self) -> bool:
        return self._conn is None


class _StdlibServerChannel:
    """Stands in for a channel to a standard-library SharedMemoryServer,
    which has no ``open_channel``: its protocol, its way. Segments are
    created here, registered with this process's resource tracker, and
    handed over with ``track_segment`` on a connection of their own."""

    stdlib_server = True
    handover_prefix = None
    closed = False

    def __init__(self, client: Callable[..., Any], address: Any, authkey: bytes) -> None:
        self._client = client
        self._address = address
        self._authkey = authkey
        self.pid = os.getpid()

    def _hand_over(self, shm: SharedMemory) -> None:
        try:
            conn = self._client(self._address, authkey=self._authkey)
            try:
                dispatch(conn, None, "track_segment", (shm.name,))
            finally:
                conn.close()
        except BaseException:
            shm.close()
            try:
                shm.unlink()
            except OSError:
                pass
            raise

    def shared_memory(self, size: int, name: Optional[str]) -> SharedMemory:
        shm = SharedMemory(name, create=True, size=size)
        self._hand_over(shm)
        return shm

    def shareable_list(self, items: tuple, name: Optional[str]) -> ShareableList:
        sl = ShareableList(items, name=name)
        self._hand_over(sl.shm)
        return sl

    def close(self) -> None:
        pass


# -- resource tracker ---------------------------------------------------------

# ferroshm's own sender: one pipe write, and it keeps its record of what this
# process registered right.
_tracker_send = _shared_memory._tracker_send


def _register_all(paths: List[str]) -> None:
    """REGISTER every path with this process's resource tracker: with as few
    pipe writes as can be (each write wakes the tracker), else one by one."""
    direct = _shared_memory._direct_tracker()
    if len(paths) > 1 and direct is not None:
        tracker, lock = direct
        with lock:
            fd = getattr(tracker, "_fd", None)
            if fd is not None:
                batch = b""
                try:
                    for path in paths:
                        line = f"REGISTER:{path}:shared_memory\n".encode("ascii")
                        # Writes of at most PIPE_BUF bytes are not interleaved
                        # with other processes' messages.
                        if len(batch) + len(line) > select.PIPE_BUF:
                            _write_all(fd, batch)
                            batch = b""
                        batch += line
                    _write_all(fd, batch)
                    return
                except OSError:
                    pass  # the tracker is gone: let the standard library relaunch it
    for path in paths:
        _tracker_send("REGISTER", path)


def _write_all(fd: int, data: bytes) -> None:
    if data and os.write(fd, data) != len(data):
        raise OSError(errno.EIO, "short write to the resource tracker")


def _unlink_orphans(prefix: str) -> None:
    """Unlink the segments named with a server's hand-over prefix that are
    left: those whose creator died before handing them over."""
    if not os.path.isdir(_SEGMENT_DIR):
        return
    for entry in os.listdir(_SEGMENT_DIR):
        if entry.startswith(prefix):
            try:
                _native.unlink("/" + entry)
            except OSError:
                pass


def _attach_list(name: str) -> ShareableList:
    """Attach to a list the server created, leaving the resource trackers as
    they were: the server's registration is the only one."""
    return ShareableList(name=name, track=False)


def _trackable(path: str) -> bool:
    # What the resource tracker's line protocol can carry (gh-98896).
    return path.isascii() and ":" not in path and "\n" not in path


def _path_to_name(path: str) -> str:
    # What SharedMemory.name reports for the segment at `path`.
    return path[1:] if path.startswith("/") else path


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
    _tracker_send("UNREGISTER", path)


def _shutting_down_error() -> OSError:
    return FileNotFoundError(
        errno.ENOENT,
        "the SharedMemoryManager is shutting down and allocates no more "
        "segments; start a new SharedMemoryManager",
    )


class _SegmentRegistry:
    """The segments a server owns, in the order it took them.

    Also the server's ``shared_memory_context`` with the standard library's
    methods (``register_segment``, ``destroy_segment``, ``unlink``,
    ``segment_names``), for types registered with ``_shared_memory_proxy``.
    Taking a segment is bracketed by :meth:`begin_take`/:meth:`end_take` so
    that :meth:`unlink` waits for those in progress and none slips past a
    shutdown.
    """

    def __init__(self, name: str) -> None:
        self.shared_memory_context_name = name
        self._paths: Dict[str, None] = {}
        self._cond = threading.Condition()
        self._taking = 0
        self._closed = False

    def begin_take(self) -> None:
        with self._cond:
            if self._closed:
                raise _shutting_down_error()
            self._taking += 1

    def end_take(self, path: Optional[str]) -> None:
        with self._cond:
            self._taking -= 1
            if path is not None:
                self._paths[path] = None
            self._cond.notify_all()

    @property
    def segment_names(self) -> List[str]:
        with self._cond:
            return [_path_to_name(p) for p in self._paths]

    def register_segment(self, segment_name: str) -> None:
        """Take ownership of a segment someone else created."""
        self.adopt("/" + segment_name)

    def adopt(self, path: str) -> None:
        """Own (and register) the segment at `path`; unlink it at once if the
        server is shutting down."""
        self.adopt_all([path])

    def adopt_all(self, paths: List[str]) -> None:
        try:
            self.begin_take()
        except OSError:
            # They must not outlive the manager.
            for path in paths:
                try:
                    _native.unlink(path)
                except OSError:
                    pass
            raise
        taken: List[str] = []
        try:
            good = [p for p in paths if _trackable(p)]
            if len(good) < len(paths):
                # Not from a ferroshm client: refused, left to whoever made it.
                util.info("SharedMemoryServer: refusing untrackable names %r", sorted(set(paths) - set(good)))
            _register_all(good)
            taken = good
        finally:
            with self._cond:
                self._taking -= 1
                for path in taken:
                    self._paths[path] = None
                self._cond.notify_all()

    def destroy_segment(self, segment_name: str) -> None:
        """Unlink one segment and stop tracking it (ValueError if unknown,
        as in the standard library)."""
        path = "/" + segment_name
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
            paths = list(self._paths)
            self._paths.clear()
        for path in paths:
            _destroy(path)

    # The standard library's tracker has these too.
    def __getstate__(self) -> tuple:
        return (self.shared_memory_context_name, self.segment_names)

    def __setstate__(self, state: tuple) -> None:
        name, names = state
        self.__init__(name)  # type: ignore[misc]
        self._paths = {"/" + n: None for n in names}


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


# How long stopping waits for connections to finish what their clients sent.
_DRAIN_TIMEOUT = 30.0
# How long a channel lets hand-overs pile up before reading them, when they
# come in a stream.
_BATCH_INTERVAL = 0.001


class SharedMemoryServer(Server):
    """The server process of a :class:`SharedMemoryManager`; a drop-in for
    :class:`multiprocessing.managers.SharedMemoryServer`.

    It keeps the standard library's requests (``track_segment``,
    ``release_segment``, ``list_segments``, ``shutdown``, ...) and adds
    ``open_channel``, which turns a connection into a persistent allocation
    channel. Differences, and why:

    * Every segment it owns is registered with its resource tracker (its
      parent's), and with no other, so that segments belong to the manager,
      not to the process that asked for them (gh-110468).
    * Stopping, for whatever reason, first processes everything clients sent
      before, then unlinks every segment, also those someone else unlinked
      first, so none is left over.
    * Started by a manager, it stops (unlinking all its segments) when the
      process that started it dies, even by SIGKILL, or when it gets SIGTERM;
      it ignores SIGINT like the standard library's (bpo-36368).
    """

    public = Server.public + ["track_segment", "release_segment", "list_segments", "open_channel"]
    # Server's, for the type checker.
    registry: Dict[str, Any]
    stop_event: threading.Event

    # The pid of the process that started this server, watched while it
    # serves (set by SharedMemoryManager; None: nobody is watched).
    _owner_pid: Optional[int] = None
    # Whether SIGTERM stops this server (only in a manager's server process).
    _handles_sigterm = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Server.__init__(self, *args, **kwargs)
        address = self.address
        # The address of a Linux abstract-namespace socket can be bytes.
        if isinstance(address, bytes):
            address = os.fsdecode(address)
        self.shared_memory_context = _SegmentRegistry(f"shm_{address}_{os.getpid()}")
        # The name prefix of segments clients create and hand over.
        self._handover_prefix = f"psm_{secrets.token_hex(4)}_"
        # Open channels, by id.
        self._channels: Dict[int, _ServedChannel] = {}
        self._channels_cond = threading.Condition()
        self._channels_closed = False
        util.debug(f"SharedMemoryServer started by pid {os.getpid()}")

    def serve_forever(self) -> None:
        """Serve until shut down, then unlink every segment and exit (with
        SystemExit, like the standard library's server)."""
        self.stop_event = threading.Event()
        process.current_process()._manager_server = self  # type: ignore[attr-defined]
        threading.Thread(target=self.accepter, name="SharedMemoryServer-accepter", daemon=True).start()
        if self._owner_pid is not None:
            threading.Thread(target=self._watch_owner, name="SharedMemoryServer-owner-watch", daemon=True).start()
        try:
            while not self.stop_event.is_set():
                self.stop_event.wait(1)
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            if self._handles_sigterm:
                # A second SIGTERM must not cut the cleanup short.
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self._release_all()
            sys.exit(0)

    def _release_all(self) -> None:
        """Take what clients sent, then unlink every segment, and whatever a
        client died before handing over."""
        self._close_channels()
        self.shared_memory_context.unlink()
        _unlink_orphans(self._handover_prefix)

    def _close_channels(self) -> None:
        # No new channels; channels stop taking messages (a client's next
        # send fails) and end once they have handled what was sent before.
        with self._channels_cond:
            self._channels_closed = True
            channels = list(self._channels.values())
        for channel in channels:
            try:
                channel.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        with self._channels_cond:
            self._channels_cond.wait_for(lambda: not self._channels, timeout=_DRAIN_TIMEOUT)

    def _sync_channels(self) -> None:
        """Wait until every channel has handled what it had been sent when
        this was called: what a request on another connection must see."""
        cond = self._channels_cond
        with cond:
            targets = [(ch, ch.received + _unread(ch.fd)) for ch in self._channels.values()]
            cond.wait_for(
                lambda: all(not ch.open or ch.handled >= target for ch, target in targets),
                timeout=_DRAIN_TIMEOUT,
            )

    def _watch_owner(self) -> None:
        owner = self._owner_pid
        assert owner is not None
        _wait_for_exit(owner)
        util.info("SharedMemoryServer: owner process %d is gone; unlinking all segments", owner)
        self._release_all()
        self.stop_event.set()

    def create(self, c: Any, typeid: str, /, *args: Any, **kwargs: Any) -> Any:
        """Create a new distributed-shared object (not backed by a shared
        memory block) and return its id to be used in a Proxy Object."""
        # As in the standard library: only callables marked
        # _shared_memory_proxy get the segment registry.
        if hasattr(self.registry[typeid][-1], "_shared_memory_proxy"):
            kwargs["shared_memory_context"] = self.shared_memory_context
        return Server.create(self, c, typeid, *args, **kwargs)

    def shutdown(self, c: Any) -> None:
        """Unlink every segment, then stop the server."""
        self._release_all()
        return Server.shutdown(self, c)

    def track_segment(self, c: Any, segment_name: str) -> None:
        """Take ownership of a segment the client created: it is unlinked
        with the others at shutdown."""
        self.shared_memory_context.register_segment(segment_name)

    def release_segment(self, c: Any, segment_name: str) -> None:
        """Unlink one segment and stop tracking it."""
        self._sync_channels()
        self.shared_memory_context.destroy_segment(segment_name)

    def list_segments(self, c: Any) -> List[str]:
        """Names of the segments the server owns (without leading '/'),
        including every one handed over before this request."""
        self._sync_channels()
        return self.shared_memory_context.segment_names

    def open_channel(self, c: Any) -> None:
        """Serve this connection as an allocation channel until it closes.

        Answers the standard way once, with the identity of the server's
        resource tracker and whether segments may be handed over by one-way
        messages, then handles frames until end of file."""
        with self._channels_cond:
            if self._channels_closed:
                c.send(("#ERROR", _shutting_down_error()))
                raise SystemExit
            channel = _ServedChannel(c.fileno())
            self._channels[id(channel)] = channel
        try:
            unix = channel.sock.family == socket.AF_UNIX
            c.send(("#RETURN", self._handover_prefix if unix else None))
            self._serve_channel(channel)
        finally:
            with self._channels_cond:
                del self._channels[id(channel)]
                channel.open = False
                self._channels_cond.notify_all()
            channel.sock.close()
        # Ends this connection's thread the way Server.serve_client does;
        # Server.handle_request closes the connection.
        raise SystemExit

    def _serve_channel(self, channel: "_ServedChannel") -> None:
        fd = channel.fd
        cond = self._channels_cond
        pending = b""
        replies = True  # False once the client stopped reading
        # After a read that brought only hand-overs, more are likely to
        # follow: wait a moment before reading again, so that they pile up.
        # Writing to a socket nobody is blocked on costs the client a copy;
        # waking a blocked reader costs it several times more.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        batching = False
        while True:
            if batching:
                time.sleep(_BATCH_INTERVAL)
                if not poller.poll(0):
                    batching = False  # a pause: block until the next message
                    continue
            else:
                poller.poll()
            # Readable: this read does not block. Counted under the lock, so
            # that _sync_channels sees each byte either unread or received.
            with cond:
                try:
                    chunk = os.read(fd, _READ_SIZE)
                except OSError:
                    chunk = b""
                channel.received += len(chunk)
            if not chunk:
                return  # what arrived before end of file has been handled
            pending = pending + chunk if pending else chunk
            adopted: List[str] = []
            called = False
            while len(pending) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(pending)
                end = _HEADER.size + size
                if len(pending) < end:
                    break
                kind = pending[_HEADER.size : _HEADER.size + 1]
                body = pending[_HEADER.size + 1 : end]
                pending = pending[end:]
                if kind == _ADOPT:
                    adopted.append(body.decode("ascii", "replace"))
                    continue
                # Hand-overs before a call are taken before it is answered.
                self._adopt_all(adopted)
                adopted = []
                if kind == _CALL:
                    called = True
                    reply = self._call(body)
                    if replies:
                        try:
                            _write_frame(fd, reply)
                        except OSError:
                            replies = False
                else:
                    util.info("SharedMemoryServer: bad frame %r; closing the channel", kind)
                    return
            self._adopt_all(adopted)
            with cond:
                channel.handled = channel.received - len(pending)
                cond.notify_all()
            batching = bool(adopted) and not called

    def _adopt_all(self, paths: List[str]) -> None:
        if paths:
            try:
                self.shared_memory_context.adopt_all(paths)
            except Exception as exc:
                util.info("SharedMemoryServer could not take %r: %s", paths, exc)

    def _call(self, request: bytes) -> bytes:
        try:
            op, args = pickle.loads(request)
            reply: tuple = (True, self._operations[op](self, *args))
        except Exception as exc:
            reply = (False, exc)
        try:
            return pickle.dumps(reply, _PICKLE_PROTOCOL)
        except Exception:
            return pickle.dumps((False, RemoteError(format_exc())), _PICKLE_PROTOCOL)

    # Calls of the channel.

    def _new_shared_memory(self, size: int, name: Optional[str]) -> str:
        registry = self.shared_memory_context
        registry.begin_take()
        path = None
        try:
            shm = SharedMemory(name, create=True, size=size)  # registers it
            path = shm._name
            shm.close()
        finally:
            registry.end_take(path)
        return shm.name

    def _new_shareable_list(self, items: tuple, name: Optional[str]) -> str:
        registry = self.shared_memory_context
        registry.begin_take()
        path = None
        try:
            sl = ShareableList(items, name=name)  # registers it
            path = sl.shm._name
            sl.shm.close()
        finally:
            registry.end_take(path)
        return sl.shm.name

    _operations: Dict[str, Callable[..., Any]] = {
        "SharedMemory": _new_shared_memory,
        "ShareableList": _new_shareable_list,
    }


class _ServedChannel:
    """The server's side of one channel."""

    __slots__ = ("fd", "sock", "received", "handled", "open")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # Its own descriptor, to shut the channel down from another thread.
        self.sock = socket.socket(fileno=os.dup(fd))
        self.received = 0  # bytes read from the connection
        self.handled = 0  # bytes of the frames handled completely
        self.open = True


def _unread(fd: int) -> int:
    """Bytes waiting to be read on socket `fd`."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


# -- the manager --------------------------------------------------------------


class _ServerStartup:
    """BaseManager.start()'s initializer, carrying the owner's pid to the
    server process along with the user's initializer."""

    def __init__(self, owner_pid: int, initializer: Optional[Callable[..., Any]], initargs: tuple) -> None:
        self.owner_pid = owner_pid
        self.initializer = initializer
        self.initargs = initargs

    def __call__(self) -> None:
        if self.initializer is not None:
            self.initializer(*self.initargs)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


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


def _unreachable_error(exc: OSError, address: Any) -> OSError:
    """`exc`, of the same type, saying what it means."""
    what = exc.strerror or str(exc)
    message = (
        f"{what}: no SharedMemoryManager server at {address!r} (it was shut "
        "down, or its process exited); start a new SharedMemoryManager"
    )
    try:
        return type(exc)(exc.errno, message)
    except Exception:
        return exc


class SharedMemoryManager(BaseManager):
    """A drop-in for :class:`multiprocessing.managers.SharedMemoryManager`
    that hands out ferroshm :class:`~ferroshm.SharedMemory` and
    :class:`~ferroshm.ShareableList` objects.

    Same constructor, ``start()``, ``shutdown()``, ``with``, ``get_server()``,
    ``connect()``, ``address`` and ``authkey``. Differences, and why:

    * Segments belong to the manager and are unlinked, all of them, at its
      shutdown, whichever process asked for them and whether or not it still
      runs (the standard library's vanish when a client from another process
      tree exits, gh-110468). The objects returned are untracked, so closing
      or losing them, or their process exiting, never unlinks anything.
    * If the process that started the manager dies, even by SIGKILL, the
      server unlinks every segment and exits within moments (the standard
      library's server lives on and its segments leak).
    * ``SharedMemory(size, name=...)`` and ``ShareableList(sequence, name=...)``
      create segments with a chosen name (gh-101014).
    * Allocation reuses one authenticated connection per process and thread
      instead of opening one per call, and ``SharedMemory(size)`` costs one
      one-way message on it: many times faster. A forked child opens its own
      connection.
    * Before ``start()`` the calls raise ValueError, after ``shutdown()``
      FileNotFoundError, as in the standard library, but with messages that
      say what to do.

    See :mod:`ferroshm.managers` for which process creates a segment.
    """

    _Server = SharedMemoryServer
    # BaseManager's, for the type checker.
    _state: Any
    _address: Any
    _authkey: bytes
    _serializer: str
    _registry: Dict[str, Any]
    _Client: Callable[..., Any]
    _process: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if os.name == "posix":
            # bpo-36867: start the resource tracker now, so that the server
            # process inherits it and this process tree has only one.
            resource_tracker.ensure_running()
        BaseManager.__init__(self, *args, **kwargs)
        self._local = threading.local()

    # -- life cycle

    def _check_not_started(self, what: str) -> None:
        state = self._state.value
        if state == State.STARTED:
            raise ProcessError(
                f"{what}: this SharedMemoryManager has already started its "
                f"server (at {self._address!r}); create another "
                "SharedMemoryManager for a second server"
            )
        if state == State.SHUTDOWN:
            raise ProcessError(
                f"{what}: this SharedMemoryManager has shut down and cannot be "
                "restarted; create a new SharedMemoryManager"
            )
        if state != State.INITIAL:
            raise ProcessError(f"{what}: unknown state {state!r}")

    def start(self, initializer: Optional[Callable[..., Any]] = None, initargs: Iterable[Any] = ()) -> None:
        """Start the server process (it watches this process, see the class
        docstring)."""
        self._check_not_started("cannot start")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        BaseManager.start(self, _ServerStartup(os.getpid(), initializer, tuple(initargs)))

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
        # Runs in the server process.
        owner_pid = None
        if isinstance(initializer, _ServerStartup):
            startup = initializer
            owner_pid = startup.owner_pid
            initializer, initargs = startup.initializer, startup.initargs
        # bpo-36368: Ctrl-C in the terminal must not kill the server.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # SIGTERM (Process.terminate()) stops it cleanly: segments unlinked.
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        if initializer is not None:
            initializer(*initargs)
        server = cls._Server(registry, address, authkey, serializer)
        server._owner_pid = owner_pid
        server._handles_sigterm = True
        writer.send(server.address)
        writer.close()
        util.info("manager serving at %r", server.address)
        server.serve_forever()

    def get_server(self) -> SharedMemoryServer:
        """Return a server (not started) to run in this process with
        ``serve_forever()``; it watches no owner."""
        self._check_not_started("cannot make a server")
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def connect(self) -> None:
        """Connect to a running server at ``address`` with ``authkey``
        (AuthenticationError if the key is wrong)."""
        channel = self._open_channel()
        self._drop_channel()
        self._local.channel = channel
        self._state.value = State.STARTED

    def __enter__(self) -> "SharedMemoryManager":
        if self._state.value == State.SHUTDOWN:
            raise ProcessError(
                "this SharedMemoryManager has shut down and cannot be used in "
                "a with block again; create a new SharedMemoryManager"
            )
        BaseManager.__enter__(self)
        return self

    # -- the channel

    def _open_channel(self) -> Any:
        if self._address is None:
            raise _not_running_error()
        try:
            conn = self._Client(self._address, authkey=self._authkey)
        except OSError as exc:
            raise _unreachable_error(exc, self._address) from exc
        try:
            handover_prefix = dispatch(conn, None, "open_channel")
        except RemoteError as exc:
            conn.close()
            if "open_channel" in str(exc):  # "'open_channel' unrecognized"
                return _StdlibServerChannel(self._Client, self._address, self._authkey)
            raise
        except BaseException:
            conn.close()
            raise
        return _Channel(conn, handover_prefix)

    def _drop_channel(self) -> None:
        channel = getattr(self._local, "channel", None)
        self._local.channel = None
        if channel is not None:
            channel.close()

    def _channel(self) -> Any:
        channel = getattr(self._local, "channel", None)
        if self._state.value == State.SHUTDOWN:
            self._drop_channel()
            raise _shut_down_error()
        if channel is not None and channel.pid == os.getpid() and not channel.closed:
            return channel
        # None yet, or inherited from the parent by fork: never use that.
        self._drop_channel()
        channel = self._open_channel()
        self._local.channel = channel
        return channel

    def _request(self, op: str, *args: Any) -> Tuple[Any, _Channel]:
        channel = self._channel()
        try:
            return channel.call(op, args), channel
        except _ChannelLost as lost:
            self._local.channel = None
            if self._state.value == State.SHUTDOWN:
                raise _shut_down_error() from None
            # Reconnecting raises the right error if the server is gone.
            channel = self._channel()
            if lost.delivered:
                raise ConnectionError(
                    "lost the connection to the SharedMemoryManager server "
                    f"during a {op} request; it may or may not have been "
                    "carried out"
                ) from lost.__cause__
        try:
            return channel.call(op, args), channel
        except _ChannelLost as lost:
            self._local.channel = None
            raise ConnectionError(
                f"lost the connection to the SharedMemoryManager server twice during a {op} request"
            ) from lost.__cause__

    def _hand_over(self, channel: _Channel, size: int) -> SharedMemory:
        """Create a segment here and hand it to the server. Its name carries
        the server's hand-over prefix, so that the server removes it even if
        this process dies before the hand-over."""
        prefix = channel.handover_prefix
        assert prefix is not None
        while True:
            try:
                shm = SharedMemory(prefix + secrets.token_hex(4), create=True, size=size, track=False)
                break
            except FileExistsError:
                continue
        path = str(shm._name)
        try:
            try:
                channel.adopt(path)
            except _ChannelLost:
                self._local.channel = None
                if self._state.value == State.SHUTDOWN:
                    raise _shut_down_error() from None
                # A connection the server dropped, or no server any more:
                # a new connection works, or raises the right error.
                self._channel().adopt(path)
        except BaseException as exc:
            # The server does not have it: it must not outlive this call.
            shm.close()
            try:
                shm.unlink()
            except OSError:
                pass
            if isinstance(exc, _ChannelLost):
                self._local.channel = None
                raise ConnectionError("lost the connection to the SharedMemoryManager server twice") from exc.__cause__
            raise
        return shm

    # -- allocation

    def SharedMemory(self, size: int, *, name: Optional[str] = None) -> SharedMemory:
        """Return a new :class:`~ferroshm.SharedMemory` of ``size`` bytes,
        owned by the manager and unlinked at its shutdown.

        ``name`` (keyword only, not in the standard library) chooses the
        segment's name; FileExistsError if it exists. The object returned is
        untracked: the manager owns the segment."""
        channel = self._channel()
        if channel.stdlib_server:
            return channel.shared_memory(size, name)
        if name is None and channel.handover_prefix is not None:
            return self._hand_over(channel, size)
        segment_name, _ = self._request("SharedMemory", size, name)
        return SharedMemory(segment_name, track=False)

    def ShareableList(self, sequence: Optional[Iterable[Any]], *, name: Optional[str] = None) -> ShareableList:
        """Return a new :class:`~ferroshm.ShareableList` holding the items of
        ``sequence``, owned by the manager and unlinked at its shutdown.

        ``name`` (keyword only, not in the standard library) chooses the
        segment's name; FileExistsError if it exists. The server creates the
        list from the items, which are sent to it."""
        items = () if sequence is None else tuple(sequence)
        channel = self._channel()
        if channel.stdlib_server:
            return channel.shareable_list(items, name)
        segment_name, channel = self._request("ShareableList", items, name)
        return _attach_list(segment_name)
