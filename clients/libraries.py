"""The libraries of the real-client suite: pinned sdists and how to run their tests.

Each library's tests come from its sdist on PyPI (the exact file, checked by
its SHA-256), run with pytest from the sdist's top directory, as its authors
run them from a checkout; the library itself, its dependencies and its test
dependencies are pinned in requirements.txt. Where a library's own test
command cannot run from the sdist as it is (a helper the sdist leaves out), the
arguments say what is left out and why; nothing in a library's tests is
changed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Library:
    name: str  # PyPI name
    version: str
    sha256: str  # of the sdist
    published: str  # month of this release on PyPI
    exercises: str  # what of multiprocessing.shared_memory it (or its tests) uses
    pytest_args: tuple[str, ...] = ()  # after the sdist's own pytest configuration
    timeout: int = 1200  # seconds for one whole pytest run of it
    # Tests whose outcome differs because ferroshm deliberately does
    # something differently (README "Differences from the standard library"),
    # by node id, with the reason. Each must still differ, stdlib passed and
    # ferroshm failed, or the suite fails: the list cannot go stale.
    known_differences: tuple[tuple[str, str], ...] = ()

    @property
    def sdist(self) -> str:
        return f"{self.name.replace('-', '_').lower()}-{self.version}.tar.gz"


#: The one deliberate difference these suites see: they count the open
#: descriptors of a segment. The standard library keeps two per segment (its
#: `_fd` and the `mmap`'s duplicate); ferroshm keeps none until `_fd` or
#: `_mmap` is read (then one, and two), so code that never uses them pays
#: nothing for them.
FEWER_DESCRIPTORS = "fewer descriptors: none held per segment until _fd or _mmap is read"

LIBRARIES = (
    Library(
        name="py-sharedmemory",
        version="4.3.1",
        sha256="681b68bbce53d5b9019978c844868dcdfbe2eed56573ed92b303dbf1fa6d213e",
        published="2026-10",
        exercises=(
            "a multiprocessing.Queue replacement: SharedMemory create/attach per message, "
            "`os.posix_fallocate(shm._fd, ...)` then `os.close(shm._fd); shm._fd = -1`, "
            "track=False on 3.13+, fork/spawn/forkserver workers, descriptor limits"
        ),
        # Its pyproject: timeout 45 s per test, filterwarnings=error, xfail_strict.
        known_differences=(
            ("tests/test_convert.py::test_a_mapped_block_holds_one_descriptor", FEWER_DESCRIPTORS),
            ("tests/test_mapping_cache.py::test_a_cached_mapping_holds_one_descriptor", FEWER_DESCRIPTORS),
        ),
    ),
    Library(
        name="UltraDict2",
        version="0.3.1",
        sha256="cf3c0eb8db2569e0462bc636722f39689ecba553c5ee2de3809f8984b29bc3b1",
        published="2026-10",
        exercises=(
            "a synchronized dict streamed through SharedMemory: create/attach by name, "
            "`os.posix_fallocate(memory._fd, ...)`, `_posixshmem.shm_open`/`shm_unlink`, "
            "resource_tracker patched, example scripts run as subprocesses"
        ),
        pytest_args=("tests/tests.py", "--timeout=300"),
        known_differences=(("tests/tests.py::UltraDictTests::test_cleanup", FEWER_DESCRIPTORS),),
    ),
    Library(
        name="pyshmem",
        version="1.4.0",
        sha256="d77117e380f6092231c6ad2dd7a1b2d669151c53062da633232029c33967f3e1",
        published="2026-10",
        exercises=(
            "NumPy streams in SharedMemory (data and metadata segments): "
            "`shared_memory._posixshmem.shm_unlink` (when present), "
            "`resource_tracker.unregister(shm._name, ...)`, `track` found by inspect.signature, "
            "cross-process writers and readers"
        ),
        # tests/test_benchmark_harness.py runs benchmarks/benchmark_ipc.py,
        # which the sdist does not ship; the sdist has no pytest configuration
        # (its `cpu` marker is unregistered).
        pytest_args=(
            "tests",
            "--ignore=tests/test_benchmark_harness.py",
            "-W",
            "ignore::pytest.PytestUnknownMarkWarning",
            "--timeout=300",
        ),
    ),
    Library(
        name="shmlock",
        version="5.0.1",
        sha256="e6e557c10ca97f3609d2bfb20c22a4d720cc8dd10e4e62568a0db24b79982b10",
        published="2026-10",
        exercises=(
            "an inter-process lock: acquiring is an exclusive SharedMemory create, releasing "
            "an unlink; resource_tracker register/unregister/_CLEANUP_FUNCS patched; "
            "processes and threads"
        ),
        pytest_args=("tests", "--timeout=300"),
    ),
    Library(
        name="mempipe",
        version="0.3.2",
        sha256="96c7569d217c7e6299a841bbb8c1ccb31dd6d2ab094d6a3980a265cb6cb659ef",
        published="2026-06",
        exercises="NumPy arrays through SharedMemory between processes; unlink in __del__ and close()",
        pytest_args=("--timeout=300",),
    ),
    Library(
        name="EasyGlobals",
        version="0.2.1",
        sha256="913bd4ca905807b92c0419d8a885d2de083bfad766164c3915449a9222631ad0",
        published="2026-09",
        exercises=(
            "shared globals: SharedMemory create, `isinstance(shm, shared_memory.SharedMemory)`, "
            "resource_tracker register/unregister of `/name` around unlink, fork, descriptor leaks"
        ),
        # Its test files are named *_test.py and one test_*-less module; the
        # four of them, as its regression suite's docstring runs them.
        pytest_args=(
            "tests/easyglobals_020_doom_test.py",
            "tests/easyglobals_020_stress_test.py",
            "tests/easyglobals_020_test_datatypes.py",
            "tests/easyglobals_021_regression_test.py",
            "--timeout=300",
        ),
    ),
    Library(
        name="sharedbox",
        version="0.6.0",
        sha256="3d01ca577f6a6c9fd1d05ffd4960f8bdd7fa7d57ed5994f15772a7cd57e79b14",
        published="2026-10",
        exercises=(
            "C++ shared containers (the wheel from PyPI); its tests attach "
            "`multiprocessing.shared_memory.SharedMemory(name)` to the library's own segments "
            "to forge and inspect their bytes, and compare unlink semantics"
        ),
        # The test modules that use multiprocessing.shared_memory (directly or
        # through tests/forged_open.py); its whole suite (944 tests, 3.5 min)
        # touches it nowhere else.
        pytest_args=(
            "tests/test_native_segment.py",
            "tests/test_native_waiters.py",
            "tests/test_properties_forged.py",
            "tests/test_benchbox_stream.py",
        ),
    ),
    Library(
        name="np-shared-array",
        version="1.0.0",
        sha256="4b6e44eb2d14378425d9bcc39d17b5fcfd646132c24d677c6cc86bad1e288e1f",
        published="2024-09",
        exercises=(
            "NumPy arrays in segments of a module-wide SharedMemoryManager, started on first use "
            "and never shut down by the library (its finalizer at exit does), "
            "`smm.SharedMemory(size=...)`; a fork child writes through the pickled SharedMemory"
        ),
        # Its one test module imports the package as `src.np_shared_array`
        # (from the sdist's tree); it has no pytest configuration.
        pytest_args=("tests", "--timeout=300"),
    ),
)
