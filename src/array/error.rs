//! The one error type of shared arrays.

use std::fmt;

use crate::segment::SegmentError;

/// Why a shared-array operation failed.
///
/// The `Display` messages are written to be used as Python exception
/// messages: the bindings raise [`ArrayError::Segment`] as the `OSError` the
/// OS call gave (`FileNotFoundError`, `FileExistsError`, ...) and every
/// other variant as `ValueError`. Nothing in shared memory was changed when
/// an operation returns an error, but for [`ArrayError::Segment`] from a
/// failed unlink.
#[derive(Debug)]
pub enum ArrayError {
    /// Creating, opening or unlinking the segment failed.
    Segment {
        /// The OS name of the segment, with its leading `/` on POSIX.
        name: String,
        /// What went wrong; [`SegmentError::Os`] carries the errno
        /// (`ENOENT` for a missing name, `EEXIST` for a taken one).
        source: SegmentError,
    },
    /// The segment does not start with an array header: it was not made by
    /// `ferroshm.share`/`empty`/`zeros` (or [`SharedArray::create`](super::SharedArray::create)),
    /// or its creator has not written the header yet.
    NotAnArray {
        /// The segment's size in bytes.
        len: usize,
    },
    /// The header is of a version this code does not read.
    UnsupportedVersion(u16),
    /// The header's fields contradict each other or the segment (a data
    /// area outside the segment, sizes that do not add up, unknown flags).
    Corrupt(String),
    /// The dtype description cannot be read, or describes something that
    /// cannot live in shared memory (an object dtype).
    Descr(String),
    /// A shape (or the size it implies) that no array can have: too many
    /// dimensions, or more bytes than an address space holds.
    Shape(String),
    /// A typed view of an element type that is not the array's.
    TypeMismatch {
        /// The type string the view's element type has (e.g. `<f8`).
        wanted: String,
        /// The array's description.
        found: String,
    },
    /// A write to an array whose segment is mapped read-only.
    ReadOnly,
    /// An index (or a range of elements or bytes) beyond the array.
    OutOfBounds {
        /// The index, or the end of the range.
        index: usize,
        /// The number of elements (or bytes) there are.
        len: usize,
    },
}

impl ArrayError {
    /// The OS error number behind a segment error, if there is one (e.g.
    /// `libc::ENOENT` when the name does not exist).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            ArrayError::Segment {
                source: SegmentError::Os(e),
                ..
            } => e.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn segment(name: &str, source: impl Into<SegmentError>) -> ArrayError {
        ArrayError::Segment {
            name: name.to_owned(),
            source: source.into(),
        }
    }
}

impl fmt::Display for ArrayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArrayError::Segment { name, source } => write!(f, "shared memory {name:?}: {source}"),
            ArrayError::NotAnArray { len } => write!(
                f,
                "the segment ({len} bytes) holds no ferroshm array: it does not start with an \
                 array header (made by ferroshm.share, empty or zeros; a header is written \
                 before the creator returns)"
            ),
            ArrayError::UnsupportedVersion(v) => write!(
                f,
                "the segment holds a ferroshm array of header version {v}; this ferroshm reads \
                 version {}",
                super::VERSION
            ),
            ArrayError::Corrupt(why) => write!(f, "corrupt ferroshm array header: {why}"),
            ArrayError::Descr(why) => write!(f, "unsupported or corrupt dtype description: {why}"),
            ArrayError::Shape(why) => f.write_str(why),
            ArrayError::TypeMismatch { wanted, found } => {
                write!(f, "the array's items are {found}, not {wanted}")
            }
            ArrayError::ReadOnly => f.write_str("the array is mapped read-only"),
            ArrayError::OutOfBounds { index, len } => {
                write!(f, "index {index} is out of bounds for {len} elements")
            }
        }
    }
}

impl std::error::Error for ArrayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ArrayError::Segment { source, .. } => Some(source),
            _ => None,
        }
    }
}
