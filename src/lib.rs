//! ferroshm: named shared-memory segments and `ShareableList`s that are
//! byte-compatible with Python's `multiprocessing.shared_memory`.
//!
//! The crate has a Rust core that knows nothing of Python ([`segment`] and
//! [`list`]) and, behind the `python` feature, the PyO3 bindings that the
//! `ferroshm` Python package is built from.

pub mod list;
pub mod segment;

#[cfg(feature = "python")]
mod python;

pub use segment::{Segment, SegmentError};
