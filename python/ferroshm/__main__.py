"""The ferroshm command line: list, inspect and remove shared-memory segments.

    python -m ferroshm ls [--json]          segments in /dev/shm: name, size, owner, mode, age, kind
    python -m ferroshm inspect NAME [--json] [--bytes N]
                                            a ShareableList's items, or a raw segment's first bytes
    python -m ferroshm rm NAME...           remove segments (shm_unlink)
    python -m ferroshm bench [ARGS...]      the side-by-side benchmark against the standard library

Also installed as the `ferroshm` console script. NAME is a segment's name
as Python's SharedMemory.name gives it (a leading '/' is accepted).

A segment's kind is `shareable_list` when its bytes are a valid
ShareableList (the header and every item read back; a zero-filled segment
counts as an empty list only when it is exactly 16 bytes, the size of one),
`raw` when they are not, and `unknown` when it cannot be opened (e.g. no
read permission). Inspecting opens segments read-only, never writes them and
never registers them with the resource tracker, so it cannot change or
remove what it looks at.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pwd
import stat
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import _native

# Where segments appear as files on this platform (None: nowhere, e.g. macOS).
SHM_DIR = None if _native.SEGMENT_DIR is None else Path(_native.SEGMENT_DIR)
PROG = "ferroshm"
EMPTY_LIST_SIZE = 16


class CommandError(Exception):
    """A failure reported as one line on stderr, with exit status 1."""


# --- segments -------------------------------------------------------------------------------


def _os_name(name: str) -> str:
    """The ``shm_open`` name of a segment given as Python gives it."""
    bare = name.lstrip("/")
    if not bare or "/" in bare or "\0" in bare:
        raise CommandError(f"invalid segment name {name!r}")
    return _native.os_name(bare)


def _classify(os_name: str, size: int) -> tuple[str, list[tuple[str, Any]] | None]:
    """The kind of a segment, and its ``(format, value)`` items if it is a list."""
    try:
        items = _native.read_list(os_name)
    except ValueError:  # not a valid list (UnicodeDecodeError is a ValueError too)
        return "raw", None
    except FileNotFoundError:
        raise
    except OSError:
        return "unknown", None
    if not items and size != EMPTY_LIST_SIZE:
        # Any zero-filled block reads as an empty list; only a block of
        # exactly an empty list's size is taken for one.
        return "raw", None
    return "shareable_list", items


def _open_read_only(os_name: str) -> _native.Segment:
    """The segment mapped read-only; nothing registers it with the resource tracker."""
    return _native.Segment.open(os_name, os.O_RDONLY)


def _info(entry: os.DirEntry[str]) -> dict[str, Any] | None:
    """What ``ls`` shows about one /dev/shm entry, or None if it is not a segment."""
    if entry.name.startswith("sem."):  # POSIX semaphores live here too
        return None
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        kind, items = _classify(_native.os_name(entry.name), st.st_size)
    except FileNotFoundError:  # removed meanwhile
        return None
    return {
        "name": entry.name,
        "size": st.st_size,
        "uid": st.st_uid,
        "owner": _owner(st.st_uid),
        "mode": stat.S_IMODE(st.st_mode),
        "mtime": st.st_mtime,
        "kind": kind,
        "items": None if items is None else len(items),
    }


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{int(seconds // length)}{unit}"
    return f"{int(seconds)}s"


def _segment_dir() -> Path:
    if SHM_DIR is None:
        raise CommandError("this platform has no directory of segments to list (Linux has /dev/shm)")
    if not SHM_DIR.is_dir():
        raise CommandError(f"{SHM_DIR} does not exist: listing segments needs Linux's /dev/shm")
    return SHM_DIR


# --- commands -------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    with os.scandir(_segment_dir()) as entries:
        infos = [info for info in map(_info, entries) if info is not None]
    infos.sort(key=lambda i: i["name"])
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    now = time.time()
    rows = [("NAME", "SIZE", "OWNER", "MODE", "AGE", "KIND")]
    for i in infos:
        kind = i["kind"] if i["items"] is None else f"{i['kind']} ({i['items']} items)"
        mode = stat.filemode(stat.S_IFREG | i["mode"])[1:]
        rows.append((i["name"], str(i["size"]), i["owner"], mode, _age(now - i["mtime"]), kind))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].rjust(widths[1])]
        cells += [cell.ljust(w) for cell, w in zip(r[2:-1], widths[2:])]
        print("  ".join(cells + [r[-1]]))
    return 0


def _json_item(value: Any) -> Any:
    """An item as JSON, in the forms examples/list_tool.rs uses."""
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return value


def cmd_inspect(args: argparse.Namespace) -> int:
    os_name = _os_name(args.name)
    name = _native.reported_name(os_name)
    try:
        segment = _open_read_only(os_name)
    except FileNotFoundError:
        raise CommandError(f"no shared memory segment named {name!r}") from None
    except OSError as e:
        raise CommandError(f"cannot open {name!r}: {e.strerror or e}") from None
    except ValueError:  # it exists, with no bytes to map
        size, kind, items, data = 0, "raw", None, b""
    else:
        try:
            size = segment.size
            kind, items = _classify(os_name, size)
            data = b""
            if items is None:
                with segment.memoryview() as view:
                    data = bytes(view[: args.bytes])
        except FileNotFoundError:  # removed meanwhile
            raise CommandError(f"no shared memory segment named {name!r}") from None
        finally:
            segment.close()
    if args.json:
        out: dict[str, Any] = {"name": name, "size": size, "kind": kind}
        if items is not None:
            out["items"] = [{"format": f, "value": _json_item(v)} for f, v in items]
        else:
            out["bytes"] = data.hex()
        print(json.dumps(out, indent=2))
        return 0
    if items is not None:
        print(f"{name}: shareable_list, {len(items)} items, {size} bytes")
        width = max((len(f) for f, _ in items), default=0)
        for i, (fmt, value) in enumerate(items):
            print(f"  [{i}]  {fmt:<{width}}  {value!r}")
    else:
        shown = f", first {len(data)} shown" if len(data) < size else ""
        print(f"{name}: raw, {size} bytes{shown}")
        for line in _hexdump(data):
            print("  " + line)
    return 0


def _hexdump(data: bytes) -> list[str]:
    """``hexdump -C`` style lines: offset, 16 bytes in hex, and as ASCII."""
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        hexpart = "  ".join(chunk[i : i + 8].hex(" ") for i in range(0, len(chunk), 8))
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{off:08x}  {hexpart:<48}  |{text}|")
    return lines


def cmd_rm(args: argparse.Namespace) -> int:
    if os.name == "nt":  # pragma: no cover - the Python layer is not run on Windows here
        # As CPython's SharedMemory.unlink(): nothing removes a section by name.
        raise CommandError("Windows cannot remove a segment: it goes when its last handle is closed")
    status = 0
    for given in args.names:
        try:
            os_name = _os_name(given)
            _native.unlink(os_name)
        except CommandError as e:
            _error(str(e))
            status = 1
        except FileNotFoundError:
            _error(f"no shared memory segment named {given.lstrip('/')!r}")
            status = 1
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            _error(f"cannot remove {given.lstrip('/')!r}: {reason}")
            status = 1
    return status


def _find_bench() -> Path | None:
    """benches/bench.py of the source checkout this package runs from, if any."""
    root = Path(__file__).resolve().parent.parent.parent
    bench = root / "benches" / "bench.py"
    if bench.is_file() and (root / "Cargo.toml").is_file():
        return bench
    return None


def cmd_bench(argv: Sequence[str]) -> int:
    path = _find_bench()
    if path is None:
        raise CommandError(
            "the benchmark is not installed with the package: run it from a source checkout "
            "of ferroshm, with `python -m ferroshm bench` or `python benches/bench.py`"
        )
    saved_argv, saved_path = sys.argv, list(sys.path)
    # As if run as a script: its folder first on the path (for any helper
    # modules beside it), and its argparse naming the program as we do.
    sys.path.insert(0, str(path.parent))
    sys.argv = [f"{PROG} bench", *argv]
    try:
        spec = importlib.util.spec_from_file_location("ferroshm_bench", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        result = module.main(list(argv))
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return result if isinstance(result, int) else 0


# --- entry point ----------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List, inspect and remove POSIX shared-memory segments, "
        "and run ferroshm's benchmark.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    ls = sub.add_parser("ls", help="list the segments in /dev/shm")
    ls.add_argument("--json", action="store_true", help="print a JSON list of objects")
    inspect = sub.add_parser("inspect", help="show a ShareableList's items or a raw segment's first bytes")
    inspect.add_argument("name", metavar="NAME")
    inspect.add_argument("--json", action="store_true", help="print a JSON object")
    inspect.add_argument(
        "--bytes", type=_non_negative, default=256, metavar="N", help="bytes of a raw segment to show (256)"
    )
    rm = sub.add_parser("rm", help="remove segments")
    rm.add_argument("names", nargs="+", metavar="NAME")
    sub.add_parser("bench", help="run the side-by-side benchmark against the standard library (ARGS go to it)")
    return parser


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``);
    return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "bench":
            return cmd_bench(argv[1:])
        args = _parser().parse_args(argv)
        commands = {"ls": cmd_ls, "inspect": cmd_inspect, "rm": cmd_rm}
        return commands[args.command](args)
    except CommandError as e:
        _error(str(e))
        return 1
    except BrokenPipeError:
        # Output piped into e.g. `head`: stop quietly, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
