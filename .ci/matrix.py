"""Build ferroshm's wheels for every supported CPython found here, and run the
whole test suite against each installed wheel.

    python .ci/matrix.py find
    python .ci/matrix.py wheels --out DIR --tools BIN
    python .ci/matrix.py test --wheels DIR

``find`` lists the interpreters: for each supported version (3.9 to 3.15),
the newest pyenv CPython of that version (``$PYENV_ROOT/versions/3.X.Y``,
``~/.pyenv`` by default), else ``python3.X`` on PATH, else (3.14 and 3.15)
Debian sid's ``/usr/bin/python3.X`` in the chroot of
``tools/sid-chroot.sh`` when that chroot is set up, each checked by running
it. ``MATRIX_PYTHONS`` (interpreter paths, space-separated; ``sid:PATH`` for
one in the chroot) replaces the search.

``wheels`` builds one manylinux2014 wheel per interpreter with ``maturin
build --release --zig --compatibility manylinux2014`` (zig links against
glibc 2.17, so the wheels install on RHEL/CentOS 7 and later), checks with
``auditwheel show`` that each really satisfies ``manylinux_2_17``, and builds
the sdist. BIN is the directory holding maturin, auditwheel and the Python
with the ``ziglang`` package (the project's .venv/bin).

``test`` gives each interpreter a clean venv, installs its wheel there with
the ``test`` extra, and runs pytest on tests/ from a directory outside the
source tree, in a process that first checks that ``ferroshm`` is imported
from the venv's site-packages (so the installed wheel is what is tested,
never python/). The suite includes CPython's own shared-memory tests under
fork, spawn and forkserver. A failure, an error or a skipped test on any
interpreter fails the run; a summary table ends it, with the counts of
CPython's own tests per start method. The chroot's interpreters do all of
this in the chroot (a private /dev/shm each time).

Standard library only: it runs on any supported Python.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = [(3, 9), (3, 10), (3, 11), (3, 12), (3, 13), (3, 14), (3, 15)]
WORK = ROOT / "target" / "matrix"

#: Debian sid's interpreters, for the versions Debian 12 (and pyenv here)
#: lack; they need sid's glibc, so they run in the chroot of this script.
CHROOT = ROOT / "tools" / "sid-chroot.sh"
CHROOT_PYTHONS = {(3, 14): "/usr/bin/python3.14", (3, 15): "/usr/bin/python3.15"}
#: What builds and checks the wheels in the chroot: the Makefile's pins
#: (maturin in $(VENV)/.deps, ziglang and auditwheel in .wheel-deps).
CHROOT_TOOLS = ["maturin>=1.9.4,<2", "ziglang==0.17.1", "auditwheel>=6,<7"]
CHROOT_TOOLS_VENV = WORK / "sid-tools"


@dataclass(frozen=True)
class Interpreter:
    """A CPython to build and test for: on the host, or in the sid chroot."""

    version: tuple[int, int]
    python: str
    chroot: bool = False

    def command(self, args: list[str]) -> list[str]:
        """``args`` as a command that runs where this interpreter runs."""
        return [str(CHROOT), "run", *map(str, args)] if self.chroot else [str(a) for a in args]

    def __str__(self) -> str:
        return f"{self.python} (sid chroot)" if self.chroot else self.python

#: Run inside each test venv: fail unless ferroshm comes from the venv's
#: site-packages, then run pytest in the same process (so the module pytest
#: tests is the one checked).
RUN_INSTALLED_SUITE = r"""
import os, sys, sysconfig
root, version = sys.argv[1], sys.argv[2]
import ferroshm, ferroshm._native
site = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
where = os.path.realpath(os.path.dirname(ferroshm.__file__))
native = os.path.realpath(ferroshm._native.__file__)
if os.path.dirname(where) not in site or not native.startswith(where + os.sep):
    sys.exit(f"ferroshm is imported from {where} ({native}), not from this venv's site-packages {sorted(site)}")
if ferroshm.__version__ != version:
    sys.exit(f"installed ferroshm is {ferroshm.__version__}, the wheel is {version}")
print(f"testing the installed wheel: ferroshm {ferroshm.__version__} from {where}", flush=True)
# tests/test_cpython_conformance.py writes the counts of CPython's own tests here.
os.environ["FERROSHM_CPYTHON_REPORT"] = os.path.join(os.getcwd(), "cpython-tests.jsonl")
import pytest
sys.exit(pytest.main([
    "-c", os.path.join(root, "pyproject.toml"), "--rootdir", root,
    "-p", "no:cacheprovider", "-rfEs", os.path.join(root, "tests"),
]))
"""


def log(msg: str) -> None:
    print(f"[matrix] {msg}", flush=True)


def _probe(python: str, chroot: bool = False) -> tuple[int, int] | None:
    """(major, minor) of ``python`` if it runs and is CPython, else None."""
    cmd = [python, "-c", "import platform, sys; print(platform.python_implementation(), *sys.version_info[:2])"]
    if chroot:
        cmd = [str(CHROOT), "run", *cmd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 3 or parts[0] != "CPython":
        return None
    return int(parts[1]), int(parts[2])


def chroot_ready() -> bool:
    """Whether the sid chroot is set up (and usable: it needs root)."""
    if os.geteuid() != 0:
        return False
    return subprocess.run([str(CHROOT), "status"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def find_interpreters() -> dict[tuple[int, int], Interpreter]:
    """The interpreter to use for each supported version found, by version."""
    found: dict[tuple[int, int], Interpreter] = {}
    explicit = os.environ.get("MATRIX_PYTHONS", "").split()
    if explicit:
        for entry in explicit:
            chroot = entry.startswith("sid:")
            python = entry[len("sid:"):] if chroot else entry
            version = _probe(python, chroot)
            if version is None:
                raise SystemExit(f"MATRIX_PYTHONS: {entry} does not run as CPython")
            if version not in SUPPORTED:
                raise SystemExit(f"MATRIX_PYTHONS: {entry} is {version}, not one of the supported {SUPPORTED}")
            found[version] = Interpreter(version, python, chroot)
        return dict(sorted(found.items()))
    pyenv_versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv_versions.is_dir():
        # Plain CPython releases only ("3.12.1"; not pypy, -dev or free-threaded "t" builds).
        releases = []
        for d in pyenv_versions.iterdir():
            m = re.fullmatch(r"3\.(\d+)\.(\d+)", d.name)
            if m:
                releases.append(((3, int(m[1])), int(m[2]), d))
        for version, _patch, d in sorted(releases, reverse=True):
            python = d / "bin" / f"python{version[0]}.{version[1]}"
            if version in SUPPORTED and version not in found and _probe(str(python)) == version:
                found[version] = Interpreter(version, str(python))
    for version in SUPPORTED:
        if version not in found:
            python = shutil.which(f"python{version[0]}.{version[1]}")
            if python and _probe(python) == version:
                found[version] = Interpreter(version, python)
    missing = [v for v in CHROOT_PYTHONS if v not in found]
    if missing and chroot_ready():
        for version in missing:
            if _probe(CHROOT_PYTHONS[version], chroot=True) == version:
                found[version] = Interpreter(version, CHROOT_PYTHONS[version], chroot=True)
    return dict(sorted(found.items()))


def _tag(version: tuple[int, int]) -> str:
    return f"cp{version[0]}{version[1]}"


def _interpreters_or_exit() -> dict[tuple[int, int], Interpreter]:
    found = find_interpreters()
    missing = [v for v in SUPPORTED if v not in found]
    for version, interp in found.items():
        log(f"found CPython {version[0]}.{version[1]}: {interp}")
    if missing:
        hint = " (3.14 and 3.15: `tools/sid-chroot.sh setup`)" if set(missing) & set(CHROOT_PYTHONS) else ""
        log("not found (not tested): " + ", ".join(f"{a}.{b}" for a, b in missing) + hint)
    if not found:
        raise SystemExit("no supported CPython (3.9 to 3.15) found: install one with pyenv, or set MATRIX_PYTHONS")
    return found


def _run(cmd: list[str], **kwargs) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kwargs)


def _chroot_tools(interp: Interpreter) -> Path:
    """The chroot's venv with CHROOT_TOOLS (made by ``interp``), made once
    and kept while the pins are the same."""
    stamp = CHROOT_TOOLS_VENV / "ferroshm-tools.txt"
    want = "\n".join(CHROOT_TOOLS) + "\n"
    if not (stamp.is_file() and stamp.read_text() == want):
        _run(interp.command([interp.python, "-m", "venv", "--clear", CHROOT_TOOLS_VENV]))
        _run(interp.command([CHROOT_TOOLS_VENV / "bin" / "python", "-m", "pip", "install", "-q",
                             "--disable-pip-version-check", *CHROOT_TOOLS]))
        stamp.write_text(want)
    return CHROOT_TOOLS_VENV / "bin"


def build_wheels(out: Path, tools: Path) -> None:
    found = _interpreters_or_exit()
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("ferroshm-*.whl")) + list(out.glob("ferroshm-*.tar.gz")):
        old.unlink()
    # maturin finds zig as `python -m ziglang` of the first python on PATH.
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)  # else maturin builds for the venv's Python too
    chroot_tools = None
    timings = []
    for version, interp in found.items():
        start = time.monotonic()
        # One cargo target directory per interpreter: PyO3's build
        # configuration depends on the interpreter, so sharing one would
        # rebuild everything for each of them on every run.
        target = WORK / f"cargo-{_tag(version)}"
        build = ["build", "--release", "--zig", "--compatibility", "manylinux2014",
                 "--interpreter", interp.python, "--out", str(out)]
        if interp.chroot:
            chroot_tools = chroot_tools or _chroot_tools(interp)
            bin_dir = chroot_tools
            # The chroot's command gets a clean environment: the tools' venv
            # first on PATH (for zig), and the target directory.
            _run(interp.command(["/bin/sh", "-c", 'export PATH="$1:$PATH" CARGO_TARGET_DIR="$2"; shift 2; exec "$@"',
                                 "sh", bin_dir, target, bin_dir / "maturin", *build]), cwd=ROOT)
        else:
            bin_dir = tools
            _run([str(tools / "maturin"), *build], cwd=ROOT, env={**env, "CARGO_TARGET_DIR": str(target)})
        wheel = _wheel_for(out, version)
        show = subprocess.run(interp.command([bin_dir / "auditwheel", "show", wheel]), capture_output=True, text=True)
        report = " ".join(show.stdout.split())
        if show.returncode != 0 or 'is consistent with the following platform tag: "manylinux_2_17_x86_64"' not in report:
            raise SystemExit(f"auditwheel: {wheel.name} is not manylinux_2_17 (manylinux2014):\n{show.stdout}{show.stderr}")
        log(f"auditwheel show {wheel.name}: manylinux_2_17_x86_64 (manylinux2014)")
        timings.append((version, wheel.name, time.monotonic() - start))
    env["CARGO_TARGET_DIR"] = str(WORK / "cargo-sdist")
    _run([str(tools / "maturin"), "sdist", "--out", str(out)], cwd=ROOT, env=env)
    sdists = list(out.glob("ferroshm-*.tar.gz"))
    if len(sdists) != 1:
        raise SystemExit(f"expected one sdist in {out}, found {sdists}")
    for version, name, seconds in timings:
        log(f"built {name} in {seconds:.0f} s")
    log(f"built {sdists[0].name}")


def _wheel_for(wheels: Path, version: tuple[int, int]) -> Path:
    tag = _tag(version)
    matches = sorted(wheels.glob(f"ferroshm-*-{tag}-{tag}-*.whl"))
    if len(matches) != 1:
        raise SystemExit(f"expected one {tag} wheel in {wheels}, found {[m.name for m in matches]}: run `make wheels`")
    return matches[0]


def _summary(output: str) -> dict[str, int]:
    """Counts from pytest's last line ("350 passed, 17 xfailed in 80.1s")."""
    lines = [line for line in output.splitlines() if re.search(r" in [\d.]+s", line)]
    counts: dict[str, int] = {}
    if lines:
        for n, what in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|warnings?)", lines[-1]):
            counts[what.rstrip("s") if what.startswith(("error", "warning")) else what] = int(n)
    return counts


def _cpython_counts(report: Path) -> str:
    """One line per CPython test class from the conformance tests' report
    (tests/test_cpython_conformance.py writes it): passed/run per start
    method, for each way ferroshm was substituted."""
    if not report.is_file():
        return "no report of CPython's own tests"
    by_class: dict[str, list[str]] = {}
    for line in report.read_text().splitlines():
        r = json.loads(line)
        label = f"{r['start_method']}"
        if r.get("substitute") == "ferroshm":
            label += " (package)"
        result = f"{r['passed']}/{r['in_class']}"
        if r.get("expected_failures"):
            result += f" +{r['expected_failures']} expected failures"
        by_class.setdefault(r["class"], []).append(f"{label} {result}")
    return "; ".join(f"{name}: " + ", ".join(runs) for name, runs in by_class.items())


def test_wheels(wheels: Path) -> int:
    found = _interpreters_or_exit()
    rows = []
    start_all = time.monotonic()
    for version, interp in found.items():
        wheel = _wheel_for(wheels, version)
        wheel_version = wheel.name.split("-")[1]
        start = time.monotonic()
        venv = WORK / f"venv-{_tag(version)}"
        rundir = WORK / f"run-{_tag(version)}"
        shutil.rmtree(rundir, ignore_errors=True)
        rundir.mkdir(parents=True)
        _run(interp.command([interp.python, "-m", "venv", "--clear", venv]))
        vpy = venv / "bin" / "python"
        _run(interp.command([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[test]"]))
        log(f"CPython {version[0]}.{version[1]}: pytest tests/ against {wheel.name}")
        proc = subprocess.Popen(
            interp.command([vpy, "-c", RUN_INSTALLED_SUITE, ROOT, wheel_version]),
            cwd=rundir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")},
        )
        output = []
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            output.append(line)
        rc = proc.wait()
        counts = _summary("".join(output))
        ok = rc == 0 and counts.get("passed", 0) > 0 and not counts.get("skipped") and not counts.get("failed")
        rows.append((interp, wheel.name, counts, time.monotonic() - start, ok, rc,
                     _cpython_counts(rundir / "cpython-tests.jsonl")))
    total = time.monotonic() - start_all
    print()
    log(f"{len(rows)} of {len(SUPPORTED)} supported CPython versions found and tested, in {total:.0f} s:")
    for interp, name, counts, seconds, ok, rc, cpython in rows:
        version = interp.version
        detail = ", ".join(f"{n} {what}" for what, n in counts.items()) or f"no summary (exit {rc})"
        where = " (sid chroot)" if interp.chroot else ""
        log(f"  {'ok  ' if ok else 'FAIL'} {version[0]}.{version[1]:<3} {detail:<40} {seconds:4.0f} s  {name}{where}")
        log(f"         CPython's tests: {cpython}")
    failed = [f"{r[0].version[0]}.{r[0].version[1]}" for r in rows if not r[4]]
    if failed:
        log("FAILED on " + ", ".join(failed) + " (a skipped test counts as a failure here)")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("find", help="list the supported interpreters found")
    p = sub.add_parser("wheels", help="build a manylinux2014 wheel per interpreter, and the sdist")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tools", type=Path, required=True, help="directory with maturin, auditwheel, and python with ziglang")
    p = sub.add_parser("test", help="run the test suite against each interpreter's installed wheel")
    p.add_argument("--wheels", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "find":
        _interpreters_or_exit()
        return 0
    if args.command == "wheels":
        build_wheels(args.out.resolve(), args.tools.resolve())
        return 0
    return test_wheels(args.wheels.resolve())


if __name__ == "__main__":
    sys.exit(main())
