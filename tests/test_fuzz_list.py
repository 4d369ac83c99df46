"""Fuzzing ShareableList's reader (issue 5): corrupt, truncated and hostile
segment bytes give ValueError (UnicodeDecodeError is one), never a crash,
an access outside the segment, a hang, or an allocation proportional to a
forged length.

The fuzzer (helpers_robustness/list_fuzz.py) runs in a child interpreter
whose address space is capped, so a crash or a large allocation fails the
test instead of the runner. ``make fuzz`` runs it much longer, and also the
Rust harness in fuzz/, which puts each input right against unmapped guard
pages so that any read or write outside the block faults.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_python
from helpers_robustness.report import FUZZ_ENV, fuzz_examples, last_json_line, report

pytest.importorskip("hypothesis")

SCRIPT = Path(__file__).parent / "helpers_robustness" / "list_fuzz.py"


@pytest.mark.timeout(3600)
def test_fuzz_list_reader(request):
    examples = fuzz_examples(600, scale=20)  # per strategy; three strategies
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=3000,  # a hang fails here
        env={**os.environ, FUZZ_ENV: str(examples)},
    )
    assert proc.returncode == 0, (
        f"list fuzzer failed (exit {proc.returncode})\n"
        f"--- stdout\n{proc.stdout[-20000:]}\n--- stderr\n{proc.stderr[-20000:]}"
    )
    figures = last_json_line(proc.stdout)
    assert figures["inputs"] >= 3 * examples
    # Both outcomes were exercised: refused at attach, and attached then
    # read item by item (with some items refused).
    assert figures["attached"] > 0 and figures["rejected_at_attach"] > 0
    assert figures["item_errors"] > 0 and figures["hostile_rewrites"] > 0
    assert "leaked shared_memory" not in proc.stderr, proc.stderr
    report(request, figures)


# A child with its address space capped at what it uses plus 256 MiB, and
# tracemalloc on: any allocation sized by a forged length (2**28 items and
# more, so 2 GiB and more) fails there, and a smaller one would show in the
# peak.
FORGED = textwrap.dedent("""
    import json, resource, struct, tracemalloc
    from ferroshm import SharedMemory, ShareableList

    with open("/proc/self/status") as f:
        vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20),) * 2)

    def q(buf, offset, value):
        struct.pack_into("q", buf, offset, value)

    def forge_count(buf, n):            # N items in a 4 KiB segment
        q(buf, 0, n)
    def forge_data_size(buf, d):        # one item, offsets[1] = D
        q(buf, 0, 1); q(buf, 8, 0); q(buf, 16, d)
    def forge_slot(buf, d):             # one 8-byte slot, format "9999999s"
        q(buf, 0, 1); q(buf, 8, 0); q(buf, 16, 8)
        buf[32:40] = b"9999999s"; buf[40] = 1

    CASES = [(forge_count, n) for n in (2**28, 2**40, 2**62, 2**63 - 1, -1, -(2**63))]
    CASES += [(forge_data_size, d) for d in (2**28, 2**40, 2**62, 2**63 - 8, -8)]
    CASES += [(forge_slot, 0)]

    out = {}
    tracemalloc.start()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for forge, value in CASES:
        key = f"{forge.__name__}({value})"
        shm = SharedMemory(create=True, size=4096)
        try:
            forge(shm.buf, value)
            try:
                sl = ShareableList(name=shm.name)
                try:
                    sl[0]
                    outcome = ["read"]
                except ValueError as e:
                    outcome = ["item ValueError", str(e)]
                sl.close()
            except ValueError as e:
                outcome = ["ValueError", str(e)]
            out[key] = outcome
        finally:
            shm.close(); shm.unlink()

    # A hostile peer forges the count under an attached list.
    hostile = {}
    sl = ShareableList([1, "two", b"three", None])
    try:
        ops = {"len": len, "list": list, "tuple": tuple, "repr": repr,
               "sorted": lambda s: sorted(map(str, s)),
               "iter": lambda s: [x for x in s]}
        real = {op: fn(sl) for op, fn in ops.items()}  # before any forging
        for n in (2**28, 2**40, 2**63 - 1, -5):
            q(sl.shm.buf, 0, n)
            for op, fn in ops.items():
                try:
                    r = fn(sl)
                    # "ok" only for the real four items' result.
                    hostile[f"{op}({n})"] = ["ok" if r == real[op] else "wrong", repr(r)[:80]]
                except ValueError as e:
                    hostile[f"{op}({n})"] = ["ValueError", str(e)]
        q(sl.shm.buf, 0, 4)
        assert list(sl) == [1, "two", b"three", None]
    finally:
        sl.close(); sl.unlink()
    peak = tracemalloc.get_traced_memory()[1]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    print(json.dumps({"cases": out, "hostile": hostile, "peak": peak, "rss_kib": rss}))
""")


def test_forged_lengths_allocate_nothing_large():
    proc = run_python(FORGED)
    got = last_json_line(proc.stdout)
    for case, outcome in got["cases"].items():
        # Refused at attach (or, for the slot, at reading the item).
        assert outcome[0] in ("ValueError", "item ValueError"), (case, outcome)
        assert "fit" in outcome[1] or "negative" in outcome[1] or "needs" in outcome[1], (case, outcome)
    for case, outcome in got["hostile"].items():
        if case.startswith("len"):
            # len() re-reads the count (as the standard library's does) and
            # refuses one the segment cannot hold.
            assert outcome[0] == "ValueError", (case, outcome)
        elif case.startswith(("list", "tuple")):
            # A constructor that sizes itself by len() first refuses too,
            # instead of allocating; one that iterates gets the four real
            # items. Which one is the interpreter's choice: list() asks
            # len(), tuple() did before 3.14 and iterates since (GH-127058).
            assert outcome[0] in ("ValueError", "ok"), (case, outcome)
        else:
            # Iteration (and repr, which iterates) uses the count read at
            # attach: the four real items.
            assert outcome[0] == "ok", (case, outcome)
    # Nothing near a forged length was allocated: 2**28 items would be 2 GiB.
    assert got["peak"] < 4 << 20, got["peak"]
    assert got["rss_kib"] < 64 << 10, got["rss_kib"]


def test_truncated_list_is_refused_at_every_length(shm_name):
    # Every prefix of a valid list's bytes, in a segment of exactly that size.
    from ferroshm import ShareableList, SharedMemory

    with ShareableList([1, "héllo", b"bytes", None, True, 2.5, "x" * 30], name=shm_name) as sl:
        full = bytes(sl.shm.buf)
        want = list(sl)
        sl.unlink()
    outcomes = set()
    for cut in range(1, len(full) + 1):
        shm = SharedMemory(create=True, size=cut)
        try:
            shm.buf[:] = full[:cut]
            try:
                got = ShareableList(name=shm.name)
            except ValueError as e:
                outcomes.add("refused")
                assert "ShareableList" in str(e)
                continue
            with got:
                # Only the complete layout attaches, and reads back intact.
                assert cut == len(full)
                assert list(got) == want
                outcomes.add("attached")
        finally:
            shm.close()
            shm.unlink()
    assert outcomes == {"refused", "attached"}
