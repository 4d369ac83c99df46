"""Start a SharedMemoryManager, allocate through it, report, then wait.

Usage: python owner.py IMPL START_METHOD

IMPL is "ferroshm" or "stdlib". Prints one JSON line, {"server_pid": ...,
"names": [...]}, with the names of the segments it allocated (unnamed and,
with ferroshm, named SharedMemory and ShareableList), then blocks reading
stdin: the test kills it.
"""

import json
import multiprocessing
import sys


def main() -> None:
    impl, method = sys.argv[1], sys.argv[2]
    if impl == "ferroshm":
        from ferroshm import SharedMemoryManager
    else:
        from multiprocessing.managers import SharedMemoryManager
    smm = SharedMemoryManager(ctx=multiprocessing.get_context(method))
    smm.start()
    shm = smm.SharedMemory(4096)
    shm.buf[:5] = b"owner"
    sl = smm.ShareableList([1, "two", None])
    names = [shm.name, sl.shm.name]
    if impl == "ferroshm":
        tag = f"fshm_owner_{smm._process.pid}"
        names.append(smm.SharedMemory(100, name=tag + "_shm").name)
        names.append(smm.ShareableList([3.5], name=tag + "_list").shm.name)
    print(json.dumps({"server_pid": smm._process.pid, "names": names}), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
