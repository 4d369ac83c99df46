# Put on PYTHONPATH by tests/test_cpython_conformance.py so that every
# interpreter of a conformance run, spawn and forkserver children included,
# uses ferroshm as multiprocessing.shared_memory.
import ferroshm

ferroshm.patch_stdlib()
