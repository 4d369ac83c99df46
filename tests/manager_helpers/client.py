"""Connect to a running SharedMemoryManager, allocate through it, exit.

Usage: python client.py IMPL ADDRESS_JSON AUTHKEY_HEX

A process of its own process tree, with its own resource tracker, like a
client started from another terminal. Allocates a SharedMemory(64) starting
with b"client!" and a ShareableList(["from", "client", 42]), prints
{"shm": name, "list": name} as JSON, and exits without closing anything.
"""

import json
import sys


def main() -> None:
    impl, address, authkey = sys.argv[1], json.loads(sys.argv[2]), bytes.fromhex(sys.argv[3])
    if isinstance(address, list):
        address = tuple(address)
    if impl == "ferroshm":
        from ferroshm import SharedMemoryManager
    else:
        from multiprocessing.managers import SharedMemoryManager
    smm = SharedMemoryManager(address=address, authkey=authkey)
    smm.connect()
    shm = smm.SharedMemory(64)
    shm.buf[:7] = b"client!"
    sl = smm.ShareableList(["from", "client", 42])
    print(json.dumps({"shm": shm.name, "list": sl.shm.name}), flush=True)


if __name__ == "__main__":
    main()
