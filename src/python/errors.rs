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
///
/// On Windows the code is a Win32 error, passed as `winerror`: Python then
/// derives `errno` from it (`ERROR_ALREADY_EXISTS` → `EEXIST`,
/// `ERROR_FILE_NOT_FOUND` → `ENOENT`) and picks the same subclasses.
pub(crate) fn os_error(err: &io::Error, filename: &str) -> PyErr {
    match err.raw_os_error() {
        #[cfg(windows)]
        Some(code) => PyOSError::new_err((0, strerror(code), filename.to_owned(), code)),
        #[cfg(not(windows))]
        Some(errno) => PyOSError::new_err((errno, strerror(errno), filename.to_owned())),
        None if err.kind() == io::ErrorKind::InvalidInput => PyValueError::new_err(err.to_string()),
        None => PyOSError::new_err(err.to_string()),
    }
}

pub(crate) fn segment_error(err: &SegmentError, filename: &str) -> PyErr {
    match err {
        SegmentError::Os(e) => os_error(e, filename),
        SegmentError::EmbeddedNul | SegmentError::Empty => PyValueError::new_err(err.to_string()),
        // OSError(ENAMETOOLONG) as the OS would raise it, with a message
        // that gives the limit.
        SegmentError::NameTooLong { .. } => {
            PyOSError::new_err((libc::ENAMETOOLONG, err.to_string(), filename.to_owned()))
        }
    }
}
