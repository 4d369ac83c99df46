//! [`ListView`]: an attached list, read and written item by item.

use super::format::{trim_nuls, Format, SlotValue, CODE_NONE, CODE_STR};
use super::layout::{layout_size, Layout};
use super::{write_new, ItemRef, ListError, RawMem, Value};

/// How many times a reader re-reads an item's format and code when they do
/// not make sense together before calling the item corrupt. A writer in
/// another process may be between its format and code stores (or, for a
/// CPython writer, in the middle of copying the format); such a window is a
/// few nanoseconds wide.
const TORN_READ_RETRIES: usize = 4;

/// An attached `ShareableList`: the block it lives in plus its item count,
/// read once at attach time (CPython caches `_list_len` the same way).
///
/// Offsets, formats and codes are read and validated on every access, since
/// other processes may change them. Methods take `&self`: the memory is
/// shared with other writers anyway, and [`RawMem`] makes every access
/// atomic or a copy.
#[derive(Debug)]
pub struct ListView {
    mem: RawMem,
    layout: Layout,
}

/// An item's slot: absolute start in the block and length.
#[derive(Clone, Copy, Debug)]
struct Slot {
    start: usize,
    len: usize,
}

impl ListView {
    /// Attach to the list at the start of `mem`, in O(1): reads only N (at
    /// offset 0) and D (`offsets[N]`), and `offsets[0]`.
    ///
    /// Fails with [`ListError::Corrupt`] unless the header describes a list
    /// that fits: N ≥ 0, D ≥ 0 and a multiple of 8, `offsets[0] = 0`, and
    /// `8(N+2) + D + 9N ≤ mem.len()`. A block of at least 16 zero bytes is an
    /// empty list (as in CPython, bug B12).
    pub fn attach(mem: RawMem) -> Result<ListView, ListError> {
        let size = mem.len();
        if size < 8 {
            return Err(corrupt(format!(
                "ShareableList header: a {size}-byte segment cannot hold the 8-byte item count"
            )));
        }
        let raw_n = mem.load_u64(0)? as i64;
        let n = usize::try_from(raw_n).map_err(|_| {
            corrupt(format!(
                "ShareableList header: the item count {raw_n} is negative"
            ))
        })?;
        let does_not_fit = || {
            corrupt(format!(
                "ShareableList header: {n} items do not fit in a {size}-byte segment"
            ))
        };
        let header_end = n
            .checked_add(2)
            .and_then(|k| k.checked_mul(8))
            .ok_or_else(does_not_fit)?;
        if header_end > size {
            return Err(does_not_fit());
        }
        let raw_d = mem.load_u64(Layout::offset_entry(n))? as i64;
        let data_len = usize::try_from(raw_d).map_err(|_| {
            corrupt(format!(
                "ShareableList header: the data size offsets[{n}] = {raw_d} is negative"
            ))
        })?;
        if data_len % 8 != 0 {
            return Err(corrupt(format!(
                "ShareableList header: the data size offsets[{n}] = {data_len} is not a multiple of 8"
            )));
        }
        match layout_size(n, data_len) {
            Some(needed) if needed <= size => {}
            _ => {
                return Err(corrupt(format!(
                    "ShareableList header: {n} items with {data_len} bytes of data do not fit in \
                     a {size}-byte segment"
                )))
            }
        }
        if n > 0 {
            let first = mem.load_u64(Layout::offset_entry(0))? as i64;
            if first != 0 {
                return Err(corrupt(format!(
                    "ShareableList header: offsets[0] is {first}, not 0"
                )));
            }
        }
        Ok(ListView {
            mem,
            layout: Layout { n, data_len },
        })
    }

    /// Write a new list of `items` into `mem` (see [`write_new`](super::write_new))
    /// and attach to it.
    pub fn create(mem: RawMem, items: &[ItemRef<'_>]) -> Result<ListView, ListError> {
        write_new(&mem, items)?;
        ListView::attach(mem)
    }

    /// The number of items read at attach time. Offsets and slot sizes of
    /// a list never change, so this is the length the view works with.
    pub fn len(&self) -> usize {
        self.layout.n
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.layout.n == 0
    }

    /// The item count as stored in shared memory now; CPython's `len()`
    /// re-reads it on every call. Fails if the stored value is negative or
    /// more items than the block could hold (a forged count would otherwise
    /// make `list(sl)`, which sizes its result by `len()`, allocate for it).
    pub fn live_len(&self) -> Result<usize, ListError> {
        let raw_n = self.mem.load_u64(0)? as i64;
        let n = usize::try_from(raw_n).map_err(|_| {
            corrupt(format!(
                "ShareableList header: the item count {raw_n} is negative"
            ))
        })?;
        match layout_size(n, 0) {
            Some(needed) if needed <= self.mem.len() => Ok(n),
            _ => Err(corrupt(format!(
                "ShareableList header: {n} items do not fit in a {}-byte segment",
                self.mem.len()
            ))),
        }
    }

    /// Total size of the data slots (D, `offsets[N]` at attach time).
    pub fn data_len(&self) -> usize {
        self.layout.data_len
    }

    /// Number of bytes the layout occupies, `8(N+2) + D + 9N` (CPython's
    /// requested segment size; the segment may be larger).
    pub fn byte_len(&self) -> usize {
        self.layout.size()
    }

    /// The memory block the list lives in.
    pub fn mem(&self) -> &RawMem {
        &self.mem
    }

    /// Give back the memory block.
    pub fn into_mem(self) -> RawMem {
        self.mem
    }

    /// Read item `i`.
    ///
    /// Validates the item's offsets, format (one of those CPython writes,
    /// naming no more bytes than the slot has) and code (0–3, and matching
    /// the format; code 3 reads as `None` whatever the format, as in
    /// CPython). A str/bytes value has its trailing NULs stripped (CPython
    /// behaviour, B3); a str that is not valid UTF-8 gives
    /// [`ListError::Utf8`].
    pub fn get(&self, i: usize) -> Result<Value, ListError> {
        self.get_with(i, |item| match item {
            ItemRef::Int(v) => Value::Int(v),
            ItemRef::Float(v) => Value::Float(v),
            ItemRef::Bool(v) => Value::Bool(v),
            ItemRef::None => Value::None,
            ItemRef::Str(s) => Value::Str(s.to_owned()),
            ItemRef::Bytes(b) => Value::Bytes(b.to_vec()),
        })
    }

    /// Read item `i` and hand it to `f` without allocating: a str or bytes
    /// value is borrowed from a copy on the stack (a heap copy for long
    /// ones), never from the shared memory itself. Validation and errors are
    /// those of [`ListView::get`].
    pub fn get_with<R>(&self, i: usize, f: impl FnOnce(ItemRef<'_>) -> R) -> Result<R, ListError> {
        self.check_index(i)?;
        let slot = self.slot(i)?;
        let (format, code) = self.format_and_code(i, slot)?;
        if code == CODE_NONE {
            return Ok(f(ItemRef::None));
        }
        Ok(match format {
            Format::Int => f(ItemRef::Int(self.mem.load_u64(slot.start)? as i64)),
            Format::Float => f(ItemRef::Float(f64::from_bits(
                self.mem.load_u64(slot.start)?,
            ))),
            Format::Bool => f(ItemRef::Bool(
                self.mem.load_u64(slot.start)?.to_ne_bytes()[7] != 0,
            )),
            // `format_and_code` pairs the None format with code 3 only.
            Format::None => f(ItemRef::None),
            Format::Bytes(n) => {
                // n <= slot.len, which lies inside the block: a heap copy is
                // bounded by the real size of the memory.
                let mut stack = [0u8; 128];
                let mut heap = Vec::new();
                let buf: &mut [u8] = if n <= stack.len() {
                    &mut stack[..n]
                } else {
                    heap.resize(n, 0);
                    &mut heap
                };
                self.mem.read_into(slot.start, buf)?;
                let bytes = trim_nuls(buf);
                if code == CODE_STR {
                    match std::str::from_utf8(bytes) {
                        Ok(s) => f(ItemRef::Str(s)),
                        Err(error) => {
                            return Err(ListError::Utf8 {
                                index: i,
                                bytes: bytes.to_vec(),
                                error,
                            })
                        }
                    }
                } else {
                    f(ItemRef::Bytes(bytes))
                }
            }
        })
    }

    /// Read every item, in order (what `list(sl)` gives).
    pub fn get_all(&self) -> Result<Vec<Value>, ListError> {
        (0..self.layout.n).map(|i| self.get(i)).collect()
    }

    /// Store `item` at position `i`.
    ///
    /// A str/bytes item must fit in the slot (UTF-8 bytes ≤ slot length),
    /// else [`ListError::ExceedsStorage`]. An item may change type, as
    /// CPython allows (an int slot can take a str of up to 8 bytes, and any
    /// slot can take an int). The previous format and code are not consulted,
    /// so `set` also repairs an item whose format or code is corrupt.
    ///
    /// Write order: the value (numbers as one aligned 8-byte store; str/bytes
    /// as the bytes then NUL padding to the end of the slot), then the
    /// format as one 8-byte store (`"%ds" % slot_len` for str/bytes, as
    /// CPython writes it), then the code byte. On error nothing is written
    /// (fixing B2).
    pub fn set(&self, i: usize, item: ItemRef<'_>) -> Result<(), ListError> {
        self.check_index(i)?;
        let slot = self.slot(i)?;
        let value = SlotValue::of(&item);
        match value {
            SlotValue::Bytes(bytes) if bytes.len() > slot.len => {
                return Err(ListError::ExceedsStorage);
            }
            SlotValue::Word(_) if slot.len < 8 => {
                return Err(corrupt(format!(
                    "ShareableList item {i}: its {}-byte slot cannot hold an 8-byte value",
                    slot.len
                )));
            }
            _ => {}
        }
        let format = Format::for_item(&item, slot.len);
        let spelled = format.encode().ok_or_else(|| {
            corrupt(format!(
                "ShareableList item {i}: its {}-byte slot is larger than any format can describe",
                slot.len
            ))
        })?;
        if !self.mem.is_writable() {
            return Err(ListError::ReadOnly);
        }
        // Validated: everything below is in bounds and aligned, so these
        // writes cannot fail half-way.
        match value {
            SlotValue::Word(word) => self.mem.store_u64(slot.start, word)?,
            SlotValue::Bytes(bytes) => {
                self.mem.write_from(slot.start, bytes)?;
                self.mem
                    .fill(slot.start + bytes.len(), slot.len - bytes.len(), 0)?;
            }
        }
        self.mem
            .store_u64(self.format_offset(i), u64::from_ne_bytes(spelled))?;
        self.mem
            .store_u8(self.layout.codes_start() + i, Format::code_for(&item))?;
        Ok(())
    }

    /// The stored format of item `i` with its NUL padding removed, as
    /// CPython's `_get_packing_format(i)` returns it (e.g. `"q"`, `"16s"`).
    /// Fails if the format is not one CPython writes or names more bytes than
    /// the item's slot holds.
    pub fn format_of(&self, i: usize) -> Result<String, ListError> {
        self.check_index(i)?;
        let slot = self.slot(i)?;
        let (_, raw) = self.stored_format(i, slot)?;
        Ok(trim_nuls(&raw).iter().map(|&b| char::from(b)).collect())
    }

    /// All formats joined, like CPython's `ShareableList.format` property
    /// (e.g. `"q8s8sxxxxxx?xxxxxxxx?d"`).
    pub fn format(&self) -> Result<String, ListError> {
        let mut out = String::new();
        for i in 0..self.layout.n {
            out.push_str(&self.format_of(i)?);
        }
        Ok(out)
    }

    fn check_index(&self, i: usize) -> Result<(), ListError> {
        if i < self.layout.n {
            Ok(())
        } else {
            Err(ListError::IndexOutOfRange)
        }
    }

    fn format_offset(&self, i: usize) -> usize {
        self.layout.formats_start() + 8 * i
    }

    /// Read and validate the slot of item `i < n`: both offsets must be
    /// multiples of 8 with `0 <= offsets[i] <= offsets[i+1] <= D`.
    fn slot(&self, i: usize) -> Result<Slot, ListError> {
        let data_len = self.layout.data_len;
        let read = |k: usize| -> Result<usize, ListError> {
            let raw = self.mem.load_u64(Layout::offset_entry(k))? as i64;
            match usize::try_from(raw) {
                Ok(v) if v <= data_len && v % 8 == 0 => Ok(v),
                Ok(v) if v <= data_len => Err(corrupt(format!(
                    "ShareableList item {i}: offsets[{k}] = {v} is not a multiple of 8"
                ))),
                _ => Err(corrupt(format!(
                    "ShareableList item {i}: offsets[{k}] = {raw} is outside the {data_len}-byte \
                     data area"
                ))),
            }
        };
        let start = read(i)?;
        let end = read(i + 1)?;
        if start > end {
            return Err(corrupt(format!(
                "ShareableList item {i}: offsets[{i}] = {start} is larger than offsets[{}] = {end}",
                i + 1
            )));
        }
        Ok(Slot {
            start: self.layout.data_start() + start,
            len: end - start,
        })
    }

    /// Read and validate item `i`'s format: one CPython writes, naming no
    /// more bytes than the slot has. Returns it parsed and as stored.
    fn stored_format(&self, i: usize, slot: Slot) -> Result<(Format, [u8; 8]), ListError> {
        let raw = self.mem.load_u64(self.format_offset(i))?.to_ne_bytes();
        let format = Format::parse(&raw).ok_or_else(|| {
            corrupt(format!(
                "ShareableList item {i}: unknown format '{}'",
                trim_nuls(&raw).escape_ascii()
            ))
        })?;
        if format.size() > slot.len {
            return Err(corrupt(format!(
                "ShareableList item {i}: format '{}' needs {} bytes, but the slot has {}",
                trim_nuls(&raw).escape_ascii(),
                format.size(),
                slot.len
            )));
        }
        Ok((format, raw))
    }

    /// Read item `i`'s code and format (code first: writers here store it
    /// last) and check that they belong together, re-reading a few times in
    /// case a concurrent writer is between the two.
    fn format_and_code(&self, i: usize, slot: Slot) -> Result<(Format, u8), ListError> {
        let code_offset = self.layout.codes_start() + i;
        let mut attempt = 0;
        loop {
            let code = self.mem.load_u8(code_offset)?;
            let checked = self.stored_format(i, slot).and_then(|(format, raw)| {
                if format.accepts_code(code) {
                    Ok(format)
                } else if code > CODE_NONE {
                    Err(corrupt(format!(
                        "ShareableList item {i}: back-transform code {code} is not 0, 1, 2 or 3"
                    )))
                } else {
                    Err(corrupt(format!(
                        "ShareableList item {i}: back-transform code {code} does not match format \
                         '{}' (corrupt, or being written concurrently)",
                        trim_nuls(&raw).escape_ascii()
                    )))
                }
            });
            match checked {
                Ok(format) => return Ok((format, code)),
                Err(e) if attempt + 1 >= TORN_READ_RETRIES => return Err(e),
                Err(_) => {
                    attempt += 1;
                    std::hint::spin_loop();
                }
            }
        }
    }
}

fn corrupt(msg: String) -> ListError {
    ListError::Corrupt(msg)
}
