"""Build ferroshm's wheels for every supported CPython found here, and run the
whole test suite against each installed wheel.

    python .ci/matrix.py find
    python .ci/matrix.py wheels --out DIR --tools BIN
    python .ci/matrix.py test --wheels DIR

``find`` lists the interpreters: for each supported version (3.9 to 3.13),
the newest pyenv CPython of that version (``$PYENV_ROOT/versions/3.X.Y``,
``~/.pyenv`` by default), else ``python3.X`` on PATH, each checked by running
it. ``MATRIX_PYTHONS`` (interpreter paths, space-separated) replaces the
search.

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
interpreter fails the run; a summary table ends it.

Standard library only: it runs on any supported Python.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = [(3, 9), (3, 10), (3, 11), (3, 12), (3, 13)]
WORK = ROOT / "target" / "matrix"

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
import pytest
sys.exit(pytest.main([
    "-c", os.path.join(root, "pyproject.toml"), "--rootdir", root,
    "-p", "no:cacheprovider", "-rfEs", os.path.join(root, "tests"),
]))
"""


def log(msg: str) -> None:
    print(f"[matrix] {msg}", flush=True)


def _probe(python: str) -> tuple[int, int] | None:
    """(major, minor) of ``python`` if it runs and is CPython, else None."""
    try:
        out = subprocess.run(
            [python, "-c", "import platform, sys; print(platform.python_implementation(), *sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 3 or parts[0] != "CPython":
        return None
    return int(parts[1]), int(parts[2])


def find_interpreters() -> dict[tuple[int, int], str]:
    """The interpreter to use for each supported version found, by version."""
    found: dict[tuple[int, int], str] = {}
    explicit = os.environ.get("MATRIX_PYTHONS", "").split()
    if explicit:
        for python in explicit:
            version = _probe(python)
            if version is None:
                raise SystemExit(f"MATRIX_PYTHONS: {python} does not run as CPython")
            if version not in SUPPORTED:
                raise SystemExit(f"MATRIX_PYTHONS: {python} is {version}, not one of the supported {SUPPORTED}")
            found[version] = python
        return found
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
                found[version] = str(python)
    for version in SUPPORTED:
        if version not in found:
            python = shutil.which(f"python{version[0]}.{version[1]}")
            if python and _probe(python) == version:
                found[version] = python
    return dict(sorted(found.items()))


def _tag(version: tuple[int, int]) -> str:
    return f"cp{version[0]}{version[1]}"


def _interpreters_or_exit() -> dict[tuple[int, int], str]:
    found = find_interpreters()
    missing = [v for v in SUPPORTED if v not in found]
    for version, python in found.items():
        log(f"found CPython {version[0]}.{version[1]}: {python}")
    if missing:
        log("not found (not tested): " + ", ".join(f"{a}.{b}" for a, b in missing))
    if not found:
        raise SystemExit("no supported CPython (3.9 to 3.13) found: install one with pyenv, or set MATRIX_PYTHONS")
    return found


def _run(cmd: list[str], **kwargs) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kwargs)


def build_wheels(out: Path, tools: Path) -> None:
    found = _interpreters_or_exit()
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("ferroshm-*.whl")) + list(out.glob("ferroshm-*.tar.gz")):
        old.unlink()
    # maturin finds zig as `python -m ziglang` of the first python on PATH.
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)  # else maturin builds for the venv's Python too
    timings = []
    for version, python in found.items():
        start = time.monotonic()
        # One cargo target directory per interpreter: PyO3's build
        # configuration depends on the interpreter, so sharing one would
        # rebuild everything for each of them on every run.
        env["CARGO_TARGET_DIR"] = str(WORK / f"cargo-{_tag(version)}")
        _run([str(tools / "maturin"), "build", "--release", "--zig", "--compatibility", "manylinux2014",
              "--interpreter", python, "--out", str(out)], cwd=ROOT, env=env)
        wheel = _wheel_for(out, version)
        show = subprocess.run([str(tools / "auditwheel"), "show", str(wheel)], capture_output=True, text=True)
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


def test_wheels(wheels: Path) -> int:
    found = _interpreters_or_exit()
    rows = []
    start_all = time.monotonic()
    for version, python in found.items():
        wheel = _wheel_for(wheels, version)
        wheel_version = wheel.name.split("-")[1]
        start = time.monotonic()
        venv = WORK / f"venv-{_tag(version)}"
        rundir = WORK / f"run-{_tag(version)}"
        shutil.rmtree(rundir, ignore_errors=True)
        rundir.mkdir(parents=True)
        _run([python, "-m", "venv", "--clear", str(venv)])
        vpy = str(venv / "bin" / "python")
        _run([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[test]"])
        log(f"CPython {version[0]}.{version[1]}: pytest tests/ against {wheel.name}")
        proc = subprocess.Popen(
            [vpy, "-c", RUN_INSTALLED_SUITE, str(ROOT), wheel_version],
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
        rows.append((version, wheel.name, counts, time.monotonic() - start, ok, rc))
    total = time.monotonic() - start_all
    print()
    log(f"{len(rows)} of {len(SUPPORTED)} supported CPython versions found and tested, in {total:.0f} s:")
    for version, name, counts, seconds, ok, rc in rows:
        detail = ", ".join(f"{n} {what}" for what, n in counts.items()) or f"no summary (exit {rc})"
        log(f"  {'ok  ' if ok else 'FAIL'} {version[0]}.{version[1]:<3} {detail:<40} {seconds:4.0f} s  {name}")
    failed = [f"{v[0]}.{v[1]}" for v, _, counts, _, ok, _ in rows if not ok]
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
