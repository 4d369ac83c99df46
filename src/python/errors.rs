//! Mapping Rust errors onto the Python exceptions the standard library raises.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;
use std::io;

use crate::segment::SegmentError;

/// The C library's message for `errno`, without Rust's "(os error N)" suffix,
/// as Python's `os.strerror` gives it.
pub(crate) fn strerror(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// `OSError(errno, strerror, filename)`: Python turns it into
/// `FileNotFoundError`, `FileExistsError`, `PermissionError`… by itself.
pub(crate) fn os_error(err: &io::Error, filename: &str) -> PyErr {
    match err.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, strerror(errno), filename.to_owned())),
        None if err.kind() == io::ErrorKind::InvalidInput => PyValueError::new_err(err.to_string()),
        None => PyOSError::new_err(err.to_string()),
    }
}

pub(crate) fn segment_error(err: &SegmentError, filename: &str) -> PyErr {
    match err {
        SegmentError::Os(e) => os_error(e, filename),
        SegmentError::EmbeddedNul | SegmentError::Empty => PyValueError::new_err(err.to_string()),
    }
}
