//! PyO3 bindings: the `ferroshm._native` extension module. Nothing outside
//! this folder touches pyo3; each file wraps one part of the Rust core.

use pyo3::prelude::*;

mod array;
mod errors;
mod inspect;
mod list;
mod segment;
mod shared_memory;
mod tracker;

/// The native half of the `ferroshm` package. Use the `ferroshm` package,
/// not this module: its API may change between releases.
///
/// It runs without the GIL on free-threaded Pythons (`gil_used = false`, also
/// PyO3's default since 0.28, stated here because it is a promise): every
/// class is frozen and keeps its state in atomics, a mutex or a `OnceLock`,
/// the shared memory itself is only touched through atomics, and the few
/// statics are `PyOnceLock`s and thread-locals.
#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    segment::register(m)?;
    tracker::register(m)?;
    shared_memory::register(m)?;
    list::register(m)?;
    inspect::register(m)?;
    array::register(m)?;
    Ok(())
}
