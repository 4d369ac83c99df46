#!/usr/bin/env python3
"""The real-client suite: third-party libraries' own tests, on the stdlib and on ferroshm.

`make test-clients` builds a ferroshm wheel and runs this. For each library of
libraries.py it runs the library's own tests (from its pinned sdist) twice,
each in a private /dev/shm (a new mount namespace with a tmpfs of its own):

* **stdlib**: as they are;
* **ferroshm**: with clients/site/sitecustomize.py calling
  ``ferroshm.patch_stdlib()`` in every Python process they start.

It compares the outcome of every test between the two runs and fails (exit
status 1) when a test's outcome differs, or when the ferroshm run leaves more
segments in /dev/shm than the stdlib run did for the same test (segments a
library leaves with the stdlib too are reported, not failed: they are the
library's). A test whose outcomes differ is run again, alone with the others
that differed, twice in each mode, when a library has at most --rerun-limit
of them: it *differs* when no outcome of one mode is ever an outcome of the
other, and is *flaky* (reported, not failed) when they overlap. More
differences than that are a systematic break and are not run again. A test
libraries.py lists as a known difference (something ferroshm deliberately
does differently, documented in the README) is reported, not failed, as long
as it differs exactly as listed; a listed test that stops differing so fails
the suite, so the list cannot go stale.

Everything goes under target/clients/: the venv (requirements.txt), the
sdists, the extracted trees, the logs and report.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from libraries import LIBRARIES, Library  # noqa: E402

SHM = "/dev/shm"
MODES = ("stdlib", "ferroshm")
# How long a run's leftover processes (resource trackers) get to unlink what
# they track once pytest has exited, before /dev/shm is read.
SETTLE_SECONDS = 10.0
# How long the interpreter running pytest may take to exit once pytest is
# done (multiprocessing joins the children the tests left) before it is
# killed and the run reported as hung at exit.
EXIT_GRACE_SECONDS = 60.0


# --------------------------------------------------------------------------- environment


def _run(cmd, **kwargs):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def prepare_venv(work: Path, python: str) -> Path:
    """target/clients/venv with requirements.txt, reinstalled when it changes."""
    venv = work / "venv"
    requirements = HERE / "requirements.txt"
    stamp = venv / ".requirements.sha256"
    digest = hashlib.sha256(requirements.read_bytes() + python.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    _run([python, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    _run([*pip, "install", "-q", "--upgrade", "pip"])
    _run([*pip, "install", "-q", "-r", str(requirements)])
    stamp.write_text(digest)
    return venv


def install_wheel(venv: Path, wheel: Path) -> None:
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)])


def fetch_sdist(venv: Path, work: Path, lib: Library) -> Path:
    """The library's sdist from PyPI (pip download), checked against its pinned SHA-256."""
    sdists = work / "sdists"
    path = sdists / lib.sdist
    if not path.exists():
        _run([
            str(venv / "bin" / "python"), "-m", "pip", "download", "-q", "--no-deps",
            "--no-binary", lib.name, "-d", str(sdists), f"{lib.name}=={lib.version}",
        ])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != lib.sha256:
        raise SystemExit(f"{path}: SHA-256 {digest}, expected {lib.sha256} (libraries.py)")
    return path


def extract(sdist: Path, dest: Path) -> Path:
    """A fresh copy of the sdist's tree (each run gets its own: runs leave files behind)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, filter="data")
        else:  # pragma: no cover - Pythons without extraction filters
            archive.extractall(dest)
    (top,) = dest.iterdir()
    return top


# --------------------------------------------------------------------------- one run


def pytest_config(tree: Path) -> Path | None:
    """The sdist's own pytest configuration file, found as pytest finds it in a checkout.

    Passed with -c (and --rootdir), so that pytest never climbs out of the
    sdist's tree to this repository's configuration.
    """
    for name, marker in (
        ("pytest.ini", ""),
        (".pytest.ini", ""),
        ("pyproject.toml", "[tool.pytest"),
        ("tox.ini", "[pytest]"),
        ("setup.cfg", "[tool:pytest]"),
    ):
        path = tree / name
        if path.is_file() and marker in path.read_text(errors="replace"):
            return path
    return None


def stop(proc: subprocess.Popen) -> int:
    """End a run cut short, leaving its resource trackers to unlink what they track.

    SIGTERM to pytest's process group ends pytest and the processes its tests
    started; the standard library's resource tracker ignores SIGTERM (and
    SIGINT), so it lives on, sees its last client go and unlinks what is
    still registered, as it would after a normal exit. Without that, the
    segments it tracks would be reported as left behind. (SIGKILL follows for
    what is left once /dev/shm has settled.)
    """
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def inner(args) -> int:
    """Inside the private mount namespace: a tmpfs on /dev/shm, pytest, then what is left."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", SHM], check=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE / "site")
    env["FERROSHM_CLIENTS_MODE"] = args.mode
    env["FERROSHM_CLIENTS_OUTCOMES"] = args.outcomes
    env["FERROSHM_CLIENTS_PROCESSES"] = args.processes
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [args.python, "-m", "pytest", "-p", "ferroshm_clients_plugin", "-p", "no:cacheprovider", "-q", *args.pytest]
    start = time.monotonic()
    with open(args.log, "w") as log:
        proc = subprocess.Popen(cmd, cwd=args.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        timed_out = hung_at_exit = False
        done = Path(args.outcomes + ".done")
        finished = None  # when pytest said it was done
        while (returncode := proc.poll()) is None:
            now = time.monotonic()
            if finished is None and done.exists():
                finished = now
            if now - start > args.timeout or (finished is not None and now - finished > EXIT_GRACE_SECONDS):
                timed_out = finished is None
                hung_at_exit = finished is not None
                returncode = stop(proc)
                break
            time.sleep(0.2)
    seconds = time.monotonic() - start
    deadline = time.monotonic() + SETTLE_SECONDS
    while os.listdir(SHM) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Whatever the tests left running in pytest's process group (not its
    # resource trackers, which have had SETTLE_SECONDS) goes now, so that
    # nothing outlives the namespace's tmpfs.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    Path(args.result).write_text(json.dumps({
        "returncode": returncode,
        "timed_out": timed_out,
        "hung_at_exit": hung_at_exit,
        "seconds": round(seconds, 1),
        "leftovers": sorted(os.listdir(SHM)),
    }))
    return 0


class Run:
    """One pytest run of one library in one mode."""

    def __init__(self, lib: Library, mode: str, attempt: int, work: Path) -> None:
        self.lib, self.mode, self.attempt = lib, mode, attempt
        base = work / "runs" / f"{lib.name}-{mode}-{attempt}"
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        self.base = base
        self.tests: dict[str, dict] = {}
        self.result: dict = {}
        self.processes: Counter = Counter()

    def execute(self, venv: Path, sdist: Path, nodeids: list[str] | None = None) -> Run:
        tree = extract(sdist, self.base / "src")
        namespace = ["unshare", "-m", "--propagation", "private"]
        if os.geteuid() != 0:
            namespace.insert(1, "-r")  # a user namespace, in which the mount is allowed
        config = pytest_config(tree)
        if config is None:
            config = self.base / "pytest.ini"  # none: an empty one
            config.write_text("[pytest]\n")
        pytest = ["-c", str(config), "--rootdir", str(tree), *self.lib.pytest_args, *(nodeids or [])]
        cmd = [
            *namespace, sys.executable, __file__, "inner",
            "--mode", self.mode, "--python", str(venv / "bin" / "python"), "--cwd", str(tree),
            "--timeout", str(self.lib.timeout), "--log", str(self.base / "pytest.log"),
            "--outcomes", str(self.base / "outcomes.jsonl"), "--processes", str(self.base / "processes.txt"),
            "--result", str(self.base / "result.json"), "--", *pytest,
        ]
        subprocess.run(cmd, check=True)
        self.result = json.loads((self.base / "result.json").read_text())
        outcomes = self.base / "outcomes.jsonl"
        if outcomes.exists():
            for line in outcomes.read_text().splitlines():
                test = json.loads(line)
                self.tests[test["nodeid"]] = test
        processes = self.base / "processes.txt"
        if processes.exists():
            for line in processes.read_text().splitlines():
                _pid, _mode, implementation = line.split()
                self.processes[implementation] += 1
        return self

    def counts(self) -> Counter:
        return Counter(test["outcome"] for test in self.tests.values())

    def leftovers_by_test(self) -> Counter:
        """How many segments left at the end each test made (or '<outside tests>')."""
        origin = {}
        for test in self.tests.values():
            for name in test.get("new_segments", ()):
                origin.setdefault(name, test["nodeid"])
        return Counter(origin.get(name, "<outside tests>") for name in self.result["leftovers"])


# --------------------------------------------------------------------------- comparison


def outcome(run: Run, nodeid: str) -> str:
    test = run.tests.get(nodeid)
    if test is not None:
        return test["outcome"]
    return "timeout" if run.result.get("timed_out") else "missing"


def compare(lib: Library, venv: Path, sdist: Path, work: Path, reruns: int, rerun_limit: int) -> dict:
    runs = {mode: Run(lib, mode, 0, work).execute(venv, sdist) for mode in MODES}
    std, fer = runs["stdlib"], runs["ferroshm"]
    nodeids = sorted(set(std.tests) | set(fer.tests))
    differing = [n for n in nodeids if outcome(std, n) != outcome(fer, n)]
    history = {n: {mode: [outcome(runs[mode], n)] for mode in MODES} for n in differing}
    rerun = bool(differing) and len(differing) <= rerun_limit
    if rerun:
        for attempt in range(1, reruns + 1):
            for mode in MODES:
                again = Run(lib, mode, attempt, work).execute(venv, sdist, differing)
                for n in differing:
                    history[n][mode].append(outcome(again, n))
    differs, flaky = [], []
    for n in differing:
        (differs if not set(history[n]["stdlib"]) & set(history[n]["ferroshm"]) else flaky).append(n)
    # Documented, deliberate differences (libraries.py): each must still
    # differ as stated (the stdlib passes, ferroshm fails), every time.
    known = dict(lib.known_differences)
    expected = [n for n in differs if n in known and set(history[n]["stdlib"]) == {"passed"}
                and set(history[n]["ferroshm"]) == {"failed"}]
    differs = [n for n in differs if n not in expected]
    stale = sorted(set(known) - set(expected))

    std_left, fer_left = std.leftovers_by_test(), fer.leftovers_by_test()
    extra_left = {t: fer_left[t] - std_left[t] for t in fer_left if fer_left[t] > std_left[t]}
    return {
        "library": lib.name,
        "version": lib.version,
        "published": lib.published,
        "exercises": lib.exercises,
        "tests": len(nodeids),
        "counts": {mode: dict(runs[mode].counts()) for mode in MODES},
        "seconds": {mode: runs[mode].result["seconds"] for mode in MODES},
        "timed_out": {mode: runs[mode].result["timed_out"] for mode in MODES},
        "hung_at_exit": {mode: runs[mode].result.get("hung_at_exit", False) for mode in MODES},
        "processes": {mode: dict(runs[mode].processes) for mode in MODES},
        "leftovers": {mode: runs[mode].result["leftovers"] for mode in MODES},
        "extra_leftovers_by_test": extra_left,
        "rerun": rerun,
        "differs": [
            {"nodeid": n, **history[n], "message": fer.tests.get(n, {}).get("message", "")} for n in differs
        ],
        "flaky": [{"nodeid": n, **history[n]} for n in flaky],
        "known": [{"nodeid": n, "reason": known[n], **history[n]} for n in expected],
        "stale_known": stale,
    }


# --------------------------------------------------------------------------- report


def _counts(counts: dict) -> str:
    order = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    return " ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


def report(results: list[dict]) -> bool:
    ok = True
    print("\n" + "=" * 100)
    print("Real-client suite: each library's own tests, on the stdlib and with ferroshm.patch_stdlib()")
    print("=" * 100)
    header = (f"{'library':<22} {'tests':>5}  {'stdlib':<34} {'ferroshm':<34} {'differ':>6} {'known':>5} "
              f"{'flaky':>5} {'left s/f':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        name = f"{r['library']} {r['version']}"
        left = f"{len(r['leftovers']['stdlib'])}/{len(r['leftovers']['ferroshm'])}"
        print(f"{name:<22} {r['tests']:>5}  {_counts(r['counts']['stdlib']):<34} "
              f"{_counts(r['counts']['ferroshm']):<34} {len(r['differs']):>6} {len(r['known']):>5} "
              f"{len(r['flaky']):>5} {left:>8}")
    print()
    for r in results:
        procs = r["processes"]
        print(f"{r['library']}: {r['seconds']['stdlib']:.0f} s stdlib, {r['seconds']['ferroshm']:.0f} s ferroshm; "
              f"interpreters: {sum(procs['stdlib'].values())} stdlib, "
              f"{sum(procs['ferroshm'].values())} ferroshm ({_processes(procs['ferroshm'])})")
        for mode in MODES:
            if r["timed_out"][mode]:
                ok = False
                print(f"  the {mode} run hit its time limit")
        if r["hung_at_exit"]["ferroshm"] and not r["hung_at_exit"]["stdlib"]:
            ok = False
            print(f"  the ferroshm run did not exit within {EXIT_GRACE_SECONDS:.0f} s of pytest's end (killed)")
        elif r["hung_at_exit"]["stdlib"]:
            print(f"  the stdlib run did not exit within {EXIT_GRACE_SECONDS:.0f} s of pytest's end (killed)")
        unpatched = sum(n for impl, n in procs["ferroshm"].items() if impl != "ferroshm.shared_memory")
        if unpatched:
            ok = False
            print(f"  {unpatched} interpreter(s) of the ferroshm run were not patched")
        if r["differs"]:
            ok = False
            print(f"  {len(r['differs'])} test(s) with a different outcome"
                  + ("" if r["rerun"] else " (not run again: more than --rerun-limit)") + ":")
            groups = defaultdict(list)
            for d in r["differs"]:
                groups[(d["stdlib"][0], d["ferroshm"][0], d["message"])].append(d["nodeid"])
            for (s, f, message), ids in sorted(groups.items(), key=lambda g: -len(g[1])):
                print(f"    {len(ids):>4} x stdlib {s} / ferroshm {f}: {message or '(no message)'}")
                for nodeid in ids[:3]:
                    print(f"           {nodeid}")
                if len(ids) > 3:
                    print(f"           ... and {len(ids) - 3} more (target/clients/report.json)")
        for k in r["known"]:
            print(f"  known, documented difference (not failed): {k['nodeid']}: {k['reason']}")
        if r["stale_known"]:
            ok = False
            for nodeid in r["stale_known"]:
                print(f"  listed as a known difference but did not differ so (update libraries.py): {nodeid}")
        for fl in r["flaky"]:
            print(f"  flaky (not failed): {fl['nodeid']}: stdlib {fl['stdlib']}, ferroshm {fl['ferroshm']}")
        if r["extra_leftovers_by_test"]:
            ok = False
            print("  segments left in /dev/shm by the ferroshm run and not by the stdlib run:")
            for test, n in r["extra_leftovers_by_test"].items():
                print(f"    {n} x {test}")
        if r["leftovers"]["stdlib"]:
            print(f"  left in /dev/shm with the stdlib too (the library's own): {len(r['leftovers']['stdlib'])}")
    print()
    known = sum(len(r["known"]) for r in results)
    print("RESULT:", ("no difference" + (f" but {known} known, documented one(s)" if known else "")) if ok
          else "differences found")
    return ok


def _processes(counts: dict) -> str:
    return ", ".join(f"{n} {impl}" for impl, n in sorted(counts.items())) or "none"


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="the suite (the default)")
    run.add_argument("--wheel", type=Path, required=True, help="the ferroshm wheel to test")
    run.add_argument("--python", default=sys.executable, help="the interpreter of the venv (3.11+)")
    run.add_argument("--work", type=Path, default=ROOT / "target" / "clients")
    run.add_argument("--only", nargs="*", default=None, help="library names (default: all)")
    run.add_argument("--reruns", type=int, default=2)
    run.add_argument("--rerun-limit", type=int, default=20)
    inner_parser = sub.add_parser("inner", help="internal: one run, inside its mount namespace")
    for option in ("--mode", "--python", "--cwd", "--log", "--outcomes", "--processes", "--result"):
        inner_parser.add_argument(option, required=True)
    inner_parser.add_argument("--timeout", type=int, required=True)
    inner_parser.add_argument("pytest", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "inner":
        return inner(args)
    if args.command != "run":
        parser.error("usage: run.py run --wheel WHEEL [--only NAME ...]")

    start = time.monotonic()
    work = args.work.resolve()
    venv = prepare_venv(work, args.python)
    install_wheel(venv, args.wheel.resolve())
    chosen = [lib for lib in LIBRARIES if args.only is None or lib.name in args.only]
    if args.only and len(chosen) != len(args.only):
        parser.error(f"--only: known libraries are {', '.join(lib.name for lib in LIBRARIES)}")
    sdists = {lib.name: fetch_sdist(venv, work, lib) for lib in chosen}
    results = []
    for lib in chosen:
        print(f"--- {lib.name} {lib.version}", flush=True)
        results.append(compare(lib, venv, sdists[lib.name], work, args.reruns, args.rerun_limit))
    (work / "report.json").write_text(json.dumps(results, indent=1))
    ok = report(results)
    print(f"test-clients: {time.monotonic() - start:.0f} s in all; details in {work / 'report.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
