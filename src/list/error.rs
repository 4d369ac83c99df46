//! The one error type of the list layout.

use std::fmt;
use std::str::Utf8Error;

/// Why a list operation failed. Nothing in shared memory has been modified
/// when an operation returns an error.
///
/// The `Display` messages are written to be used as Python exception
/// messages; each variant says which exception the bindings should raise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListError {
    /// The index is not below the list's length.
    ///
    /// Python: `IndexError("index out of range")` from `__getitem__`; the
    /// standard library says `"assignment index out of range"` from
    /// `__setitem__`, which the bindings should keep.
    IndexOutOfRange,
    /// A `str`/`bytes` value is longer (in UTF-8 bytes) than the slot it is
    /// assigned to. Python: `ValueError`, with the standard library's
    /// message `"bytes/str item exceeds available storage"`.
    ExceedsStorage,
    /// A `str`/`bytes` item is too long to be described by the 8-character
    /// `"%ds"` format the layout stores (CPython raises `AssertionError`
    /// here, bug B15). Python: `ValueError`.
    ItemTooLarge {
        /// Position of the item in the sequence.
        index: usize,
        /// Its length in bytes (UTF-8 bytes for a `str`).
        len: usize,
        /// The largest length that fits: [`MAX_ITEM_BYTES`](super::MAX_ITEM_BYTES).
        max: usize,
    },
    /// The bytes in shared memory are not a valid `ShareableList` (or were
    /// caught half-written by a concurrent writer). The message names what
    /// is wrong and where. Python: `ValueError`.
    Corrupt(String),
    /// A `str` item's bytes are not valid UTF-8. Python: `UnicodeDecodeError`;
    /// decoding `bytes` again with Python's codec gives exactly the error
    /// (and message) the standard library raises, which `Display` imitates.
    Utf8 {
        /// Position of the item in the list.
        index: usize,
        /// The item's bytes, after trailing NULs were stripped.
        bytes: Vec<u8>,
        /// Where and how decoding failed.
        error: Utf8Error,
    },
    /// The list's total size does not fit in `usize` or in the `int64`
    /// fields of its header. Python: `OverflowError`.
    SizeOverflow,
    /// The memory is smaller than the layout being written. Python:
    /// `ValueError`.
    SegmentTooSmall {
        /// Bytes the layout needs.
        needed: usize,
        /// Bytes the memory has.
        len: usize,
    },
    /// A raw access fell outside the memory block. The list code validates
    /// offsets before accessing memory, so this indicates a bug or a direct
    /// [`RawMem`](super::RawMem) misuse. Python: `ValueError`.
    OutOfBounds {
        /// Start of the access.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// Size of the block.
        size: usize,
    },
    /// An 8-byte access at an address that is not 8-aligned (the memory
    /// block itself is misaligned, or the offset is). Python: `ValueError`.
    Misaligned {
        /// Offset of the access within the block.
        offset: usize,
    },
    /// A write to memory that is mapped read-only. Python: `TypeError`, as
    /// for writing to a read-only `memoryview`.
    ReadOnly,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::IndexOutOfRange => f.write_str("index out of range"),
            ListError::ExceedsStorage => f.write_str("bytes/str item exceeds available storage"),
            ListError::ItemTooLarge { index, len, max } => write!(
                f,
                "ShareableList item {index} is {len} bytes long, but a str/bytes item can hold at \
                 most {max} bytes (its slot size must fit in the 8-character format \"%ds\")"
            ),
            ListError::Corrupt(msg) => f.write_str(msg),
            ListError::Utf8 { bytes, error, .. } => write_decode_error(f, bytes, error),
            ListError::SizeOverflow => {
                f.write_str("ShareableList is too large: its size does not fit in a 64-bit offset")
            }
            ListError::SegmentTooSmall { needed, len } => write!(
                f,
                "ShareableList needs {needed} bytes, but the shared memory has only {len}"
            ),
            ListError::OutOfBounds { offset, len, size } => write!(
                f,
                "access of {len} bytes at offset {offset} is outside the {size}-byte shared memory"
            ),
            ListError::Misaligned { offset } => {
                write!(
                    f,
                    "8-byte access at offset {offset} of shared memory is not 8-byte aligned"
                )
            }
            ListError::ReadOnly => f.write_str("cannot modify read-only memory"),
        }
    }
}

impl std::error::Error for ListError {}

/// CPython's `UnicodeDecodeError` message for the `'utf-8'` codec.
fn write_decode_error(f: &mut fmt::Formatter<'_>, bytes: &[u8], error: &Utf8Error) -> fmt::Result {
    let start = error.valid_up_to();
    let (end, reason) = match error.error_len() {
        None => (bytes.len(), "unexpected end of data"),
        Some(n) => {
            let first = bytes.get(start).copied().unwrap_or(0);
            let invalid_start = matches!(first, 0x80..=0xC1 | 0xF5..=0xFF);
            let reason = if invalid_start {
                "invalid start byte"
            } else {
                "invalid continuation byte"
            };
            (start + n, reason)
        }
    };
    if end <= start + 1 {
        let byte = bytes.get(start).copied().unwrap_or(0);
        write!(
            f,
            "'utf-8' codec can't decode byte 0x{byte:02x} in position {start}: {reason}"
        )
    } else {
        write!(
            f,
            "'utf-8' codec can't decode bytes in position {start}-{}: {reason}",
            end - 1
        )
    }
}
