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
mod raw;
mod view;

#[cfg(test)]
mod cpython_tests;
#[cfg(test)]
mod tests;

pub use error::ListError;
pub use item::{ItemRef, Value};
pub use raw::RawMem;
pub use view::ListView;

use format::{Format, SlotValue};

/// The longest str (in UTF-8 bytes) or bytes item a list can hold. Its slot
/// of `8 * (len / 8 + 1)` bytes must be named by a `"%ds"` format of at most
/// 8 characters, so the slot may be at most 9,999,992 bytes (bug B15: CPython
/// raises `AssertionError` beyond this).
pub const MAX_ITEM_BYTES: usize = 9_999_991;

/// Where the parts of a list of `n` items with `data_len` bytes of slots
/// start. Only built once [`layout_size`] has accepted `n` and `data_len`,
/// so none of these sums can overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    n: usize,
    data_len: usize,
}

impl Layout {
    /// Offset of `offsets[k]`.
    fn offset_entry(k: usize) -> usize {
        8 + 8 * k
    }

    fn data_start(&self) -> usize {
        8 * (self.n + 2)
    }

    fn formats_start(&self) -> usize {
        self.data_start() + self.data_len
    }

    fn codes_start(&self) -> usize {
        self.formats_start() + 8 * self.n
    }

    fn size(&self) -> usize {
        self.codes_start() + self.n
    }
}

/// `8(N+2) + D + 9N`, or `None` if it overflows `usize` or exceeds
/// `i64::MAX` (the header stores offsets as `int64`).
fn layout_size(n: usize, data_len: usize) -> Option<usize> {
    let header = n.checked_add(2)?.checked_mul(8)?;
    let tail = n.checked_mul(9)?;
    let total = header.checked_add(data_len)?.checked_add(tail)?;
    let fits_i64 = u64::try_from(total).ok()? <= i64::MAX as u64;
    fits_i64.then_some(total)
}

/// Size of the slot item `index` gets: 8 for the fixed-size kinds, and for
/// str/bytes the slot CPython gives it, `8 * (len / 8 + 1)` with `len` in
/// characters, whenever the UTF-8 bytes fit in that; otherwise (non-ASCII
/// text that CPython would truncate, bug B4) `8 * (len / 8 + 1)` with `len`
/// in bytes. So every list CPython stores correctly gets CPython's exact
/// layout and formats, and the rest round-trip too.
fn slot_size(index: usize, item: &ItemRef<'_>) -> Result<usize, ListError> {
    match SlotValue::of(item) {
        SlotValue::Word(_) => Ok(8),
        SlotValue::Bytes(b) if b.len() > MAX_ITEM_BYTES => Err(ListError::ItemTooLarge {
            index,
            len: b.len(),
            max: MAX_ITEM_BYTES,
        }),
        SlotValue::Bytes(b) => {
            if let ItemRef::Str(s) = item {
                if !s.is_ascii() {
                    let by_chars = 8 * (s.chars().count() / 8 + 1);
                    if b.len() <= by_chars {
                        return Ok(by_chars);
                    }
                }
            }
            Ok(8 * (b.len() / 8 + 1))
        }
    }
}

/// Number of bytes a list of `items` occupies: the size CPython requests
/// for its segment, `8(N+2) + D + 9N`, where D adds up the slot sizes (8 for
/// int, float, bool and None; `8 * (len / 8 + 1)` for str and bytes, with
/// `len` counted in UTF-8 bytes). An empty list takes 16 bytes.
///
/// Fails with [`ListError::ItemTooLarge`] for a str/bytes item of more than
/// [`MAX_ITEM_BYTES`] bytes, and [`ListError::SizeOverflow`] if the total
/// does not fit in 63 bits.
pub fn encoded_size(items: &[ItemRef<'_>]) -> Result<usize, ListError> {
    let mut data_len = 0usize;
    for (index, item) in items.iter().enumerate() {
        let slot = slot_size(index, item)?;
        data_len = data_len.checked_add(slot).ok_or(ListError::SizeOverflow)?;
    }
    layout_size(items.len(), data_len).ok_or(ListError::SizeOverflow)
}

/// Write a new list holding `items` at the start of `mem`, exactly as
/// CPython's `ShareableList(items)` does (same bytes, same order: the count
/// and offsets, then the values, then the formats, then the codes). Bytes of
/// `mem` past [`encoded_size`] are left alone.
///
/// Fails, without writing anything, if an item is too large, if `mem` is
/// smaller than the layout, read-only, or not 8-aligned.
pub fn write_new(mem: &RawMem, items: &[ItemRef<'_>]) -> Result<(), ListError> {
    let size = encoded_size(items)?;
    if mem.len() < size {
        return Err(ListError::SegmentTooSmall {
            needed: size,
            len: mem.len(),
        });
    }
    if !mem.is_writable() {
        return Err(ListError::ReadOnly);
    }
    // Values are stored as aligned words: refuse a misaligned block before
    // writing anything rather than half-way through.
    if mem.as_ptr() as usize % 8 != 0 {
        return Err(ListError::Misaligned { offset: 0 });
    }
    let n = items.len();

    // Count and offsets. `encoded_size` succeeded, so every slot size is
    // known to be valid and every sum below fits.
    let mut header = Vec::with_capacity(8 * (n + 2));
    header.extend_from_slice(&(n as u64).to_ne_bytes());
    header.extend_from_slice(&0u64.to_ne_bytes());
    let mut data_len = 0usize;
    for (index, item) in items.iter().enumerate() {
        data_len += slot_size(index, item)?;
        header.extend_from_slice(&(data_len as u64).to_ne_bytes());
    }
    mem.write_from(0, &header)?;
    drop(header);
    let layout = Layout { n, data_len };

    // Values.
    let mut formats = Vec::with_capacity(8 * n);
    let mut codes = Vec::with_capacity(n);
    let mut slot_start = layout.data_start();
    for (index, item) in items.iter().enumerate() {
        let slot_len = slot_size(index, item)?;
        match SlotValue::of(item) {
            SlotValue::Word(word) => mem.store_u64(slot_start, word)?,
            SlotValue::Bytes(bytes) => {
                mem.write_from(slot_start, bytes)?;
                mem.fill(slot_start + bytes.len(), slot_len - bytes.len(), 0)?;
            }
        }
        let format = Format::for_item(item, slot_len);
        // Cannot fail: slot_len <= MAX_ITEM_BYTES + 1 fits in 7 digits.
        let spelled = format.encode().ok_or(ListError::SizeOverflow)?;
        formats.extend_from_slice(&spelled);
        codes.push(Format::code_for(item));
        slot_start += slot_len;
    }

    // Formats, then codes.
    mem.write_from(layout.formats_start(), &formats)?;
    mem.write_from(layout.codes_start(), &codes)?;
    Ok(())
}
