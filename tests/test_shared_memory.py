"""ferroshm.SharedMemory: the standard library's behaviour, and the fixes."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap
from multiprocessing import resource_tracker
from multiprocessing import shared_memory as std

import pytest

import ferroshm
from ferroshm import SharedMemory
from ferroshm import shared_memory as fsm

from conftest import SHM_DIR, kill_creator_and_check_cleanup, run_python, segments, stdlib_can_track


# --- the standard library's behaviour ---------------------------------------


def test_create_attach_share_bytes(shm_name):
    with SharedMemory(shm_name, create=True, size=4097) as a:
        try:
            assert a.name == shm_name and a._name == "/" + shm_name
            assert a.size == 4097 and len(a.buf) == 4097
            assert (a.buf.format, a.buf.ndim, a.buf.readonly, a.buf.itemsize) == ("B", 1, False, 1)
            a.buf[4090:4097] = b"abcdefg"
            with SharedMemory(shm_name, size=1 << 30) as b:  # attach ignores size
                assert b.size == 4097
                assert bytes(b.buf[4090:]) == b"abcdefg"
                b.buf[0] = 42
            assert a.buf[0] == 42
        finally:
            a.unlink()


def test_repr_and_attributes_survive_close(shm_name):
    shm = SharedMemory(shm_name, create=True, size=10)
    shm.close()
    shm.close()  # idempotent
    assert shm.buf is None
    assert shm.name == shm_name and shm.size == 10
    assert repr(shm) == f"SharedMemory({shm_name!r}, size=10)"
    shm.unlink()


@pytest.mark.parametrize(
    "args, kwargs, exc, message",
    [
        ((), {"create": True, "size": -1}, ValueError, "'size' must be a positive integer"),
        ((), {"create": True, "size": 0}, ValueError, "'size' must be a positive number different from zero"),
        ((), {"create": True}, ValueError, "'size' must be a positive number different from zero"),
        ((), {}, ValueError, "'name' can only be None if create=True"),
        ((), {"create": False, "size": 5}, ValueError, "'name' can only be None if create=True"),
        ((), {"create": True, "size": "5"}, TypeError, "'>=' not supported between instances of 'str' and 'int'"),
        (("x", True, 1, True), {}, TypeError, "takes from 1 to 4 positional arguments but 5 were given"),
        ((), {"create": True, "size": 1.5}, TypeError, "'float' object cannot be interpreted as an integer"),
    ],
)
def test_argument_errors_match_stdlib(args, kwargs, exc, message):
    before = segments()
    with pytest.raises(exc) as got:
        SharedMemory(*args, **kwargs)
    assert message in str(got.value)
    assert segments() == before
    # The standard library raises the same type and message (where it does
    # not create and leak a segment first, as it does for a float size).
    if kwargs.get("size") != 1.5:
        with pytest.raises(exc) as want:
            std.SharedMemory(*args, **kwargs)
        assert message in str(want.value)


def test_size_true_is_one():
    with SharedMemory(create=True, size=True) as shm:
        assert shm.size == 1
        shm.unlink()


def test_attach_errors(shm_name):
    with pytest.raises(FileNotFoundError) as e:
        SharedMemory(shm_name)
    assert e.value.errno == 2 and e.value.filename == "/" + shm_name
    with SharedMemory(shm_name, create=True, size=8) as shm:
        with pytest.raises(FileExistsError):
            SharedMemory(shm_name, create=True, size=8)
        for bad in ("a/b", "x" * 300):
            with pytest.raises(OSError) as e:
                SharedMemory(bad, create=True, size=8)
            assert e.value.errno == 22
        with pytest.raises(TypeError, match="can only concatenate str"):
            SharedMemory(5)
        shm.unlink()
    with pytest.raises(FileNotFoundError):
        shm.unlink()


def test_embedded_nul_is_valueerror(shm_name):
    before = segments()
    with pytest.raises(ValueError, match="embedded null character"):
        SharedMemory(shm_name + "\0a", create=True, size=8)
    with SharedMemory(shm_name, create=True, size=8) as shm:
        with pytest.raises(ValueError, match="embedded null character"):
            SharedMemory(shm_name + "\0a")
        shm._name += "\0a"  # a writable attribute, as in CPython's tests
        with pytest.raises(ValueError, match="embedded null character"):
            shm.unlink()
        shm._name = "/" + shm_name
        shm.unlink()
    assert segments() == before


def test_leading_slash_rules(shm_name):
    # The standard library prepends '/' unconditionally: "/x" becomes "//x",
    # which Linux resolves to the same object as "/x".
    with SharedMemory("/" + shm_name, create=True, size=16) as shm:
        assert shm._name == "//" + shm_name
        assert shm.name == "/" + shm_name
        with SharedMemory(shm_name) as same:
            assert same.size == 16
        shm.unlink()


def test_mode_is_0600(shm_name):
    old = os.umask(0)
    try:
        with SharedMemory(shm_name, create=True, size=8) as shm:
            assert stat.S_IMODE(os.stat(SHM_DIR / shm_name).st_mode) == 0o600
            shm.unlink()
    finally:
        os.umask(old)


def test_make_filename_is_looked_up_at_call_time(monkeypatch, shm_name):
    names = iter([f"/{shm_name}", f"/{shm_name}", f"/{shm_name}_b"])
    monkeypatch.setattr(fsm, "_make_filename", lambda: next(names))
    with SharedMemory(create=True, size=1) as first, SharedMemory(create=True, size=1) as second:
        assert first._name == f"/{shm_name}"
        assert second._name == f"/{shm_name}_b"  # retried past the existing name
        first.unlink()
        second.unlink()


def test_default_names_look_like_cpythons():
    with SharedMemory(create=True, size=1) as shm:
        shm.unlink()
    assert shm.name.startswith("psm_") and len(shm.name) == 12
    assert fsm._SHM_NAME_PREFIX == "/psm_" and fsm._USE_POSIX


def test_subclass_flags_open_or_create(shm_name):
    class OpenOrCreate(SharedMemory):
        _flags = os.O_CREAT | os.O_RDWR

    with SharedMemory(shm_name, create=True, size=512) as shm:
        with OpenOrCreate(shm_name) as again:
            assert again.size == 512
        shm.unlink()
    # Creating without a size makes an empty object, which cannot be mapped:
    # the error is the standard library's, and (unlike there) the object this
    # call created is removed again.
    with pytest.raises(ValueError, match="cannot mmap an empty file"):
        OpenOrCreate(shm_name)
    assert shm_name not in segments()


def test_pickle_by_name(shm_name):
    with SharedMemory(shm_name, create=True, size=64) as shm:
        assert shm.__reduce__() == (SharedMemory, (shm_name, False, 64))
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            with pickle.loads(pickle.dumps(shm, proto)) as other:
                other.buf[:3] = b"abc"
                assert bytes(shm.buf[:3]) == b"abc"
        data = pickle.dumps(shm)
        shm.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(data)


def test_context_manager_closes_but_does_not_unlink(shm_name):
    with SharedMemory(shm_name, create=True, size=8) as shm:
        assert shm.buf is not None
    assert shm.buf is None
    assert shm_name in segments()
    SharedMemory(shm_name).unlink()


def test_tracker_register_and_unregister(monkeypatch, shm_name):
    calls = []
    monkeypatch.setattr(resource_tracker, "register", lambda n, t: calls.append(("register", n, t)))
    monkeypatch.setattr(resource_tracker, "unregister", lambda n, t: calls.append(("unregister", n, t)))
    shm = SharedMemory(shm_name, create=True, size=8)
    SharedMemory(shm_name).close()
    SharedMemory(shm_name, track=False).close()
    shm.unlink()
    shm.close()
    key = ("/" + shm_name, "shared_memory")
    assert calls == [("register", *key), ("register", *key), ("unregister", *key)]


def test_untracked_unlink_sends_nothing(monkeypatch, shm_name):
    calls = []
    monkeypatch.setattr(resource_tracker, "unregister", lambda n, t: calls.append(n))
    with SharedMemory(shm_name, create=True, size=8, track=False) as shm:
        shm.unlink()
    assert calls == []


def test_killed_creator_segment_is_removed_by_tracker():
    kill_creator_and_check_cleanup("import ferroshm,sys,time\n"
                                   "s = ferroshm.SharedMemory(create=True, size=10)\n"
                                   "print(s.name, flush=True); time.sleep(60)")


# --- interoperability with the standard library -----------------------------


def test_stdlib_and_ferroshm_share_segments(shm_name):
    with SharedMemory(shm_name, create=True, size=100) as ours:
        ours.buf[:5] = b"hello"
        theirs = std.SharedMemory(shm_name)
        assert theirs.size == 100 and bytes(theirs.buf[:5]) == b"hello"
        theirs.buf[5:10] = b"world"
        theirs.close()
        assert bytes(ours.buf[:10]) == b"helloworld"
        ours.unlink()
    theirs = std.SharedMemory(create=True, size=50)
    try:
        theirs.buf[:3] = b"xyz"
        with SharedMemory(theirs.name) as ours:
            assert ours.size == 50 and bytes(ours.buf[:3]) == b"xyz"
    finally:
        theirs.close()
        theirs.unlink()


# --- better than the standard library ---------------------------------------

NUMPY_AFTER_CLOSE = """
import numpy as np, {mod} as sm
m = sm.SharedMemory(create=True, size=1 << 20)
a = np.ndarray((1 << 17,), dtype=np.int64, buffer=m.buf)
m.close(); m.unlink()
a[:] = 7
print(int(a.sum()))
"""


def test_numpy_array_outlives_close_and_unlink():
    # The documentation's NumPy pattern, then close+unlink, then a write:
    # the standard library segfaults (exit -11); ferroshm keeps the mapping
    # alive for the array.
    proc = run_python(NUMPY_AFTER_CLOSE.format(mod="ferroshm"))
    assert proc.stdout.strip() == str(7 << 17)


def test_close_with_exports_never_raises_buffererror(shm_name):
    np = pytest.importorskip("numpy")
    shm = SharedMemory(shm_name, create=True, size=64)
    arr = np.frombuffer(shm.buf, dtype=np.uint8)
    view = shm.buf[8:16]
    shm.close()  # the standard library raises BufferError here
    assert shm.buf is None
    view[:] = b"abcdefgh"
    assert bytes(arr[8:16]) == b"abcdefgh"
    shm.unlink()


def _mapped(name: str) -> bool:
    with open("/proc/self/maps") as maps:
        return any(line.rstrip().endswith(f"/dev/shm/{name}") or f"/dev/shm/{name} " in line for line in maps)


def test_last_reference_unmaps(shm_name):
    shm = SharedMemory(shm_name, create=True, size=4096)
    shm.unlink()
    view = shm.buf[:10]
    shm.close()
    assert _mapped(shm_name + " (deleted)") or _mapped(shm_name)
    del view
    assert not _mapped(shm_name + " (deleted)") and not _mapped(shm_name)


def test_close_without_exports_unmaps_at_once(shm_name):
    shm = SharedMemory(shm_name, create=True, size=4096)
    assert _mapped(shm_name)
    shm.close()
    assert not _mapped(shm_name)
    SharedMemory.unlink(shm)


def _fd_count() -> int:
    # The resource tracker's pipe is opened once per process, on first use.
    resource_tracker.ensure_running()
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    "size, exc",
    [(1.5, TypeError), (2**70, OverflowError), (2**63 + 5, OverflowError), (2**62, OSError)],
)
def test_failed_create_leaves_nothing(size, exc):
    before, fds = segments(), _fd_count()
    with pytest.raises(exc):
        SharedMemory(create=True, size=size)
    assert segments() == before
    assert _fd_count() == fds


def test_failed_attach_never_unlinks_the_segment(shm_name):
    # An attach whose mmap fails (here: address space limited in a child)
    # must not remove the segment. The standard library calls unlink() on
    # any OSError after shm_open (gh-153279).
    with SharedMemory(shm_name, create=True, size=256 << 20, track=False) as shm:
        try:
            code = textwrap.dedent(f"""
                import resource, {{mod}} as sm
                resource.setrlimit(resource.RLIMIT_AS, (200 << 20, 200 << 20))
                try:
                    sm.SharedMemory({shm_name!r})
                except OSError as e:
                    print("errno", e.errno)
            """)
            out = run_python(code.format(mod="ferroshm")).stdout
            assert "errno 12" in out
            assert shm_name in segments()
        finally:
            shm.unlink()


def test_failed_tracker_registration_removes_what_it_created(monkeypatch, shm_name):
    def broken(name, rtype):
        raise RuntimeError("tracker down")

    monkeypatch.setattr(resource_tracker, "register", broken)
    fds = _fd_count()
    with pytest.raises(RuntimeError, match="tracker down"):
        SharedMemory(shm_name, create=True, size=64)
    assert shm_name not in segments()
    assert _fd_count() == fds
    # An attach that fails the same way leaves the existing segment alone.
    with SharedMemory(shm_name, create=True, size=64, track=False) as shm:
        with pytest.raises(RuntimeError):
            SharedMemory(shm_name)
        assert shm_name in segments()
        shm.unlink()


TRACKER_NAMES = ["a:b", "caf\u00e9", "a\nb", ":x:\ny:"]


@pytest.mark.parametrize("odd", TRACKER_NAMES)
def test_names_the_tracker_cannot_carry_are_refused_before_creating(odd, shm_name):
    name = shm_name + odd
    before = segments()
    if stdlib_can_track("/" + name):
        with SharedMemory(name, create=True, size=8) as shm:
            assert shm._name in ferroshm._native.tracker_registrations()[0]
            shm.unlink()
    else:
        with pytest.raises(ValueError, match="cannot be tracked"):
            SharedMemory(name, create=True, size=8)
    assert segments() == before
    # Untracked, such names are fine (as far as the OS allows them).
    with SharedMemory(name, create=True, size=8, track=False) as shm:
        shm.unlink()
    assert segments() == before


TRACKER_BYTES = r"""
import json, os, sys
from multiprocessing import resource_tracker
import ferroshm
tracker = resource_tracker._resource_tracker
tracker._use_simple_format = json.loads(sys.argv[2]) if sys.argv[2] != "default" else getattr(tracker, "_use_simple_format", None)
r, w = os.pipe()
tracker._fd, tracker._pid = w, None   # a pipe of our own stands in for the tracker's
out = []
for name in json.loads(sys.argv[1]):
    got = {}
    for who, send in (("stdlib", lambda n: resource_tracker.register(n, "shared_memory")),
                      ("ferroshm", lambda n: ferroshm._native.tracker_send("REGISTER", n))):
        try:
            send(name)
        except (ValueError, UnicodeError) as e:
            got[who] = "refused"
            continue
        data = os.read(r, 4096).split(b"\n")
        got[who] = [line.decode() for line in data if line and b"PROBE" not in line]
    out.append(got)
tracker._fd = None
print(json.dumps(out))
"""


@pytest.mark.parametrize("simple_format", ["default", "true", "false"])
def test_tracker_messages_are_the_standard_librarys_byte_for_byte(simple_format):
    """Both writers, pointed at one pipe: the same bytes for every name the
    running standard library can send, and refused by both where it cannot
    (3.14+'s ``_use_simple_format`` switched both ways, as CPython's tests do)."""
    names = ["/psm_0123abcd", "/plain"] + ["/x" + odd for odd in TRACKER_NAMES]
    import json

    proc = run_python(TRACKER_BYTES.replace("sys.argv[1]", repr(json.dumps(names))).replace("sys.argv[2]", repr(simple_format)))
    results = json.loads(proc.stdout)
    for name, got in zip(names, results):
        if stdlib_can_track_in(name, simple_format):
            assert got["ferroshm"] == got["stdlib"] != "refused", name
        else:
            # What the running tracker cannot parse (before 3.14, a name
            # with ':', which the stdlib sends anyway: gh-98896).
            assert got["ferroshm"] == "refused", name
    line_format = not hasattr(resource_tracker, "_decode_message") or simple_format == "true" or (
        simple_format == "default" and getattr(resource_tracker._resource_tracker, "_use_simple_format", True)
    )
    if line_format:
        assert results[0]["ferroshm"] == ["REGISTER:/psm_0123abcd:shared_memory"]
    else:
        assert results[0]["ferroshm"][0].startswith('{"cmd":"REGISTER"')


def stdlib_can_track_in(name, simple_format):
    if simple_format == "default" or not hasattr(resource_tracker, "_decode_message"):
        return stdlib_can_track(name)
    simple = simple_format == "true" and "\n" not in name
    return name.isascii() if simple else len(name.encode()) <= 255


ODD_NAMES_LEFT = r"""
import json, sys
import ferroshm
made = []
for name in json.loads(sys.argv[1]):
    try:
        shm = ferroshm.SharedMemory(name, create=True, size=8)
    except ValueError:
        continue
    made.append(shm.name)
print(json.dumps(made), flush=True)
# exit without unlinking: the tracker must remove every tracked one
"""


def test_the_tracker_removes_odd_names_it_was_given(shm_name):
    """Every name ferroshm registered, in whatever format, is one the
    running tracker parses: a creator that exits without unlinking leaves
    nothing, and the tracker prints no traceback."""
    import json

    names = [shm_name + str(i) + odd for i, odd in enumerate(TRACKER_NAMES)]
    proc = run_python(ODD_NAMES_LEFT.replace("sys.argv[1]", repr(json.dumps(names))))
    made = json.loads(proc.stdout)
    assert made == [n for n in names if stdlib_can_track("/" + n)]
    for name in names:
        assert not (SHM_DIR / name).exists() if "\n" not in name else name not in segments()
    assert "Traceback" not in proc.stderr, proc.stderr
    if made:
        assert f"{len(made)} leaked shared_memory objects" in proc.stderr


SMALL_SHM = """
import errno, os, sys
import {mod} as sm
try:
    s = sm.SharedMemory(create=True, size=64 << 20)
except OSError as e:
    print("refused", errno.errorcode[e.errno], sorted(os.listdir("/dev/shm")))
    sys.exit(0)
s.buf[:] = b"x" * len(s.buf)
print("wrote")
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_full_dev_shm_is_enospc_not_sigbus():
    # A private mount namespace with a 16 MiB tmpfs on /dev/shm, like a
    # container's: the standard library dies of SIGBUS on the first write.
    script = SMALL_SHM.format(mod="ferroshm")
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         'mount --make-rprivate / && mount -t tmpfs -o size=16m tmpfs /dev/shm && exec "$0" -c "$1"',
         sys.executable, script],
        capture_output=True, text=True, timeout=60,
    )
    if "mount" in proc.stderr and proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "refused ENOSPC []"


def test_patch_stdlib_installs_module():
    code = (
        "import ferroshm; ferroshm.patch_stdlib()\n"
        "from multiprocessing import shared_memory\n"
        "import multiprocessing\n"
        "assert shared_memory is ferroshm.shared_memory\n"
        "assert multiprocessing.shared_memory.SharedMemory is ferroshm.SharedMemory\n"
        "print('ok')"
    )
    assert run_python(code).stdout.strip() == "ok"


RECREATED = """
import multiprocessing as mp, sys
import ferroshm as sm

def unlink_in_child(name):
    sm.SharedMemory(name).unlink()  # UNREGISTER goes to the shared tracker

if __name__ == "__main__":
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()  # so that a's registration is remembered
    a = sm.SharedMemory(create=True, size=8)
    assert a._name in sm._native.tracker_registrations()[0]
    p = mp.get_context("fork").Process(target=unlink_in_child, args=(a.name,))
    p.start(); p.join()
    # Same name, new object; this process last registered the old one.
    b = sm.SharedMemory(a.name, create=True, size=8, track=False)
    c = sm.SharedMemory(a.name)  # must register the new object
    print(a.name, flush=True)
    # Exit without unlinking: the tracker must remove the segment.
"""


def test_reattach_after_recreation_registers_again():
    proc = run_python(RECREATED)
    name = proc.stdout.strip()
    assert "1 leaked shared_memory objects" in proc.stderr
    assert name not in segments()


# --- sparse segments: reserve=False, FERROSHM_RESERVE=0 -----------------------


def test_reserve_false_makes_a_sparse_segment(shm_name):
    size = 1 << 30
    with SharedMemory(shm_name, create=True, size=size, reserve=False) as sparse:
        assert sparse.size == size
        assert os.stat(SHM_DIR / shm_name).st_blocks == 0  # no page taken yet
        sparse.buf[size - 1] = 1  # touching one page takes one page
        assert os.stat(SHM_DIR / shm_name).st_blocks * 512 <= 64 << 10
        sparse.unlink()
    with SharedMemory(shm_name, create=True, size=1 << 20) as reserved:
        assert os.stat(SHM_DIR / shm_name).st_blocks * 512 >= 1 << 20
        reserved.unlink()


SPARSE_IN_SMALL_SHM = """
import errno, json, os
import ferroshm as sm
out = {}
def attempt(key, **kwargs):
    try:
        s = sm.SharedMemory(create=True, size=64 << 20, **kwargs)
    except OSError as e:
        out[key] = errno.errorcode[e.errno]
        return
    s.buf[:1 << 20] = b"x" * (1 << 20)   # "allocate the maximum, use some"
    s.buf[-1] = 1
    out[key] = ["ok", os.stat("/dev/shm/" + s.name).st_blocks * 512 // 1024]
    s.close()
    s.unlink()
attempt("default")
attempt("sparse", reserve=False)
attempt("reserved", reserve=True)
with sm.SharedMemoryManager() as smm:
    try:
        s = smm.SharedMemory(64 << 20)
        s.buf[-1] = 1
        out["manager"] = "ok"
        s.close()
    except OSError as e:
        out["manager"] = errno.errorcode[e.errno]
out["left"] = os.listdir("/dev/shm")
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
@pytest.mark.parametrize("env", ["", "0"])
def test_sparse_segments_in_a_small_dev_shm(env):
    """A 64 MiB segment in a 16 MiB /dev/shm: refused with ENOSPC where
    pages are reserved (the default, or FERROSHM_RESERVE unset), created
    sparse with reserve=False or FERROSHM_RESERVE=0, where a 1 MiB write and
    the last page use 2 MiB of the tmpfs."""
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         'mount --make-rprivate / && mount -t tmpfs -o size=16m tmpfs /dev/shm && exec "$0" -c "$1"',
         sys.executable, SPARSE_IN_SMALL_SHM],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "FERROSHM_RESERVE": env},
    )
    assert proc.returncode == 0, proc.stderr
    out = __import__("json").loads(proc.stdout)
    sparse = ["ok", 1024 + os.sysconf("SC_PAGE_SIZE") // 1024]
    assert out == {
        "default": sparse if env == "0" else "ENOSPC",
        "sparse": sparse,
        "reserved": "ENOSPC",
        "manager": "ok" if env == "0" else "ENOSPC",
        "left": [],
    }


def test_a_bad_ferroshm_reserve_is_an_error_naming_it():
    proc = run_python("import ferroshm", check=False, env={"FERROSHM_RESERVE": "maybe"})
    assert proc.returncode != 0
    assert "FERROSHM_RESERVE='maybe'" in proc.stderr
