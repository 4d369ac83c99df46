//! The one map from the Rust core's errors to the Python exceptions the
//! standard library raises: segment errors ([`os_error`],
//! [`segment_error`]), list errors ([`list_error`]) and the errors of a
//! whole [`SharedList`] ([`shared_list_error`]). Every binding goes through
//! these.

use pyo3::exceptions::{
    PyIndexError, PyOSError, PyOverflowError, PyTypeError, PyUnicodeDecodeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::io;

use crate::array::ArrayError;
use crate::list::{ListError, SharedListError};
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

/// A list error as the Python exception the standard library would raise
/// (or, where it would misbehave, the one a list would).
pub(crate) fn list_error(py: Python<'_>, err: ListError, setting: bool) -> PyErr {
    match err {
        ListError::IndexOutOfRange if setting => {
            PyIndexError::new_err("assignment index out of range")
        }
        ListError::IndexOutOfRange => PyIndexError::new_err("index out of range"),
        ListError::ExceedsStorage => {
            PyValueError::new_err("bytes/str item exceeds available storage")
        }
        ListError::SizeOverflow => PyOverflowError::new_err(err.to_string()),
        ListError::ReadOnly => PyTypeError::new_err(err.to_string()),
        // Decoding again gives exactly the error (message included) that
        // the standard library's `value.rstrip(b'\x00').decode('utf8')`
        // raises; this is the error path only.
        ListError::Utf8 { bytes, error, .. } => {
            match PyBytes::new(py, &bytes).call_method1("decode", ("utf-8",)) {
                Err(e) => e,
                Ok(_) => match PyUnicodeDecodeError::new_utf8(py, &bytes, error) {
                    Ok(exc) => PyErr::from_value(exc.into_any()),
                    Err(e) => e,
                },
            }
        }
        other => PyValueError::new_err(other.to_string()),
    }
}

/// A [`SharedList`](crate::list::SharedList) error: the segment's as
/// [`segment_error`], the list's as [`list_error`] (read side).
pub(crate) fn shared_list_error(py: Python<'_>, err: SharedListError) -> PyErr {
    match err {
        SharedListError::Segment { name, source } => segment_error(&source, &name),
        SharedListError::List(e) => list_error(py, e, false),
    }
}

/// A shared-array error: the segment's as [`segment_error`], every other
/// (a missing, corrupt or unsupported header, a dtype that cannot be
/// shared, an impossible shape) as `ValueError`.
pub(crate) fn array_error(err: &ArrayError) -> PyErr {
    match err {
        ArrayError::Segment { name, source } => segment_error(source, name),
        other => PyValueError::new_err(other.to_string()),
    }
}
