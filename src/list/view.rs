//! [`ListView`]: an attached list, read and written item by item.
//!
//! Every read and write takes a fast path first: the header positions it
//! touches (`offsets[i]`, `offsets[i+1]`, the format word and code byte of
//! item `i`) are ones [`ListView::attach`] checked lie inside the block and
//! are aligned, so they are loaded without re-checking their range. Every
//! value loaded from them is still checked, since other processes may
//! rewrite any byte at any moment: the offsets must describe a slot inside
//! the data area, the format must be one CPython writes and fit the slot,
//! and the code must match it. When anything does not check out, the read
//! or write falls back to the slow path, which reads everything again with
//! range-checked accesses, re-reads a torn format and code a few times, and
//! says exactly what is wrong. Both paths give the same results.

use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;

use super::format::{trim_nuls, Format, SlotValue, CODE_NONE, CODE_STR};
use super::layout::{layout_size, Layout};
use super::{write_new, ItemRef, ListError, RawItem, RawMem, Value};

/// How many times a reader re-reads an item's format and code when they do
/// not make sense together before calling the item corrupt. A writer in
/// another process may be between its format and code stores (or, for a
/// CPython writer, in the middle of copying the format); such a window is a
/// few nanoseconds wide.
const TORN_READ_RETRIES: usize = 4;

/// Words of a str or bytes value that a read copies on the stack (256
/// bytes); a longer value is copied to the heap.
const STACK_WORDS: usize = 32;

/// Where a read copies a str or bytes value before handing it out: never
/// the shared memory itself.
struct CopyBuf {
    stack: [MaybeUninit<u64>; STACK_WORDS],
    heap: Vec<u64>,
}

impl CopyBuf {
    #[inline(always)]
    fn new() -> CopyBuf {
        CopyBuf {
            stack: [MaybeUninit::uninit(); STACK_WORDS],
            heap: Vec::new(),
        }
    }

    /// Room for `words` words. A heap buffer is bounded by the slot being
    /// copied, which lies inside the block.
    #[inline(always)]
    fn words(&mut self, words: usize) -> &mut [MaybeUninit<u64>] {
        if words <= STACK_WORDS {
            &mut self.stack[..words]
        } else {
            self.heap.reserve_exact(words);
            &mut self.heap.spare_capacity_mut()[..words]
        }
    }
}

/// An attached `ShareableList`: the block it lives in plus its item count,
/// read once at attach time (CPython caches `_list_len` the same way).
///
/// Offsets, formats and codes are read and validated on every access, since
/// other processes may change them. Methods take `&self`: the memory is
/// shared with other writers anyway, and [`RawMem`] makes every access
/// atomic or a copy.
///
/// What a view holds is an invariant the fast path relies on: the block
/// starts at an 8-aligned address and `8(N+2) + D + 9N` (with D a multiple
/// of 8) is at most its length. So for every `i < N` the header positions
/// `offsets[i]` and `offsets[i+1]` (at `8 + 8i`, `16 + 8i`), the format word
/// of item `i` (at `8(N+2) + D + 8i`) and its code byte (at
/// `8(N+2) + D + 8N + i`) lie inside the block, the words 8-aligned, and the
/// data area `8(N+2)..8(N+2) + D` too. Only [`ListView::attach`] makes a
/// view, and the fields never change.
#[derive(Debug)]
pub struct ListView {
    mem: RawMem,
    layout: Layout,
}

/// An item's slot: absolute start in the block and length. Only
/// [`ListView::slot`] and [`ListView::slot_fast`] make one, after checking
/// the offsets, so `start` is 8-aligned, `len` a multiple of 8, and
/// `start..start + len` lies in the data area (inside the block).
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
    /// empty list (as in CPython, bug B12). A block whose start is not
    /// 8-aligned fails with [`ListError::Misaligned`] (from the first load).
    pub fn attach(mem: RawMem) -> Result<ListView, ListError> {
        let size = mem.len();
        if size < 8 {
            return Err(corrupt(format!(
                "ShareableList header: a {size}-byte segment cannot hold the 8-byte item count"
            )));
        }
        // This load also checks that the block is 8-aligned, which the
        // view's invariant needs.
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
        self.get_with(i, |item| Value::from(item))
    }

    /// Read item `i` and hand it to `f` without allocating: a str or bytes
    /// value is borrowed from a copy on the stack (a heap copy for long
    /// ones), never from the shared memory itself. Validation and errors are
    /// those of [`ListView::get`].
    #[inline]
    pub fn get_with<R>(&self, i: usize, f: impl FnOnce(ItemRef<'_>) -> R) -> Result<R, ListError> {
        self.get_raw_with(i, |raw| match raw.checked() {
            Ok(item) => Ok(f(item)),
            Err((bytes, error)) => Err(ListError::Utf8 {
                index: i,
                bytes: bytes.to_vec(),
                error,
            }),
        })?
    }

    /// Read item `i` as [`ListView::get_with`] does, except that a str is
    /// handed to `f` as its bytes, not yet checked to be UTF-8 (see
    /// [`RawItem`]): for callers that decode text themselves.
    #[inline]
    pub fn get_raw_with<R>(
        &self,
        i: usize,
        f: impl FnOnce(RawItem<'_>) -> R,
    ) -> Result<R, ListError> {
        self.check_index(i)?;
        let mut buf = CopyBuf::new();
        let item = match self.read_fast(i, &mut buf) {
            Some(item) => item,
            None => self.read_slow(i, &mut buf)?,
        };
        Ok(f(item))
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
    /// as the bytes then NUL padding to the end of the slot, word by word),
    /// then the format as one 8-byte store (`"%ds" % slot_len` for
    /// str/bytes, as CPython writes it), then the code byte. On error nothing
    /// is written (fixing B2).
    #[inline]
    pub fn set(&self, i: usize, item: ItemRef<'_>) -> Result<(), ListError> {
        self.check_index(i)?;
        if self.mem.is_writable() {
            if let Some(slot) = self.slot_fast(i) {
                let value = SlotValue::of(&item);
                let spelled = match value {
                    SlotValue::Word(_) if slot.len >= 8 => {
                        Format::for_item(&item, slot.len).encode()
                    }
                    SlotValue::Bytes(bytes) if bytes.len() > slot.len => {
                        return Err(ListError::ExceedsStorage)
                    }
                    SlotValue::Bytes(_) => Format::Bytes(slot.len).encode(),
                    SlotValue::Word(_) => None,
                };
                if let Some(spelled) = spelled {
                    self.store_item(i, slot, value, spelled, Format::code_for(&item));
                    return Ok(());
                }
            }
        }
        self.set_slow(i, item)
    }

    /// Item `i` read by each path on its own, for tests and the fuzzer:
    /// the fast path's result (`None` where it hands over to the slow path)
    /// and the slow path's. Without a concurrent writer they must agree: a
    /// fast-path value equals the slow path's, and where the fast path
    /// gives none the slow path fails.
    #[cfg(any(test, feature = "fuzzing"))]
    #[doc(hidden)]
    pub fn read_both_paths(
        &self,
        i: usize,
    ) -> (Option<Result<Value, ListError>>, Result<Value, ListError>) {
        let owned = |raw: RawItem<'_>| match raw.checked() {
            Ok(item) => Ok(Value::from(item)),
            Err((bytes, error)) => Err(ListError::Utf8 {
                index: i,
                bytes: bytes.to_vec(),
                error,
            }),
        };
        if i >= self.layout.n {
            return (None, Err(ListError::IndexOutOfRange));
        }
        let mut buf = CopyBuf::new();
        let fast = self.read_fast(i, &mut buf).map(owned);
        let mut buf = CopyBuf::new();
        let slow = self.read_slow(i, &mut buf).and_then(owned);
        (fast, slow)
    }

    /// [`ListView::set`] on the slow path alone, for tests and the fuzzer
    /// (both paths must write the same bytes and fail alike).
    #[cfg(any(test, feature = "fuzzing"))]
    #[doc(hidden)]
    pub fn set_slow_path(&self, i: usize, item: ItemRef<'_>) -> Result<(), ListError> {
        self.check_index(i)?;
        self.set_slow(i, item)
    }

    /// [`ListView::set`] when the fast path cannot: every check again, each
    /// with its own error.
    #[cold]
    #[inline(never)]
    fn set_slow(&self, i: usize, item: ItemRef<'_>) -> Result<(), ListError> {
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
        self.store_item(i, slot, value, spelled, Format::code_for(&item));
        Ok(())
    }

    /// Store an item whose every part was checked: the value (which fits
    /// `slot`: an 8-byte word needs `slot.len >= 8`, bytes at most
    /// `slot.len`), then its spelled format, then its code. The block is
    /// writable.
    #[inline(always)]
    fn store_item(&self, i: usize, slot: Slot, value: SlotValue<'_>, spelled: [u8; 8], code: u8) {
        debug_assert!(self.mem.is_writable());
        match value {
            SlotValue::Word(word) => {
                debug_assert!(slot.len >= 8);
                // SAFETY: the slot is inside the block and 8-aligned (the
                // invariant of `Slot`) and holds at least 8 bytes (checked
                // by both callers); the block is writable (checked by both).
                unsafe {
                    self.mem
                        .store_u64_unchecked(slot.start, word, Ordering::Relaxed)
                };
            }
            SlotValue::Bytes(bytes) => {
                debug_assert!(bytes.len() <= slot.len);
                // SAFETY: the slot is inside the block, 8-aligned and a
                // whole number of words (the invariant of `Slot`); `bytes`
                // fits it (checked by both callers); the block is writable.
                unsafe {
                    self.mem
                        .write_padded_words_unchecked(slot.start, bytes, slot.len / 8)
                };
            }
        }
        // SAFETY: `i < n` (checked by both callers), so the format word and
        // the code byte are header positions `attach` validated (see `ListView::attach`);
        // the block is writable.
        unsafe {
            self.mem.store_u64_unchecked(
                self.format_offset(i),
                u64::from_ne_bytes(spelled),
                Ordering::Release,
            );
            self.mem
                .store_u8_unchecked(self.layout.codes_start() + i, code);
        }
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

    /// The slot of item `i < n`, if its offsets check out (as in
    /// [`ListView::slot`], without the errors): both multiples of 8 with
    /// `0 <= offsets[i] <= offsets[i+1] <= D`.
    #[inline(always)]
    fn slot_fast(&self, i: usize) -> Option<Slot> {
        debug_assert!(i < self.layout.n);
        // SAFETY: `i < n`, so `offsets[i]` and `offsets[i+1]` are header
        // positions `attach` validated: in the block and 8-aligned.
        let (start, end) = unsafe {
            (
                self.mem.load_u64_unchecked(Layout::offset_entry(i)),
                self.mem.load_u64_unchecked(Layout::offset_entry(i + 1)),
            )
        };
        // A negative int64 is a huge u64, and fails `end <= D` (or
        // `start <= end`).
        if start <= end && end <= self.layout.data_len as u64 && (start | end) % 8 == 0 {
            Some(Slot {
                start: self.layout.data_start() + start as usize,
                len: (end - start) as usize,
            })
        } else {
            None
        }
    }

    /// Item `i < n` read on the fast path, or `None` if anything read does
    /// not check out (the slow path then reads it again and says why).
    #[inline(always)]
    fn read_fast<'b>(&self, i: usize, buf: &'b mut CopyBuf) -> Option<RawItem<'b>> {
        let slot = self.slot_fast(i)?;
        // SAFETY: `i < n`, so the code byte and the format word are header
        // positions `attach` validated: in the block, the word 8-aligned.
        // The code is read first: writers here store it last.
        let (code, word) = unsafe {
            let code = self.mem.load_u8_unchecked(self.layout.codes_start() + i);
            (code, self.mem.load_u64_unchecked(self.format_offset(i)))
        };
        let format = Format::parse(&word.to_ne_bytes())?;
        if format.size() > slot.len || !format.accepts_code(code) {
            return None;
        }
        Some(self.decode(slot, format, code, buf))
    }

    /// Item `i < n` read with every check and its error, re-reading a torn
    /// format and code (see [`TORN_READ_RETRIES`]).
    #[cold]
    #[inline(never)]
    fn read_slow<'b>(&self, i: usize, buf: &'b mut CopyBuf) -> Result<RawItem<'b>, ListError> {
        let slot = self.slot(i)?;
        let (format, code) = self.format_and_code(i, slot)?;
        Ok(self.decode(slot, format, code, buf))
    }

    /// The value in `slot` under a checked `format` (naming no more bytes
    /// than the slot has) and matching `code`. Code 3 reads as `None`
    /// whatever the format, as in CPython; a str or bytes value is copied
    /// into `buf` and has its trailing NULs stripped (B3).
    #[inline(always)]
    fn decode<'b>(
        &self,
        slot: Slot,
        format: Format,
        code: u8,
        buf: &'b mut CopyBuf,
    ) -> RawItem<'b> {
        if code == CODE_NONE {
            return RawItem::None;
        }
        let word = || {
            // SAFETY: the slot is inside the block and 8-aligned (the
            // invariant of `Slot`), and a number's format, whose size (8)
            // the callers checked is at most the slot's length, reads the
            // slot's first word.
            unsafe { self.mem.load_u64_unchecked(slot.start) }
        };
        match format {
            Format::Int => RawItem::Int(word() as i64),
            Format::Float => RawItem::Float(f64::from_bits(word())),
            Format::Bool => RawItem::Bool(word().to_ne_bytes()[7] != 0),
            // `accepts_code` pairs the None format with code 3 only.
            Format::None => RawItem::None,
            Format::Bytes(n) => {
                let room = buf.words(n.div_ceil(8));
                // SAFETY: the slot is inside the block, 8-aligned and a
                // whole number of words (the invariant of `Slot`), and the
                // callers checked `n <= slot.len`, so the `n.div_ceil(8)`
                // words that hold its first `n` bytes lie inside it; `room`
                // has that many words.
                let bytes =
                    trim_nuls(unsafe { self.mem.read_bytes_unchecked(slot.start, n, room) });
                if code == CODE_STR {
                    RawItem::Str(bytes)
                } else {
                    RawItem::Bytes(bytes)
                }
            }
        }
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
