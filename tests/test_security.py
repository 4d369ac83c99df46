"""Security (issue 5): segments are created 0o600 and always exclusively, so
creation never attaches to a name someone else prepared; a process of
another uid gets PermissionError; names are validated before any system
call. See docs/threat-model.md for what these tests stand for.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest

from ferroshm import ShareableList, SharedMemory
from ferroshm import shared_memory as fsm

from conftest import SHM_DIR, run_python, segments, stdlib_can_track

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to act as another user")


def _mode(name: str) -> int:
    return stat.S_IMODE(os.stat(SHM_DIR / name).st_mode)


# --- 0o600, whatever the umask -----------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_segments_are_created_0600(umask, shm_name):
    old = os.umask(umask)
    try:
        made = [
            SharedMemory(shm_name + "_a", create=True, size=64),
            SharedMemory(create=True, size=64),
            ShareableList([1, "x"], name=shm_name + "_l").shm,
            ShareableList([None]).shm,
        ]
    finally:
        os.umask(old)
    try:
        for shm in made:
            assert _mode(shm.name) == 0o600, shm.name
            assert os.stat(SHM_DIR / shm.name).st_uid == os.geteuid()
    finally:
        for shm in made:
            shm.close()
            shm.unlink()


# --- exclusive creation ------------------------------------------------------


def _prepare_file(path, content: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["file", "symlink", "directory"])
@pytest.mark.parametrize("what", ["SharedMemory", "ShareableList"])
def test_create_never_takes_over_a_prepared_name(kind, what, shm_name, tmp_path):
    # Someone prepared the name first: a segment with their bytes, a symlink
    # to a file of theirs (or ours), a directory. Creating must fail with
    # FileExistsError and leave what they made exactly as it was.
    path = SHM_DIR / shm_name
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    if kind == "file":
        _prepare_file(path, b"prepared by someone else")
    elif kind == "symlink":
        os.symlink(target, path)
    else:
        os.mkdir(path)
    try:
        with pytest.raises(FileExistsError) as e:
            if what == "SharedMemory":
                SharedMemory(shm_name, create=True, size=4096)
            else:
                ShareableList([1, 2, 3], name=shm_name)
        assert e.value.errno == errno.EEXIST
        if kind == "file":
            assert path.read_bytes() == b"prepared by someone else"
            assert _mode(shm_name) == 0o666 & ~_umask()
        elif kind == "symlink":
            assert os.readlink(path) == str(target)
            assert target.read_bytes() == b"precious"
        else:
            assert path.is_dir() and not any(path.iterdir())
    finally:
        if kind == "directory":
            os.rmdir(path)
        else:
            os.unlink(path)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_attach_never_follows_a_symlink(shm_name, tmp_path):
    # A symlink planted in /dev/shm does not make an attach map the file it
    # points to (shm_open opens with O_NOFOLLOW).
    target = tmp_path / "target"
    target.write_bytes(b"x" * 4096)
    os.symlink(target, SHM_DIR / shm_name)
    try:
        with pytest.raises(OSError) as e:
            SharedMemory(shm_name)
        assert e.value.errno == errno.ELOOP
        with pytest.raises(OSError):
            ShareableList(name=shm_name)
        assert target.read_bytes() == b"x" * 4096
    finally:
        os.unlink(SHM_DIR / shm_name)


def test_random_names_retry_past_prepared_ones(monkeypatch, shm_name):
    # The default (random) name path: when the name drawn is taken, creation
    # draws another; it never opens the taken one.
    taken = [f"/{shm_name}_t{i}" for i in range(3)]
    for name in taken:
        _prepare_file(SHM_DIR / name[1:], b"theirs")
    names = iter(taken + [f"/{shm_name}_free", f"/{shm_name}_free2"])
    monkeypatch.setattr(fsm, "_make_filename", lambda: next(names))
    try:
        shm = SharedMemory(create=True, size=16)
        assert shm._name == f"/{shm_name}_free"
        sl = ShareableList([1, 2])  # goes through the same path
        assert sl.shm._name == f"/{shm_name}_free2"
        for name in taken:
            assert (SHM_DIR / name[1:]).read_bytes() == b"theirs"
        shm.close()
        shm.unlink()
        sl.close()
        sl.unlink()
    finally:
        for name in taken:
            os.unlink(SHM_DIR / name[1:])


def test_random_names_are_unpredictable():
    # 32 random bits from the OS each (the standard library's 8 hex digits):
    # among 4,000 names, 0.0019 pairs collide on average (4000² / 2³³), so a
    # collision happens about once in 500 runs and three or more about once
    # in 10⁹; a flawed source (bytes reused, a narrow seed) collides far more.
    # And the digits are spread out (not a counter, not the pid or the time).
    names = [fsm._make_filename() for _ in range(4000)]
    assert len(names) - len(set(names)) <= 2
    assert all(len(n) == 13 and n.startswith("/psm_") for n in names)
    digits = "".join(n[5:] for n in names)
    counts = [digits.count(c) for c in "0123456789abcdef"]
    assert min(counts) > len(digits) / 16 * 0.8


# --- another uid ---------------------------------------------------------------

AS_NOBODY = textwrap.dedent("""
    import errno, json, os, sys
    import ferroshm                      # imported as root, then drop privileges
    from ferroshm import SharedMemory, ShareableList
    os.setgroups([])
    os.setgid({uid})
    os.setuid({uid})
    assert os.geteuid() == {uid}
    name = {name!r}
    out = {{}}
    def attempt(key, fn):
        try:
            fn()
            out[key] = "ok"
        except OSError as e:
            out[key] = [type(e).__name__, errno.errorcode.get(e.errno)]
    attempt("attach", lambda: SharedMemory(name))
    attempt("attach_untracked", lambda: SharedMemory(name, track=False))
    attempt("list", lambda: ShareableList(name=name))
    attempt("open_file", lambda: os.close(os.open("/dev/shm/" + name, os.O_RDONLY)))
    def unlink_by_name():
        handle = SharedMemory.__new__(SharedMemory)  # never opened: unlink by name alone
        handle._name, handle._track = "/" + name, False
        handle.unlink()
    attempt("unlink", unlink_by_name)
    attempt("create_same", lambda: SharedMemory(name, create=True, size=8))
    print(json.dumps(out))
""")


@needs_root
def test_another_uid_gets_permissionerror(shm_name):
    sl = ShareableList([1, "secret"], name=shm_name)
    try:
        proc = run_python(AS_NOBODY.format(uid=NOBODY, name=shm_name))
        out = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
        assert out["attach"] == ["PermissionError", "EACCES"]
        assert out["attach_untracked"] == ["PermissionError", "EACCES"]
        assert out["list"] == ["PermissionError", "EACCES"]
        assert out["open_file"] == ["PermissionError", "EACCES"]
        # /dev/shm is sticky: only the owner may remove the name.
        assert out["unlink"][0] == "PermissionError"  # EPERM or EACCES
        assert out["create_same"] == ["FileExistsError", "EEXIST"]
        assert list(sl) == [1, "secret"]
    finally:
        sl.close()
        sl.unlink()


@needs_root
def test_segments_of_another_uid_are_refused_to_us_too(shm_name):
    # The other direction, without root's override: a segment made by
    # nobody, opened by a third uid.
    code = textwrap.dedent(f"""
        import os, sys
        import ferroshm
        os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
        s = ferroshm.SharedMemory({shm_name!r}, create=True, size=8, track=False)
        print(oct(os.stat("/dev/shm/{shm_name}").st_mode & 0o777), flush=True)
    """)
    other = textwrap.dedent(f"""
        import os, ferroshm
        os.setgroups([]); os.setgid(65533); os.setuid(65533)
        try:
            ferroshm.SharedMemory({shm_name!r}, track=False)
        except PermissionError:
            print("PermissionError")
    """)
    try:
        assert run_python(code).stdout.strip() == "0o600"
        assert os.stat(SHM_DIR / shm_name).st_uid == NOBODY
        assert run_python(other).stdout.strip() == "PermissionError"
    finally:
        if (SHM_DIR / shm_name).exists():
            os.unlink(SHM_DIR / shm_name)


# --- names are validated before any system call ------------------------------

# Names the running resource tracker cannot carry are bad for tracked
# segments; which they are depends on the version (see stdlib_can_track).
BAD_NAMES = [
    ("nul", "\0a", ValueError, "embedded null character"),
    *[
        (label, suffix, ValueError, "cannot be tracked")
        for label, suffix in [("colon", "a:b"), ("newline", "a\nb"), ("non-ascii", "caf\u00e9")]
        if not stdlib_can_track("/x" + suffix)
    ],
    ("slash", "a/b", OSError, "Invalid argument"),
    ("too long", "x" * 300, OSError, "Invalid argument"),
]


@pytest.mark.parametrize("label, suffix, exc, message", BAD_NAMES, ids=[b[0] for b in BAD_NAMES])
def test_bad_names_are_refused_before_anything_exists(label, suffix, exc, message, shm_name):
    for call in (
        lambda: SharedMemory(shm_name + suffix, create=True, size=8),
        lambda: SharedMemory(shm_name + suffix),
        lambda: ShareableList([1], name=shm_name + suffix),
        lambda: ShareableList(name=shm_name + suffix),
    ):
        with pytest.raises(exc) as e:
            call()
        assert message in str(e.value)
        assert not [n for n in segments() if n.startswith(shm_name)]


STRACED = textwrap.dedent("""
    import ferroshm
    for suffix in {suffixes!r}:
        for call in (
            lambda: ferroshm.SharedMemory({name!r} + suffix, create=True, size=8),
            lambda: ferroshm.SharedMemory({name!r} + suffix),
            lambda: ferroshm.ShareableList([1], name={name!r} + suffix),
            lambda: ferroshm.ShareableList(name={name!r} + suffix),
        ):
            try:
                call()
            except (ValueError, OSError):
                pass
            else:
                raise SystemExit("accepted " + repr(suffix))
    print("refused all")
    # The control: a good name does show up in the trace.
    s = ferroshm.SharedMemory({name!r} + "_control", create=True, size=8)
    s.close()
    s.unlink()
""")


@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace(1)")
def test_bad_names_reach_no_system_call(shm_name, tmp_path):
    # Traced: no system call ever names the segment, not even one that
    # fails (an open, an unlink, a stat...).
    out = tmp_path / "trace"
    # All of them: NUL and tracker-unsafe names are refused by ferroshm, a
    # '/' or an overlong name by the C library, before any system call.
    suffixes = [s for _, s, _, _ in BAD_NAMES]
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-s", "4096", "-e", "trace=%file,%desc,%memory", "-o", str(out),
         sys.executable, "-c", STRACED.format(suffixes=suffixes, name=shm_name)],
        capture_output=True, text=True, timeout=120,
    )
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "refused all"
    trace = out.read_text().splitlines()
    seen = [line for line in trace if shm_name in line and "execve(" not in line]
    # Only the control segment was ever named in a system call.
    assert seen and all(shm_name + "_control" in line for line in seen), seen
