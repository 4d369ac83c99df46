//! Writing a new list: [`ListSizer`] measures the items, [`ListWriter`]
//! stores them in one pass, byte for byte as CPython's `ShareableList`.

use super::format::{Format, SlotValue};
use super::layout::{layout_size, Layout};
use super::{raw, ItemRef, ListError, RawMem, MAX_ITEM_BYTES};

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
