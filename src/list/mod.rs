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
mod shared;
mod view;

#[cfg(test)]
mod cpython_tests;
#[cfg(test)]
mod tests;

pub use error::ListError;
pub use item::{ItemRef, Value};
pub use raw::RawMem;
pub use shared::{SharedList, SharedListError};
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
#[inline]
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
/// int, float, bool and None; `8 * (len / 8 + 1)` for str and bytes, see
/// [`slot_size`]). An empty list takes 16 bytes.
///
/// Fails with [`ListError::ItemTooLarge`] for a str/bytes item of more than
/// [`MAX_ITEM_BYTES`] bytes, and [`ListError::SizeOverflow`] if the total
/// does not fit in 63 bits.
pub fn encoded_size(items: &[ItemRef<'_>]) -> Result<usize, ListError> {
    let mut sizer = ListSizer::new();
    for item in items {
        sizer.push(item)?;
    }
    sizer.size()
}

/// Write a new list holding `items` at the start of `mem`, exactly as
/// CPython's `ShareableList(items)` does: the same bytes (only the order in
/// which they are stored differs, which no reader can rely on: nothing is
/// atomic while a list is created, in CPython either). Bytes of `mem` past
/// [`encoded_size`] are left alone.
///
/// Fails, without writing anything, if an item is too large, if `mem` is
/// smaller than the layout, read-only, or not 8-aligned.
pub fn write_new(mem: &RawMem, items: &[ItemRef<'_>]) -> Result<(), ListError> {
    let mut sizer = ListSizer::new();
    for item in items {
        sizer.push(item)?;
    }
    let mut writer = ListWriter::new(mem, &sizer)?;
    for item in items {
        writer.push(item)?;
    }
    writer.finish()
}

/// Sizes a list one item at a time, for callers that make items on the fly
/// (the Python bindings convert each object twice rather than store them).
#[derive(Clone, Debug, Default)]
pub struct ListSizer {
    n: usize,
    data_len: usize,
}

impl ListSizer {
    /// An empty list's sizer.
    pub fn new() -> ListSizer {
        ListSizer::default()
    }

    /// Count one more item. Fails if it is too large or the list outgrows
    /// 63 bits.
    #[inline]
    pub fn push(&mut self, item: &ItemRef<'_>) -> Result<(), ListError> {
        let slot = slot_size(self.n, item)?;
        self.data_len = self
            .data_len
            .checked_add(slot)
            .ok_or(ListError::SizeOverflow)?;
        self.n += 1;
        Ok(())
    }

    /// Items counted so far.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether no item was counted.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Bytes the list takes, `8(N+2) + D + 9N`.
    pub fn size(&self) -> Result<usize, ListError> {
        layout_size(self.n, self.data_len).ok_or(ListError::SizeOverflow)
    }
}

/// Writes a new list, one item at a time, into a block sized by a
/// [`ListSizer`] that was given the same items in the same order. Items
/// that differ from what was sized make it stop with
/// [`ListError::Corrupt`], never write outside the layout.
pub struct ListWriter<'m> {
    out: raw::BlockWriter<'m>,
    layout: Layout,
    index: usize,
    slot_start: usize,
}

impl<'m> ListWriter<'m> {
    /// Check `mem` for a list of the size `sizer` measured and write its
    /// count and first offset.
    pub fn new(mem: &'m RawMem, sizer: &ListSizer) -> Result<ListWriter<'m>, ListError> {
        let size = sizer.size()?;
        if mem.len() < size {
            return Err(ListError::SegmentTooSmall {
                needed: size,
                len: mem.len(),
            });
        }
        // Values are stored as aligned words: refuse a misaligned block
        // before writing anything rather than half-way through.
        if mem.as_ptr() as usize % 8 != 0 {
            return Err(ListError::Misaligned { offset: 0 });
        }
        let out = mem.writer()?;
        let layout = Layout {
            n: sizer.n,
            data_len: sizer.data_len,
        };
        out.put_u64(0, layout.n as u64);
        out.put_u64(Layout::offset_entry(0), 0);
        Ok(ListWriter {
            out,
            slot_start: layout.data_start(),
            layout,
            index: 0,
        })
    }

    /// Write the next item: its value, its offset, its format, its code.
    #[inline]
    pub fn push(&mut self, item: &ItemRef<'_>) -> Result<(), ListError> {
        let index = self.index;
        let slot_len = slot_size(index, item)?;
        if index >= self.layout.n || self.slot_start + slot_len > self.layout.formats_start() {
            return Err(items_changed());
        }
        match SlotValue::of(item) {
            SlotValue::Word(word) => self.out.put_u64(self.slot_start, word),
            SlotValue::Bytes(bytes) => self.out.put_padded(self.slot_start, bytes, slot_len),
        }
        self.slot_start += slot_len;
        let offset = self.slot_start - self.layout.data_start();
        self.out
            .put_u64(Layout::offset_entry(index + 1), offset as u64);
        let spelled = Format::for_item(item, slot_len)
            .encode()
            .ok_or(ListError::SizeOverflow)?;
        self.out.put_u64(
            self.layout.formats_start() + 8 * index,
            u64::from_ne_bytes(spelled),
        );
        self.out
            .put_u8(self.layout.codes_start() + index, Format::code_for(item));
        self.index += 1;
        Ok(())
    }

    /// Check that every sized item was written.
    pub fn finish(self) -> Result<(), ListError> {
        if self.index == self.layout.n {
            Ok(())
        } else {
            Err(items_changed())
        }
    }
}

fn items_changed() -> ListError {
    ListError::Corrupt("ShareableList items changed while the list was being created".into())
}
