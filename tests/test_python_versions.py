"""What changed in the standard library's shared memory between Python 3.9
and 3.15, and what ferroshm does on each version.

ferroshm behaves as the 3.13 standard library (plus its fixes) on every
supported interpreter where older standard libraries differ (``track``, a
NUL in a name), and follows the running interpreter where a newer one
changed what users see (the ``index()`` message of 3.14). Each test pins
one such behaviour: ferroshm's side and the standard library's side are both
asserted on the running version, so the suite says which versions differ and
how. Also here: what 3.14 and 3.15 change around shared memory
(forkserver as Linux's default start method, raw ``os.fork()`` children and
the resource tracker, subinterpreters). (The argument-error wording of
ShareableList, which Python 3.10 changed, is in test_shareable_list.py's
test_unexpected_arguments; CPython's own tests of each version run in
test_cpython_conformance.py.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from multiprocessing import shared_memory as std

import pytest

import ferroshm

from conftest import segments

#: First releases whose _posixshmem refuses an embedded NUL (gh-115886);
#: earlier ones cut the name at the NUL.
NUL_REFUSED_SINCE = {(3, 11): (3, 11, 9), (3, 12): (3, 12, 3)}


def stdlib_refuses_embedded_nul() -> bool:
    minor = sys.version_info[:2]
    if minor in NUL_REFUSED_SINCE:
        return sys.version_info[:3] >= NUL_REFUSED_SINCE[minor]
    return minor >= (3, 13)


def test_track_keyword_on_every_version(shm_name):
    # gh-82300: `track` is new in 3.13; ferroshm has it on every version.
    with ferroshm.SharedMemory(shm_name, create=True, size=8, track=False) as shm:
        try:
            with ferroshm.SharedMemory(shm_name, track=False) as other:
                assert other.size == 8
            if sys.version_info >= (3, 13):
                theirs = std.SharedMemory(shm_name, track=False)  # no `with` in the stdlib
                assert theirs.size == 8
                theirs.close()
            else:
                with pytest.raises(TypeError, match="unexpected keyword argument 'track'"):
                    std.SharedMemory(shm_name, track=False)
        finally:
            shm.unlink()


def test_embedded_nul_refused_on_every_version(shm_name):
    # gh-115886: 3.11.9, 3.12.3 and 3.13 refuse a name with a NUL; earlier
    # releases cut it there, so "name\0a" attached to "name". ferroshm refuses
    # it on every version, before any system call.
    before = segments()
    with ferroshm.SharedMemory(shm_name, create=True, size=8) as shm:
        try:
            with pytest.raises(ValueError, match="embedded null character"):
                ferroshm.SharedMemory(shm_name + "\0a")
            if stdlib_refuses_embedded_nul():
                with pytest.raises(ValueError, match="embedded null character"):
                    std.SharedMemory(shm_name + "\0a")
            else:
                theirs = std.SharedMemory(shm_name + "\0a")  # the NUL cut the name
                assert theirs.size == 8 and theirs.name == shm_name + "\0a"
                theirs.close()
        finally:
            shm.unlink()
    assert segments() == before


def test_index_message_follows_the_running_version():
    # 3.14 words it "ShareableList.index(x): x not in list" (gh-121288);
    # ferroshm words it as the running version's standard library does.
    want = "ShareableList.index(x): x not in list" if sys.version_info >= (3, 14) else "2 not in this container"
    for impl in (std, ferroshm):
        sl = impl.ShareableList([1])
        try:
            with pytest.raises(ValueError) as e:
                sl.index(2)
            assert str(e.value) == want, impl
        finally:
            sl.shm.close()
            sl.shm.unlink()


# --- the default start method: forkserver on Linux from 3.14 (gh-84559) ------

#: A program as the README's "Migrating" section has users write it, in its
#: own file so that spawn and forkserver children can import it. PATTERN (an
#: environment variable, which forkserver children inherit) says where
#: ferroshm.patch_stdlib() is called; the child reports which module it got
#: as multiprocessing.shared_memory, and writes to the parent's segment.
DEFAULT_METHOD_PROGRAM = """\
import json, multiprocessing, os
PATTERN = os.environ["PATTERN"]
if PATTERN == "top":
    import ferroshm
    ferroshm.patch_stdlib()


def child(name, queue):
    if PATTERN == "target":
        import ferroshm
        ferroshm.patch_stdlib()
    if PATTERN == "import":
        import ferroshm as shared_memory
    else:
        from multiprocessing import shared_memory
    shm = shared_memory.SharedMemory(name)
    shm.buf[0] = 42
    shm.close()
    queue.put(shared_memory.__name__)


if __name__ == "__main__":
    # Every pattern patches the parent here (a second call changes nothing);
    # "main-only" patches nowhere else.
    import ferroshm
    ferroshm.patch_stdlib()
    from multiprocessing import shared_memory
    assert shared_memory.__name__ == "ferroshm.shared_memory", shared_memory
    shm = shared_memory.SharedMemory(create=True, size=16)
    try:
        queue = multiprocessing.Queue()
        proc = multiprocessing.Process(target=child, args=(shm.name, queue))
        proc.start()
        used = queue.get(timeout=60)
        proc.join(60)
        print(json.dumps({"method": multiprocessing.get_start_method(), "child": used,
                          "byte": shm.buf[0], "exitcode": proc.exitcode}))
    finally:
        shm.close()
        shm.unlink()
"""

#: A sitecustomize that patches every interpreter that has it on PYTHONPATH.
SITECUSTOMIZE = "import ferroshm\nferroshm.patch_stdlib()\n"


@pytest.mark.parametrize("pattern", ["top", "target", "sitecustomize", "import", "main-only"])
def test_default_start_method_child(pattern, tmp_path):
    # From 3.14 Linux's default start method is forkserver: a child runs a
    # fresh interpreter (forked from the forkserver process, which imported
    # the main module as __mp_main__), so it does not inherit a patch made
    # under `if __name__ == "__main__"`. The patterns the README gives (the
    # main module's top level, the target function, a sitecustomize, or
    # `import ferroshm as shared_memory` without patching) work with the
    # default start method on every version.
    (tmp_path / "program.py").write_text(DEFAULT_METHOD_PROGRAM)
    env = {"PATTERN": "none" if pattern == "sitecustomize" else pattern}
    if pattern == "sitecustomize":
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    before = segments()
    proc = subprocess.run([sys.executable, str(tmp_path / "program.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    default = "forkserver" if sys.version_info >= (3, 14) else "fork"
    assert got["method"] == default
    assert got["byte"] == 42 and got["exitcode"] == 0
    if pattern == "main-only" and default != "fork":
        # The child imported the standard library's module: the patch is
        # not inherited (it still shares the segment and the tracker).
        assert got["child"] == "multiprocessing.shared_memory"
    elif pattern == "import":
        assert got["child"] == "ferroshm"
    else:
        assert got["child"] == "ferroshm.shared_memory"
    assert proc.stderr == ""
    assert segments() == before


# --- raw os.fork() children and the resource tracker (gh-146313) -------------

#: The parent creates a segment (starting the tracker), then a child made by
#: os.fork() (not by multiprocessing) attaches to it with track=True and
#: exits. Prints whether the segment still exists once the child is gone.
RAW_FORK_PROGRAM = """\
import json, os, sys, time
if sys.argv[1] == "ferroshm":
    import ferroshm as shared_memory
else:
    from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(create=True, size=16)
path = "/dev/shm" + shm._name
pid = os.fork()
if pid == 0:
    try:
        other = shared_memory.SharedMemory(shm.name)
        other.buf[0] = 7
        other.close()
    finally:
        os._exit(0)
_, status = os.waitpid(pid, 0)
# A tracker of the child's own would remove what it tracked as soon as it
# saw the child gone: give it time to.
deadline = time.monotonic() + 2
while os.path.exists(path) and time.monotonic() < deadline:
    time.sleep(0.02)
exists = os.path.exists(path)
byte = shm.buf[0]
shm.close()
try:
    shm.unlink()
    unlinked = True
except FileNotFoundError:
    unlinked = False
print(json.dumps({"status": status, "exists": exists, "byte": byte, "unlinked": unlinked}))
"""


def stdlib_raw_fork_child_has_its_own_tracker() -> bool:
    """gh-146313 (3.13.15+ and 3.14): a child that os.fork() made drops the
    inherited tracker pipe, so attaching there starts a tracker of its own."""
    return sys.version_info >= (3, 14) or (3, 13, 15) <= sys.version_info[:3] < (3, 14)


@pytest.mark.parametrize("impl", ["stdlib", "ferroshm"])
def test_raw_fork_child_that_attaches(impl):
    # The standard library from gh-146313 on: the child's own tracker unlinks
    # the parent's segment when the child exits (and warns of a leak).
    # Before, the child's REGISTER went to the parent's tracker and the
    # segment stayed. ferroshm keeps it on every version: a process that only
    # attaches never removes a segment.
    before = segments()
    proc = subprocess.run([sys.executable, "-c", RAW_FORK_PROGRAM, impl], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["status"] == 0 and got["byte"] == 7
    removed_by_child = impl == "stdlib" and stdlib_raw_fork_child_has_its_own_tracker()
    assert got["exists"] is not removed_by_child, got
    assert got["unlinked"] is not removed_by_child, got
    if removed_by_child:
        assert "leaked shared_memory" in proc.stderr, proc.stderr
    elif impl == "ferroshm":
        assert proc.stderr == ""
    assert segments() == before


# --- subinterpreters (concurrent.interpreters, 3.14) -------------------------

SUBINTERPRETER_PROGRAM = """\
import json
from concurrent import interpreters
from concurrent.futures import InterpreterPoolExecutor

import ferroshm  # the main interpreter imports it as usual

out = {}
interp = interpreters.create()
try:
    for key, code in [
        ("ferroshm", "import ferroshm"),
        ("stdlib", "from multiprocessing import shared_memory\\n"
                   "s = shared_memory.SharedMemory(create=True, size=16)\\n"
                   "s.buf[0] = 1\\ns.close()\\ns.unlink()"),
    ]:
        try:
            interp.exec(code)
            out[key] = ["ok"]
        except interpreters.ExecutionFailed as e:
            out[key] = [e.excinfo.type.__name__, e.excinfo.msg]
finally:
    interp.close()
with InterpreterPoolExecutor(1) as pool:
    try:
        pool.submit(exec, "import ferroshm").result()
        out["pool"] = ["ok"]
    except Exception as e:
        out["pool"] = [type(e).__name__, str(e), type(e.__cause__).__name__]
with ferroshm.SharedMemory(create=True, size=8) as shm:  # still usable here
    shm.unlink()
print(json.dumps(out))
"""


def test_subinterpreters():
    # 3.14's concurrent.interpreters runs code in subinterpreters of one
    # process. The standard library's shared memory works there. ferroshm's
    # extension, like every PyO3 module, declares that it does not support
    # them (Py_mod_multiple_interpreters), so CPython itself refuses to load
    # it in any interpreter but the main one, with ImportError; it stays
    # usable in the main one.
    has_interpreters = importlib.util.find_spec("concurrent.interpreters") is not None
    assert has_interpreters is (sys.version_info >= (3, 14))
    if not has_interpreters:
        return  # no such module before 3.14: nothing else to compare
    proc = subprocess.run([sys.executable, "-c", SUBINTERPRETER_PROGRAM], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["stdlib"] == ["ok"]
    assert got["ferroshm"] == ["ImportError", SUBINTERPRETER_REFUSAL], got
    # InterpreterPoolExecutor raises the worker's exception, as an ImportError
    # caused by the ExecutionFailed that carries it.
    assert got["pool"] == ["ImportError", SUBINTERPRETER_REFUSAL, "ExecutionFailed"], got


#: CPython's message for a module that declares no support (PyO3's own,
#: "PyO3 modules do not yet support subinterpreters", is never reached).
SUBINTERPRETER_REFUSAL = "module ferroshm._native does not support loading in subinterpreters"
