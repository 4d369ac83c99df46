"""Child processes for tests/test_faults.py: each mode is a program that a
fault (SIGKILL, SIGINT, SIGALRM, a full /dev/shm) hits at a random moment.

    python fault_child.py create-loop PREFIX STATE_NAME
        Create segments and lists (large ones too, so that most of the time
        is spent creating) under names starting with PREFIX, forever, keeping
        the last few; byte 0 of the segment STATE_NAME says whether a create
        call is under way (1) or not (0), byte 1 counts completed creates.
        Prints "ready", then the name of each completed segment.

    python fault_child.py sigint-loop PREFIX KIND
        Create and unlink segments (KIND "shm") or lists ("list") until a
        KeyboardInterrupt; print a JSON line saying whether the interrupted
        constructor had returned and whether its segment exists.

    python fault_child.py alarm-create SIZE_MIB INTERVAL
        Create one segment and one list while SIGALRM fires every INTERVAL
        seconds into a Python handler; print a JSON summary.

    python fault_child.py full-shm
        Run inside a small tmpfs on /dev/shm: fill it, overfill it, check the
        survivors; print a JSON summary.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import random
import signal
import sys

import ferroshm
from ferroshm import ShareableList, SharedMemory
from ferroshm import shared_memory as fsm


def create_loop(prefix: str, state_name: str) -> None:
    counter = itertools.count()
    # The default, random-name path, with names this test can find.
    fsm._make_filename = lambda: f"/{prefix}_r{next(counter)}"
    state = SharedMemory(state_name, track=False)
    keep = []
    rng = random.Random()
    print("ready", flush=True)
    for i in itertools.count():
        kind = rng.random()
        size = rng.choice([4096, 1 << 20, 16 << 20, 48 << 20])
        state.buf[0] = 1
        if kind < 0.35:
            obj = SharedMemory(create=True, size=size)
        elif kind < 0.6:
            obj = SharedMemory(f"{prefix}_n{i}", create=True, size=size)
        elif kind < 0.8:
            obj = ShareableList(range(rng.choice([10, 10_000, 200_000])), name=f"{prefix}_l{i}")
        else:
            obj = ShareableList([b"x" * 100] * rng.choice([10, 10_000, 100_000]))
        state.buf[0] = 0
        state.buf[1] = (state.buf[1] + 1) % 256
        shm = obj.shm if isinstance(obj, ShareableList) else obj
        shm.buf[shm.size - 1] = 7
        print(shm.name, flush=True)
        keep.append(obj)
        if len(keep) > 3:
            old = keep.pop(0)
            old.close()
            old.unlink()


def sigint_loop(prefix: str, kind: str) -> None:
    rng = random.Random()
    i, name, obj = -1, None, None
    print("ready", flush=True)
    try:
        # Everything inside the try: under load the signal may come early.
        while True:
            i += 1
            obj = None
            name = f"{prefix}_{i}"
            if kind == "shm":
                obj = SharedMemory(name, create=True, size=rng.choice([32 << 20, 96 << 20]))
            else:
                seq = list(range(rng.choice([100_000, 300_000])))
                obj = ShareableList(seq, name=name)
            obj.close()
            obj.unlink()
    except KeyboardInterrupt:
        returned = obj is not None
        exists = name is not None and os.path.exists(f"/dev/shm/{name}")
        if returned:
            # The caller got the object: cleaning up is its job.
            obj.close()
            if exists:
                obj.unlink()
        print(json.dumps({"creates": i, "returned": returned, "exists": exists}), flush=True)


def alarm_create(size_mib: int, interval: float) -> None:
    fired = 0

    def handler(signum, frame):
        nonlocal fired
        fired += 1

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    try:
        shm = SharedMemory(create=True, size=size_mib << 20)
        shm.buf[-1] = 1
        items = list(range(1_000_000))
        sl = ShareableList(items)
        ok = sl[-1] == 999_999 and len(sl) == 1_000_000
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    names = [shm.name, sl.shm.name]
    size = shm.size
    shm.close()
    shm.unlink()
    sl.close()
    sl.unlink()
    print(json.dumps({"size": size, "list_ok": ok, "fired": fired, "names": names}), flush=True)


def full_shm() -> None:
    out = {}
    listing = lambda: sorted(os.listdir("/dev/shm"))  # noqa: E731
    made = []
    # Fill it, 4 MiB at a time, until it refuses.
    while True:
        try:
            made.append(SharedMemory(create=True, size=4 << 20))
        except OSError as e:
            out["fill_error"] = [type(e).__name__, errno.errorcode.get(e.errno), str(e)]
            break
        if len(made) > 64:
            raise SystemExit("a 16 MiB tmpfs took 256 MiB")
    out["filled"] = len(made)
    out["after_fill"] = listing() == sorted(s.name for s in made)
    # Too big, whatever the kind of object: refused, nothing left.
    for key, make in [
        ("big_shm", lambda: SharedMemory(create=True, size=64 << 20)),
        ("big_named", lambda: SharedMemory("big_named", create=True, size=64 << 20)),
        ("big_list", lambda: ShareableList([b"x" * 1_000_000] * 20)),
        ("big_named_list", lambda: ShareableList([b"x" * 1_000_000] * 20, name="big_list")),
    ]:
        try:
            make()
            out[key] = "created"
        except OSError as e:
            out[key] = [type(e).__name__, errno.errorcode.get(e.errno)]
        out[key + "_left_nothing"] = listing() == sorted(s.name for s in made)
    # The survivors are whole: every byte can be written (pages were
    # reserved at creation, so no SIGBUS) and read back.
    for i, s in enumerate(made):
        s.buf[:] = bytes([i + 1]) * s.size
    out["survivors_intact"] = all(bytes(s.buf) == bytes([i + 1]) * s.size for i, s in enumerate(made))
    # Room made, room used.
    last = made.pop()
    last.close()  # pages are freed when the last mapping goes
    last.unlink()
    again = SharedMemory(create=True, size=4 << 20)
    again.buf[:] = b"y" * again.size
    made.append(again)
    out["after_room"] = "ok"
    for s in made:
        s.close()
        s.unlink()
    out["end"] = listing()
    print(json.dumps(out), flush=True)


# --- managers -------------------------------------------------------------------


def _authkey(smm) -> bytes:
    return bytes(getattr(smm, "authkey", None) or smm._authkey)


def _allocate_forever(smm, prefix: str, rng: random.Random) -> None:
    """Allocate through ``smm`` forever, printing each completed name.
    Random names (the default path) get ``prefix`` so the test finds them."""
    counter = itertools.count()
    fsm._make_filename = lambda: f"/{prefix}_r{next(counter)}"
    for i in itertools.count():
        kind = rng.random()
        size = rng.choice([4096, 1 << 20, 16 << 20, 48 << 20])
        if kind < 0.4:
            obj = smm.SharedMemory(size)
        elif kind < 0.7:
            obj = smm.SharedMemory(size, name=f"{prefix}_n{i}")
        elif kind < 0.85:
            obj = smm.ShareableList(range(rng.choice([10, 10_000])), name=f"{prefix}_l{i}")
        else:
            obj = smm.ShareableList([b"x" * 64] * rng.choice([10, 10_000]))
        shm = obj.shm if isinstance(obj, ShareableList) else obj
        print(shm.name, flush=True)
        obj.close()


def manager_owner(prefix: str, then: str) -> None:
    """Start a manager and say where it is; then ``allocate`` forever, or
    ``wait`` for commands on stdin ("alloc", "after-server-kill")."""
    smm = ferroshm.SharedMemoryManager()
    smm.start()
    print(json.dumps({"address": smm.address, "authkey": _authkey(smm).hex(),
                      "server_pid": smm._process.pid}), flush=True)
    rng = random.Random()
    if then == "allocate":
        _allocate_forever(smm, prefix, rng)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "alloc":
            names = [smm.SharedMemory(4096).name, smm.SharedMemory(1 << 20, name=f"{prefix}_a").name,
                     smm.ShareableList([1, "x"], name=f"{prefix}_b").shm.name]
            print(json.dumps(names), flush=True)
        elif cmd == "after-server-kill":
            out = {}
            for key, call in [("SharedMemory", lambda: smm.SharedMemory(4096)),
                              ("ShareableList", lambda: smm.ShareableList([1]).shm)]:
                try:
                    shm = call()
                    out[key] = ["returned", shm.name]
                    shm.close()
                except BaseException as e:
                    out[key] = [type(e).__name__, isinstance(e, OSError), str(e)]
            try:
                smm.shutdown()
                out["shutdown"] = "ok"
            except BaseException as e:
                out["shutdown"] = [type(e).__name__, str(e)]
            print(json.dumps(out), flush=True)
            return


def manager_client(address: str, authkey: str, prefix: str) -> None:
    """Connect to a running manager and allocate through it forever."""
    smm = ferroshm.SharedMemoryManager(address=address, authkey=bytes.fromhex(authkey))
    smm.connect()
    print("ready", flush=True)
    _allocate_forever(smm, prefix, random.Random())


def manager_sigint(prefix: str) -> None:
    """Allocate large segments through a manager until SIGINT; then check the
    manager still works and shut it down."""
    smm = ferroshm.SharedMemoryManager()
    smm.start()
    counter = itertools.count()
    fsm._make_filename = lambda: f"/{prefix}_r{next(counter)}"
    names = []
    interrupted_in = None
    print("ready", flush=True)
    try:
        for i in itertools.count():
            if i % 2:
                names.append(smm.SharedMemory(64 << 20, name=f"{prefix}_n{i}").name)
            else:
                names.append(smm.ShareableList(list(range(300_000))).shm.name)
    except KeyboardInterrupt as e:
        import traceback

        interrupted_in = traceback.extract_tb(e.__traceback__)[-1].name
    out = {"interrupted_in": interrupted_in, "allocated": len(names)}
    # The manager is still usable, and answers this call, not the one that
    # was interrupted.
    shm = smm.SharedMemory(4096)
    out["after"] = [shm.size, len(shm.buf)]
    sl = smm.ShareableList([1, "two"])
    out["list_after"] = list(sl)
    sl.close()
    shm.close()
    smm.shutdown()
    out["names"] = names + [shm.name, sl.shm.name]
    print(json.dumps(out), flush=True)


def manager_full() -> None:
    """In a small tmpfs: a manager's allocation that does not fit."""
    out = {}
    listing = lambda: sorted(os.listdir("/dev/shm"))  # noqa: E731
    # What takes room: the manager's unused placeholders are empty.
    sized = lambda: [n for n in listing() if os.stat("/dev/shm/" + n).st_size]  # noqa: E731
    with ferroshm.SharedMemoryManager() as smm:
        for key, call in [("big", lambda: smm.SharedMemory(64 << 20)),
                          ("big_named", lambda: smm.SharedMemory(64 << 20, name="mgr_big")),
                          ("big_list", lambda: smm.ShareableList([b"x" * 1_000_000] * 20))]:
            try:
                call()
                out[key] = "created"
            except OSError as e:
                out[key] = [type(e).__name__, errno.errorcode.get(e.errno)]
            out[key + "_left_nothing"] = sized() == []
        small = smm.SharedMemory(1 << 20)
        small.buf[:] = b"z" * small.size
        out["small_after"] = small.size
        small.close()
    out["end"] = listing()
    print(json.dumps(out), flush=True)


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "create-loop":
        create_loop(*args)
    elif mode == "sigint-loop":
        sigint_loop(*args)
    elif mode == "alarm-create":
        alarm_create(int(args[0]), float(args[1]))
    elif mode == "full-shm":
        full_shm()
    elif mode == "manager-owner":
        manager_owner(*args)
    elif mode == "manager-client":
        manager_client(*args)
    elif mode == "manager-sigint":
        manager_sigint(*args)
    elif mode == "manager-full":
        manager_full()
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
