"""ferroshm.SharedMemoryManager: the standard library's behaviour, and the fixes.

Run with FERROSHM_MANAGER_TESTS=stdlib to run these tests against
multiprocessing.managers.SharedMemoryManager instead: the tests of what ferroshm
does better are then expected to fail (strict xfail), the others to pass.
The test of ferroshm.patch_stdlib is skipped in that mode.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
from multiprocessing import AuthenticationError
from multiprocessing.context import ProcessError
from multiprocessing.managers import dispatch
from pathlib import Path

import pytest

import ferroshm
from conftest import SHM_DIR, run_python

AGAINST_STDLIB = os.environ.get("FERROSHM_MANAGER_TESTS") == "stdlib"
IMPL = "stdlib" if AGAINST_STDLIB else "ferroshm"
if AGAINST_STDLIB:
    from multiprocessing.managers import SharedMemoryManager
else:
    from ferroshm import SharedMemoryManager

HELPERS = Path(__file__).parent / "manager_helpers"
START_METHODS = ["fork", "spawn", "forkserver"]
AUTHKEY = b"ferroshm manager tests"


def better(reason: str):
    """A test of something the standard library gets wrong (`reason`): run
    against it, the test must fail."""
    if AGAINST_STDLIB:
        return pytest.mark.xfail(strict=True, reason=f"the standard library {reason}")
    return lambda test: test


def exists(name: str) -> bool:
    return (SHM_DIR / name).exists()


def attach(name: str) -> ferroshm.SharedMemory:
    """Attach without touching any resource tracker."""
    return ferroshm.SharedMemory(name, track=False)


def remove(*names: str) -> None:
    """Unlink what a failing test (or the standard library) left behind."""
    for name in names:
        try:
            ferroshm._native.unlink("/" + name)
        except FileNotFoundError:
            pass


def stop(smm) -> None:
    """Shut `smm` down if it runs, and make sure its server process is gone."""
    shutdown = smm.__dict__.get("shutdown")  # set by start()
    if shutdown is not None:
        shutdown()
    process = getattr(smm, "_process", None)
    if process is not None and process.is_alive():
        process.kill()
        process.join()


@pytest.fixture
def managers():
    """Make managers that are stopped after the test, whatever happens."""
    made = []

    def make(**kwargs):
        kwargs.setdefault("authkey", AUTHKEY)
        smm = SharedMemoryManager(**kwargs)
        made.append(smm)
        return smm

    yield make
    for smm in made:
        stop(smm)


def wait_for_exit(pid: int) -> None:
    """Return once process `pid` (not our child) has exited; no time limit
    (the test's timeout is the limit). The server's own owner watch."""
    from ferroshm.managers import _wait_for_exit

    _wait_for_exit(pid)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- the standard library's behaviour ----------------------------------------


@pytest.mark.parametrize("method", START_METHODS)
def test_allocates_segments_others_attach_and_shutdown_unlinks(managers, method):
    smm = managers(ctx=multiprocessing.get_context(method))
    smm.start()
    shm = smm.SharedMemory(100)
    sl = smm.ShareableList([1, "two", b"three", None, True, 4.5])
    if not AGAINST_STDLIB:
        assert type(shm) is ferroshm.SharedMemory and type(sl) is ferroshm.ShareableList
    assert shm.size == 100 and len(shm.buf) == 100
    shm.buf[:5] = b"hello"
    other = attach(shm.name)
    assert bytes(other.buf[:5]) == b"hello"
    other.close()
    assert list(sl) == [1, "two", b"three", None, True, 4.5]
    names = [shm.name, sl.shm.name]
    assert all(exists(n) for n in names)
    smm.shutdown()
    assert not any(exists(n) for n in names)
    with pytest.raises(FileNotFoundError):
        attach(shm.name)


def test_with_block_starts_and_shuts_down(managers):
    with managers() as smm:
        shm = smm.SharedMemory(10)
        sl = smm.ShareableList("howdy")
        assert list(sl) == list("howdy")
        names = [shm.name, sl.shm.name]
    assert not any(exists(n) for n in names)


def test_size_errors_are_the_standard_librarys(managers):
    with managers() as smm:
        with pytest.raises(ValueError, match="'size' must be a positive number different from zero"):
            smm.SharedMemory(0)
        with pytest.raises(ValueError, match="'size' must be a positive integer"):
            smm.SharedMemory(-1)


def test_before_start_raises_value_error(managers):
    smm = managers()
    with pytest.raises(ValueError):
        smm.SharedMemory(9)
    with pytest.raises(ValueError):
        smm.ShareableList([1])


def test_after_shutdown_raises_file_not_found_and_process_error(managers):
    smm = managers()
    smm.start()
    smm.shutdown()
    with pytest.raises(FileNotFoundError):
        smm.SharedMemory(9)
    with pytest.raises(FileNotFoundError):
        smm.ShareableList([1])
    with pytest.raises(ProcessError):
        smm.start()
    with pytest.raises(ProcessError):
        smm.get_server()
    with pytest.raises(ProcessError):
        with smm:
            pass


def test_start_twice_and_get_server_after_start_raise_process_error(managers):
    smm = managers()
    smm.start()
    with pytest.raises(ProcessError):
        smm.start()
    with pytest.raises(ProcessError):
        smm.get_server()


def test_connect_with_address_and_authkey(managers):
    owner = managers()
    owner.start()
    client = SharedMemoryManager(address=owner.address, authkey=AUTHKEY)
    client.connect()
    shm = client.SharedMemory(32)
    sl = client.ShareableList([7])
    shm.buf[0] = 99
    assert attach(shm.name).buf[0] == 99
    names = [shm.name, sl.shm.name]
    owner.shutdown()
    assert not any(exists(n) for n in names)


def test_wrong_authkey_is_refused(managers):
    owner = managers()
    owner.start()
    intruder = SharedMemoryManager(address=owner.address, authkey=b"not the key")
    with pytest.raises(AuthenticationError):
        intruder.connect()
    with pytest.raises(AuthenticationError):
        intruder.SharedMemory(8)


def test_client_in_another_process_tree_allocates(managers):
    with managers() as smm:
        proc = subprocess.run(
            [sys.executable, str(HELPERS / "client.py"), IMPL, json.dumps(smm.address), AUTHKEY.hex()],
            capture_output=True,
            text=True,
            check=True,
        )
        json.loads(proc.stdout)  # it allocated and reported


def test_server_ignores_sigint(managers):
    smm = managers()
    smm.start()
    smm.SharedMemory(8)
    os.kill(smm._process.pid, signal.SIGINT)
    sl = smm.ShareableList(range(3))  # still serving, same connection
    shm = smm.SharedMemory(8)
    assert list(sl) == [0, 1, 2] and shm.size == 8
    assert smm._process.is_alive()
    smm.shutdown()


def test_shares_the_resource_tracker_quietly():
    # The manager's server uses this process's tracker (bpo-36867), and no
    # tracker anywhere complains: no leak warning, no KeyError.
    proc = run_python(
        textwrap.dedent(
            f"""
            import os
            if {AGAINST_STDLIB!r}:
                from multiprocessing.managers import SharedMemoryManager
            else:
                from ferroshm import SharedMemoryManager
            from ferroshm import SharedMemory, ShareableList
            smm = SharedMemoryManager()
            smm.start()
            shm = smm.SharedMemory(64)
            sl = smm.ShareableList(range(10))
            # attaching by name with tracking, as the standard library's
            # own tests do, changes nothing
            again = SharedMemory(shm.name)
            again_list = ShareableList(name=sl.shm.name)
            names = [shm.name, sl.shm.name]
            smm.shutdown()
            assert not any(os.path.exists("/dev/shm/" + n) for n in names)
            """
        )
    )
    assert proc.stderr == ""


def test_threads_each_get_their_own_answers(managers):
    with managers() as smm:
        errors = []

        def work(marker):
            try:
                for i in range(30):
                    sl = smm.ShareableList([marker, i])
                    assert list(sl) == [marker, i]
                    shm = smm.SharedMemory(marker + i + 1)
                    assert shm.size == marker + i + 1
                    sl.shm.close()
                    shm.close()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(100 * k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


def _allocate_in_child(smm, marker, queue):
    try:
        for i in range(100):
            sl = smm.ShareableList([marker, i])
            assert list(sl) == [marker, i], list(sl)
            shm = smm.SharedMemory(1000 + i)
            assert shm.size == 1000 + i
        queue.put("ok")
    except BaseException as exc:
        queue.put(repr(exc))


def test_forked_child_does_not_share_the_parents_connection(managers):
    # Parent and child allocate at the same time. Over one shared connection
    # the answers would cross (wrong lists, wrong sizes, or a hang).
    ctx = multiprocessing.get_context("fork")
    with managers() as smm:
        smm.SharedMemory(8)  # the parent's connection exists before the fork
        queue = ctx.Queue()
        child = ctx.Process(target=_allocate_in_child, args=(smm, 1, queue))
        child.start()
        _allocate_in_child(smm, 2, queue)
        results = [queue.get(), queue.get()]
        child.join()
        assert results == ["ok", "ok"]
        assert child.exitcode == 0
        assert smm.SharedMemory(8).size == 8  # the parent's connection still works


def test_bare_os_fork_child_opens_its_own_connection(managers):
    # os.fork() runs none of multiprocessing's after-fork hooks: the child
    # still must not answer on the parent's connection.
    with managers() as smm:
        smm.SharedMemory(8)  # the parent's connection exists before the fork
        # ... and so do its placeholders, which the child must not use.
        parents = set() if AGAINST_STDLIB else {p[1:] for p in smm._allocator().placeholders()}
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            status = 1
            try:
                os.close(read_end)
                made = [smm.SharedMemory(100 + i) for i in range(20)]
                os.write(write_end, json.dumps([[s.size, s.name] for s in made]).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        parent_made = [smm.SharedMemory(500 + i) for i in range(20)]
        with os.fdopen(read_end) as f:
            child_made = json.loads(f.read() or "null")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [size for size, _ in child_made] == [100 + i for i in range(20)]
        assert [s.size for s in parent_made] == [500 + i for i in range(20)]
        assert not parents & {name for _, name in child_made}


def test_get_server_serves_in_this_process():
    # In a fresh interpreter: the server's accept thread never ends (nor does
    # the standard library's), and the connections' threads end only with
    # their clients. Left in pytest's process, they would make every later
    # fork one of a multi-threaded process: a DeprecationWarning since 3.12,
    # raised as an error under -Werror from 3.15 (gh-135427).
    proc = run_python(
        textwrap.dedent(
            f"""
            import json, os, sys, threading
            from multiprocessing.managers import dispatch
            if {AGAINST_STDLIB!r}:
                from multiprocessing.managers import SharedMemoryManager
            else:
                from ferroshm import SharedMemoryManager
            AUTHKEY = {AUTHKEY!r}
            server_side = SharedMemoryManager(address=("127.0.0.1", 0), authkey=AUTHKEY)
            server = server_side.get_server()
            if sys.version_info < (3, 10):
                # Before 3.10 the standard library's Server.handle_request
                # (which ferroshm's server inherits) lets the SystemExit that
                # ends a connection's thread (serve_client at end of file,
                # ferroshm's allocation channel) escape the thread and leaves
                # the connection to the garbage collector; 3.10 catches it
                # there and closes the connection. This is 3.10's.
                inner = server.handle_request

                def handle_request(conn):
                    try:
                        inner(conn)
                    except SystemExit:
                        pass
                    finally:
                        conn.close()

                server.handle_request = handle_request
            ended = []

            def serve():
                try:
                    server.serve_forever()
                except SystemExit:  # how serve_forever ends, as in the stdlib
                    ended.append("SystemExit")

            thread = threading.Thread(target=serve, daemon=True)
            thread.start()
            try:
                client = SharedMemoryManager(address=server.address, authkey=AUTHKEY)
                client.connect()
                shm = client.SharedMemory(16)  # over TCP
                sl = client.ShareableList([1, 2])
                names = [shm.name, sl.shm.name]
                existed = [os.path.exists("/dev/shm/" + n) for n in names]
            finally:
                conn = server_side._Client(server.address, authkey=AUTHKEY)
                dispatch(conn, None, "shutdown")
                conn.close()
                thread.join()
            print(json.dumps({{"existed": existed, "ended": ended,
                              "left": [n for n in names if os.path.exists("/dev/shm/" + n)]}}))
            """
        )
    )
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got == {"existed": [True, True], "ended": ["SystemExit"], "left": []}, proc.stderr
    assert proc.stderr == ""


@better("raises AttributeError (printed as 'Exception ignored') when a manager is freed after exit wiped its module")
def test_a_manager_freed_during_interpreter_exit_prints_nothing(monkeypatch):
    # At exit, the module globals of whatever is still alive become None;
    # free-threaded 3.13 frees module-level managers after that, and the
    # standard library's __del__ logs through its module's ``util``. The
    # wiping, reproduced: the module's globals gone.
    import multiprocessing.managers as stdlib_managers

    smm = SharedMemoryManager(authkey=AUTHKEY)
    monkeypatch.setattr(stdlib_managers, "util", None)
    monkeypatch.setattr(stdlib_managers, "getpid", None)
    if not AGAINST_STDLIB:
        monkeypatch.setattr(ferroshm.managers, "util", None)
        monkeypatch.setattr(ferroshm.managers, "os", None)
    smm.__del__()  # what finalization calls; nothing started, nothing to stop


def test_interoperates_with_standard_library_servers_and_clients(managers):
    import multiprocessing.managers as std

    if std.SharedMemoryManager.__module__ != "multiprocessing.managers":
        pytest.skip("multiprocessing.managers is patched in this process")
    # A client of this implementation, a server of the standard library's.
    with std.SharedMemoryManager(authkey=AUTHKEY) as std_smm:
        client = SharedMemoryManager(address=std_smm.address, authkey=AUTHKEY)
        client.connect()
        names = [client.SharedMemory(16).name, client.ShareableList([1]).shm.name]
        assert all(exists(n) for n in names)
    assert not any(exists(n) for n in names)
    # A client of the standard library's, a server of this implementation.
    with managers() as smm:
        std_client = std.SharedMemoryManager(address=smm.address, authkey=AUTHKEY)
        names = [std_client.SharedMemory(16).name, std_client.ShareableList([1]).shm.name]
        assert all(exists(n) for n in names)
    assert not any(exists(n) for n in names)


# --- better than the standard library ----------------------------------------


@better("lets the client's resource tracker unlink the segments when the client exits (gh-110468)")
def test_segments_outlive_the_client_that_asked(managers):
    with managers() as smm:
        proc = subprocess.run(
            [sys.executable, str(HELPERS / "client.py"), IMPL, json.dumps(smm.address), AUTHKEY.hex()],
            capture_output=True,
            text=True,
            check=True,
        )
        names = json.loads(proc.stdout)
        try:
            # The client's process tree, tracker included, is gone: no
            # warning from its tracker, and the segments are still there.
            assert proc.stderr == ""
            shm = attach(names["shm"])
            assert bytes(shm.buf[:7]) == b"client!"
            shm.close()
            sl = ferroshm.ShareableList(name=names["list"])
            assert list(sl) == ["from", "client", 42]
            sl.shm.close()
        finally:
            smm.shutdown()
        assert not exists(names["shm"]) and not exists(names["list"])


@better("stops at the first segment someone else unlinked and leaks the rest")
def test_shutdown_unlinks_everything_even_after_a_client_unlinked_one():
    proc = run_python(
        textwrap.dedent(
            f"""
            import json, os
            if {AGAINST_STDLIB!r}:
                from multiprocessing.managers import SharedMemoryManager
            else:
                from ferroshm import SharedMemoryManager
            smm = SharedMemoryManager()
            smm.start()
            a, b, c = (smm.SharedMemory(16) for _ in range(3))
            sl = smm.ShareableList([1])
            names = [a.name, b.name, c.name, sl.shm.name]
            b.unlink()
            smm.shutdown()
            left = [n for n in names if os.path.exists("/dev/shm/" + n)]
            for n in left:
                os.unlink("/dev/shm/" + n)
            print(json.dumps(left))
            """
        )
    )
    assert json.loads(proc.stdout) == []
    assert proc.stderr == ""  # no tracker warning or KeyError anywhere


@better("leaves its segments to the resource tracker when the server is terminated")
def test_sigterm_to_the_server_unlinks_its_segments(managers):
    smm = managers()
    smm.start()
    names = [smm.SharedMemory(16).name, smm.ShareableList([1]).shm.name]
    try:
        smm._process.terminate()
        smm._process.join()
        assert not any(exists(n) for n in names)
    finally:
        stop(smm)
        remove(*names)


@better("keeps its server alive forever after its owner is killed, and leaks the segments")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_server_cleans_up_and_exits_when_its_owner_is_killed(method, tmp_path):
    owner = subprocess.Popen(
        [sys.executable, str(HELPERS / "owner.py"), IMPL, method],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # the server's socket
    )
    server_pid = None
    names: list = []
    try:
        report = json.loads(owner.stdout.readline())
        server_pid, names = report["server_pid"], report["names"]
        assert all(exists(n) for n in names)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        wait_for_exit(server_pid)
        assert not any(exists(n) for n in names)
        # The tracker the owner started ends with the server: read to the
        # end. Nothing leaked, nothing unregistered twice.
        assert owner.stderr.read() == ""
    finally:
        if server_pid is not None and alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for stream in (owner.stdin, owner.stdout, owner.stderr):
            stream.close()
        remove(*names)


@better("has no name argument (gh-101014)")
def test_named_allocation(managers, shm_name):
    with managers() as smm:
        shm = smm.SharedMemory(50, name=shm_name)
        assert shm.name == shm_name and shm.size == 50
        with pytest.raises(FileExistsError):
            smm.SharedMemory(50, name=shm_name)
        sl = smm.ShareableList(["x", 1], name=shm_name + "_list")
        assert sl.shm.name == shm_name + "_list"
        assert list(ferroshm.ShareableList(name=shm_name + "_list")) == ["x", 1]
        with pytest.raises(FileExistsError):
            smm.ShareableList([2], name=shm_name + "_list")
    assert not exists(shm_name) and not exists(shm_name + "_list")


@better("opens and authenticates a new connection for every allocation")
def test_allocation_reuses_one_connection(managers):
    with managers() as smm:
        opened = []
        client = smm._Client

        def counting_client(*args, **kwargs):
            opened.append(args)
            return client(*args, **kwargs)

        smm._Client = counting_client
        for _ in range(20):
            smm.SharedMemory(64).close()
            smm.ShareableList([1, 2]).shm.close()
        assert len(opened) <= 1


@better("gives a cryptic 'address type of None unrecognized'")
def test_error_before_start_says_what_to_do(managers):
    with pytest.raises(ValueError, match=r"start\(\)"):
        managers().SharedMemory(9)


@better("gives a bare FileNotFoundError for its socket")
def test_error_after_shutdown_says_what_to_do(managers):
    smm = managers()
    smm.start()
    smm.shutdown()
    with pytest.raises(FileNotFoundError, match="shut down"):
        smm.SharedMemory(9)


def test_error_for_a_lost_server_leaves_nothing_unraisable(managers):
    """A call to a server that is gone raises OSError, and the error, kept
    in a reference cycle (as ``pytest.raises`` or a stored traceback keeps
    it) and collected later, finalizes nothing that complains. The standard
    library's ``Connection.send`` hands a memoryview of a BytesIO to the
    failing write; held by the traceback and collected with it, that
    BytesIO was finalized while exported, which Python 3.13 reports as
    "Exception ignored in: <_io.BytesIO ...>" (BufferError)."""
    smm = managers()
    smm.start()
    smm.SharedMemory(16)  # the connection, and names reserved for later calls
    smm._process.terminate()  # the server unlinks its segments and exits
    smm._process.join()
    unraisable = []
    hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        try:
            smm.SharedMemory(16)
        except OSError as e:
            e.cycle = e
            assert "SharedMemoryManager" in str(e)
        else:
            pytest.fail("no error from a manager whose server is gone")
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert not unraisable, [(u.object, u.exc_value) for u in unraisable]


def test_list_segments_sees_every_allocation(managers):
    # A request on another connection sees every segment handed over before.
    with managers() as smm:
        names = {smm.SharedMemory(16).name for _ in range(50)}
        conn = smm._Client(smm.address, authkey=AUTHKEY)
        try:
            listed = dispatch(conn, None, "list_segments")
        finally:
            conn.close()
        assert names <= set(listed)


def request(smm, method, *args):
    """Send the server request `method` on a connection of its own."""
    conn = smm._Client(smm.address, authkey=AUTHKEY)
    try:
        return dispatch(conn, None, method, args)
    finally:
        conn.close()


def test_list_segments_and_release_segment_see_allocations_only(managers, shm_name):
    # ferroshm's server also holds unused placeholders: never listed.
    with managers() as smm:
        shm = smm.SharedMemory(16)
        sl = smm.ShareableList([1, "two"])
        names = [sl.shm.name] if AGAINST_STDLIB else [sl.shm.name, smm.SharedMemory(16, name=shm_name).name]
        assert sorted(request(smm, "list_segments")) == sorted([shm.name, *names])
        request(smm, "release_segment", shm.name)
        assert not exists(shm.name)
        assert sorted(request(smm, "list_segments")) == sorted(names)
        assert list(sl) == [1, "two"]


def test_manager_lists_have_the_standard_librarys_bytes(managers):
    from multiprocessing.shared_memory import ShareableList as StdList

    items = [1, "two", b"three", None, True, 4.5, "a longer string than eight"]
    reference = StdList(items)
    try:
        with managers() as smm:
            sl = smm.ShareableList(items)
            n = reference.shm.size
            assert sl.shm.size >= n and bytes(sl.shm.buf[:n]) == bytes(reference.shm.buf[:n])
    finally:
        reference.shm.close()
        reference.shm.unlink()


ferroshm_only = pytest.mark.skipif(AGAINST_STDLIB, reason="ferroshm's placeholders")


@ferroshm_only
def test_placeholder_batches_grow_from_two_to_sixteen(managers):
    # Requests bring 2, 4, 8, then 16 placeholders: a process that allocates
    # once strands one, a busy one makes a request per 16 allocations.
    with managers() as smm:
        held = []
        for _ in range(2 + 4 + 8 + 16 + 1):
            smm.SharedMemory(8).close()
            held.append(len(smm._allocator().placeholders()))
        assert held[:3] == [1, 0, 3] and held[5:7] == [0, 7]
        assert held[13:15] == [0, 15] and held[29:31] == [0, 15]


@ferroshm_only
def test_a_placeholder_someone_sized_is_skipped_and_still_unlinked(managers):
    with managers() as smm:
        smm.SharedMemory(8).close()  # this thread now holds placeholders
        pool = smm._allocator().placeholders()
        unused = list(pool)
        # Not listed while empty.
        assert not set(request(smm, "list_segments")) & {p[1:] for p in unused}
        taken = pool[-1]
        other = ferroshm._native.Segment.open(taken, os.O_RDWR, size=100, placeholder=True)
        other.close()
        shm = smm.SharedMemory(50)
        sl = smm.ShareableList(["x"])
        assert taken not in pool and taken[1:] not in (shm.name, sl.shm.name)
        assert shm.size == 50 and list(sl) == ["x"]
        # Sized by someone: a segment of the manager's, listed.
        assert {taken[1:], shm.name, sl.shm.name} <= set(request(smm, "list_segments"))
        # One found gone, as after shutdown: the manager's clear error.
        ferroshm._native.unlink(pool[-1])
        with pytest.raises(FileNotFoundError, match="shut down"):
            smm.SharedMemory(8)
        assert pool == [] and smm.SharedMemory(8).size == 8
    assert not any(exists(p[1:]) for p in unused)


@ferroshm_only
def test_a_client_killed_mid_allocation_leaks_nothing(managers):
    # The client holds placeholders and has sized one it never returned
    # when it is killed: all of it is the server's, and goes at shutdown.
    with managers() as smm:
        proc = run_python(
            textwrap.dedent(
                f"""
                import json, os, signal
                from ferroshm import SharedMemoryManager
                from ferroshm.shared_memory import _in_placeholder
                smm = SharedMemoryManager(address={smm.address!r}, authkey={AUTHKEY!r})
                smm.connect()
                smm.SharedMemory(8)
                pool = smm._allocator().placeholders()
                _in_placeholder(pool[-1], 4096)
                print(json.dumps(pool), flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
                """
            ),
            check=False,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        names = [p[1:] for p in json.loads(proc.stdout)]
        # A process's first request brings 2 placeholders: 1 left in hand.
        assert len(names) == 1 and all(exists(n) for n in names)
        assert names[-1] in request(smm, "list_segments")
    assert not any(exists(n) for n in names)


@ferroshm_only
def test_shutdown_racing_allocations_leaks_nothing(managers):
    smm = managers()
    smm.start()
    client = SharedMemoryManager(address=smm.address, authkey=AUTHKEY)
    client.connect()
    client.SharedMemory(8).close()  # placeholders in hand
    errors = []
    running = threading.Event()

    def work():
        try:
            while True:
                client.SharedMemory(64).close()
                client.ShareableList([1, "x"]).shm.close()
                running.set()
        except BaseException as exc:  # checked below
            errors.append(exc)
            running.set()

    thread = threading.Thread(target=work)
    thread.start()
    running.wait()
    smm.shutdown()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], OSError), errors
    with pytest.raises(OSError, match="shut down"):
        client.SharedMemory(8)


# --- installing ferroshm in the standard library ------------------------------


@pytest.mark.skipif(AGAINST_STDLIB, reason="tests ferroshm.patch_stdlib")
def test_patch_stdlib_installs_the_manager():
    proc = run_python(
        textwrap.dedent(
            """
            import multiprocessing.shared_memory as imported_before
            import ferroshm
            ferroshm.patch_stdlib()
            import multiprocessing.managers as managers
            import multiprocessing.shared_memory as shared_memory
            from multiprocessing.managers import SharedMemoryManager, SharedMemoryServer
            assert SharedMemoryManager is ferroshm.SharedMemoryManager
            assert SharedMemoryServer is ferroshm.SharedMemoryServer
            assert shared_memory.SharedMemory is ferroshm.SharedMemory
            assert shared_memory.ShareableList is ferroshm.ShareableList
            assert imported_before.SharedMemory is ferroshm.SharedMemory
            assert imported_before.ShareableList is ferroshm.ShareableList
            assert managers.shared_memory is ferroshm.shared_memory
            ferroshm.patch_stdlib()  # twice is harmless
            assert managers.SharedMemoryManager is ferroshm.SharedMemoryManager
            """
        )
    )
    assert proc.stderr == ""
    # The documented way for spawn children: patch at the top of the main module.
    proc = subprocess.run(
        [sys.executable, str(HELPERS / "patched_main.py")], capture_output=True, text=True, check=True
    )
    assert json.loads(proc.stdout) == {
        "child": {"manager": "ferroshm.managers", "shared_memory": "ferroshm.shared_memory"},
        "shm_type": "ferroshm.shared_memory.SharedMemory",
        "list_type": "ferroshm.shared_memory.ShareableList",
    }
    assert proc.stderr == ""
