# Put on PYTHONPATH by tests/test_cpython_conformance.py so that every
# interpreter of a conformance run, spawn and forkserver children included,
# uses ferroshm as multiprocessing.shared_memory.
#
# FERROSHM_SUBSTITUTE says which ferroshm module stands in:
#   "ferroshm.shared_memory" (the default): what ferroshm.patch_stdlib() installs;
#   "ferroshm": the top-level package, what the README's
#   `import ferroshm as shared_memory` gives, so that CPython's tests read and
#   patch its hooks (`mock.patch("multiprocessing.shared_memory._make_filename")`).
# FERROSHM_SUBSTITUTE_LOG, when set, names a file where each interpreter
# writes a line (its pid and the module substituted), so the runner can tell
# that the programs CPython's tests start used ferroshm.
import os
import sys

import ferroshm

ferroshm.patch_stdlib()

_substitute = os.environ.get("FERROSHM_SUBSTITUTE", "ferroshm.shared_memory")
if _substitute == "ferroshm":
    import multiprocessing
    import multiprocessing.managers

    sys.modules["multiprocessing.shared_memory"] = ferroshm
    multiprocessing.shared_memory = ferroshm
    multiprocessing.managers.shared_memory = ferroshm
elif _substitute != "ferroshm.shared_memory":
    raise SystemExit(f"FERROSHM_SUBSTITUTE={_substitute!r}: expected 'ferroshm' or 'ferroshm.shared_memory'")

if os.environ.get("FERROSHM_SUBSTITUTE_LOG"):
    with open(os.environ["FERROSHM_SUBSTITUTE_LOG"], "a") as _log:
        _log.write(f"{os.getpid()} {sys.modules['multiprocessing.shared_memory'].__name__}\n")
