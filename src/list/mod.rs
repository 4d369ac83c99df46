//! The byte layout of CPython's `ShareableList` (layout v2, Python 3.9+),
//! read and written without any Python types.
//!
//! A list of N items whose value slots take D bytes in total occupies
//! `8(N+2) + D + 9N` bytes, all native-endian:
//!
//! | offset            | size     | content                                       |
//! |-------------------|----------|-----------------------------------------------|
//! | 0                 | 8        | `int64 N`                                     |
//! | 8                 | 8(N+1)   | `int64 offsets[0..=N]` into the data area, `offsets[0] = 0`, `offsets[N] = D` |
//! | 8(N+2)            | D        | value slots, each a multiple of 8 bytes       |
//! | 8(N+2)+D          | 8N       | per-item `struct` formats, NUL-padded to 8    |
//! | 8(N+2)+D+8N       | N        | per-item back-transform codes (`int8`)        |
//!
//! [`encoded_size`] and [`write_new`] create a list byte for byte as CPython
//! does (except that str slots are sized by UTF-8 bytes, fixing bug B4);
//! [`ListView`] attaches to one in O(1) and reads and writes items. Every
//! read is validated, so a corrupt or hostile block gives a
//! [`ListError`], never a panic or an access outside the block.
//!
//! Memory is only touched through [`RawMem`], which other processes may be
//! writing at the same time.

mod error;
mod format;
mod item;
mod layout;
mod raw;
mod shared;
mod view;
mod writer;

#[cfg(all(test, unix, feature = "python"))]
mod cpython_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod thread_tests;

pub use error::ListError;
pub use item::{ItemRef, RawItem, Value};
pub use raw::RawMem;
pub use shared::{SharedList, SharedListError};
pub use view::ListView;
pub use writer::{encoded_size, write_new, ListSizer, ListWriter};

/// The longest str (in UTF-8 bytes) or bytes item a list can hold. Its slot
/// of `8 * (len / 8 + 1)` bytes must be named by a `"%ds"` format of at most
/// 8 characters, so the slot may be at most 9,999,992 bytes (bug B15: CPython
/// raises `AssertionError` beyond this).
pub const MAX_ITEM_BYTES: usize = 9_999_991;
