"""A program that installs ferroshm the documented way, then starts a spawn
child and a manager: prints what the child and the manager use, as JSON."""

import ferroshm

ferroshm.patch_stdlib()

import json  # noqa: E402
import multiprocessing  # noqa: E402
import multiprocessing.managers  # noqa: E402
from multiprocessing import shared_memory  # noqa: E402


def report(queue) -> None:
    from multiprocessing.managers import SharedMemoryManager

    queue.put(
        {
            "manager": SharedMemoryManager.__module__,
            "shared_memory": shared_memory.SharedMemory.__module__,
        }
    )


def main() -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=report, args=(queue,))
    child.start()
    in_child = queue.get()
    child.join()
    with multiprocessing.managers.SharedMemoryManager(ctx=ctx) as smm:
        shm = smm.SharedMemory(16)
        sl = smm.ShareableList([1])
        result = {
            "child": in_child,
            "shm_type": f"{type(shm).__module__}.{type(shm).__qualname__}",
            "list_type": f"{type(sl).__module__}.{type(sl).__qualname__}",
        }
        shm.close()
        sl.shm.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
