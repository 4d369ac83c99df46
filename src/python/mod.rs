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
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    segment::register(m)?;
    tracker::register(m)?;
    shared_memory::register(m)?;
    list::register(m)?;
    inspect::register(m)?;
    array::register(m)?;
    Ok(())
}
