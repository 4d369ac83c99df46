//! Bounds-checked access to memory that other processes write concurrently.
//!
//! [`RawMem`] is the only place in the list layout that touches memory
//! through pointers. The bytes behind it may change at any moment (another
//! process may be writing the same `ShareableList`), so it never hands out
//! `&[u8]` or `&mut [u8]` views of them. Instead:
//!
//! * 8-byte values are single aligned atomic accesses ([`RawMem::load_u64`],
//!   [`RawMem::store_u64`]), so a concurrent reader sees either the old or
//!   the new value, never a mix of the two;
//! * single bytes are atomic too ([`RawMem::load_u8`], [`RawMem::store_u8`]);
//! * runs of bytes are copied into or out of caller-owned buffers
//!   ([`RawMem::read_into`], [`RawMem::write_from`], [`RawMem::fill`]) one
//!   aligned word (or, at unaligned ends, one byte) at a time, each a relaxed
//!   atomic access. A run may mix old and new bytes of a concurrent write,
//!   but no access is a data race, so threads of one process (free-threaded
//!   Python, Rust threads) may read and write the same bytes under the Rust
//!   memory model, and ThreadSanitizer has nothing to report.
//!
//! Stores use `Release` and loads use `Acquire` ordering: a reader that sees
//! a stored format word or code byte also sees every byte this process wrote
//! before it. That is what makes the value-then-format-then-code write order
//! of [`ListView::set`](super::ListView::set) meaningful on weakly ordered
//! CPUs. (On x86-64 both compile to plain moves.)
//!
//! Every public accessor checks its range with checked arithmetic and returns
//! an error instead of panicking or touching memory outside the block. The
//! list reader's fast path uses the crate-private `*_unchecked` accessors
//! instead, only at positions that [`ListView::attach`](super::ListView::attach)
//! validated against the block's size and alignment (and at slots whose
//! offsets it has just re-read and checked): they are `unsafe fn`s whose
//! contract is exactly that, asserted in debug builds (the fuzzer's).

use std::fmt;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::ListError;

/// A block of `len` bytes at `ptr`, typically a shared-memory mapping, that
/// other processes may read and write at any time.
///
/// It never hands out `&[u8]`/`&mut [u8]` views of the memory. 8-byte values
/// are single aligned atomic accesses, so a concurrent reader never sees a
/// torn value; single bytes are atomic too; runs of bytes are copied into
/// or out of caller-owned buffers word by word, each word (or byte, at
/// unaligned ends) one relaxed atomic access. Stores are `Release` and
/// loads `Acquire`, so a reader that sees a stored word or byte also sees
/// every byte written before it. Every access is bounds-checked with checked
/// arithmetic and returns a [`ListError`] instead of panicking.
///
/// A `RawMem` made with [`RawMem::zeroed`] or [`RawMem::from_bytes`] owns an
/// 8-aligned heap buffer instead, which is how tests and fuzzers use the list
/// layout without a segment.
pub struct RawMem {
    ptr: *mut u8,
    len: usize,
    writable: bool,
    /// Keeps the heap buffer of an owned block alive (and frees it on drop).
    _owned: Option<OwnedWords>,
}

// SAFETY: `RawMem` holds no references, only a pointer to memory that is
// built for unsynchronised concurrent use: other processes read and write it
// at any time. Every accessor goes through atomics or raw-pointer copies and
// re-checks bounds, so using one `RawMem` from several threads is no
// different from several processes using the same block. The contract of
// `RawMem::new` requires the memory to stay valid wherever the value is used,
// whichever thread that is. Owned blocks are plain heap allocations.
unsafe impl Send for RawMem {}

// SAFETY: see `Send` above; no method relies on exclusive access (`&self`
// suffices for writing precisely because the memory is shared anyway).
unsafe impl Sync for RawMem {}

impl RawMem {
    /// A block over `len` bytes at `ptr` that may be read and written.
    ///
    /// 8-byte accesses need an address that is a multiple of 8; a block whose
    /// `ptr` is not 8-aligned works for byte access but every 8-byte access
    /// returns [`ListError::Misaligned`]. (Shared-memory mappings are page
    /// aligned.)
    ///
    /// # Safety
    ///
    /// Unless `len` is 0, `ptr` must be valid for reads and writes of `len`
    /// bytes for as long as the returned `RawMem` (or anything holding it) is
    /// used, from whichever thread uses it; for a mapping this means it must
    /// stay mapped, writable, and not be resized below `len` (a `SIGBUS` from
    /// a truncated file is outside what this type can prevent). The bytes may
    /// be changed concurrently by other processes or threads: `RawMem` never
    /// assumes they stay put.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> RawMem {
        RawMem {
            ptr,
            len,
            writable: true,
            _owned: None,
        }
    }

    /// A block over `len` bytes at `ptr` that is only read: every write
    /// accessor returns [`ListError::ReadOnly`] without touching memory.
    /// Use this for read-only mappings (`PROT_READ`), which fault on writes.
    ///
    /// # Safety
    ///
    /// As for [`RawMem::new`], except that `ptr` need only be valid for
    /// reads.
    pub unsafe fn new_read_only(ptr: *const u8, len: usize) -> RawMem {
        RawMem {
            ptr: ptr.cast_mut(),
            len,
            writable: false,
            _owned: None,
        }
    }

    /// An owned, zero-filled, 8-aligned block of `len` bytes on the heap.
    pub fn zeroed(len: usize) -> RawMem {
        let owned = OwnedWords::zeroed(len.div_ceil(8));
        RawMem {
            ptr: owned.ptr.cast::<u8>(),
            len,
            writable: true,
            _owned: Some(owned),
        }
    }

    /// An owned, 8-aligned copy of `bytes` on the heap.
    pub fn from_bytes(bytes: &[u8]) -> RawMem {
        let mem = RawMem::zeroed(bytes.len());
        // Cannot fail: the block has exactly `bytes.len()` bytes.
        let copied = mem.write_from(0, bytes);
        debug_assert!(copied.is_ok());
        mem
    }

    /// Size of the block in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the block has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the write accessors may be used (false for
    /// [`RawMem::new_read_only`] blocks).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Start of the block. Dereferencing it is up to the caller.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// A snapshot copy of the whole block (it may be changing while copied).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.len];
        // Cannot fail: the range is the whole block.
        let copied = self.read_into(0, &mut out);
        debug_assert!(copied.is_ok());
        out
    }

    /// Pointer to `count` bytes at `off`, after checking they lie inside the
    /// block.
    fn range(&self, off: usize, count: usize) -> Result<*mut u8, ListError> {
        match off.checked_add(count) {
            Some(end) if end <= self.len => {
                // `wrapping_add` keeps this computation free of unsafe; the
                // check above makes it an in-bounds offset anyway.
                Ok(self.ptr.wrapping_add(off))
            }
            _ => Err(ListError::OutOfBounds {
                offset: off,
                len: count,
                size: self.len,
            }),
        }
    }

    /// Pointer to 8 in-bounds bytes at `off` whose address is 8-aligned.
    fn word(&self, off: usize) -> Result<*mut u8, ListError> {
        let p = self.range(off, 8)?;
        if (p as usize) % std::mem::align_of::<AtomicU64>() != 0 {
            return Err(ListError::Misaligned { offset: off });
        }
        Ok(p)
    }

    fn check_writable(&self) -> Result<(), ListError> {
        if self.writable {
            Ok(())
        } else {
            Err(ListError::ReadOnly)
        }
    }

    /// Read the 8 bytes at `off` as one native-endian `u64`, in a single
    /// aligned atomic load (`Acquire`). `off` must be a multiple of 8 (more
    /// precisely, the address must be).
    pub fn load_u64(&self, off: usize) -> Result<u64, ListError> {
        let p = self.word(off)?;
        // SAFETY: `word` checked that the 8 bytes lie inside the block, which
        // the contract of `new` (or our own allocation) keeps valid, and that
        // the address is aligned for `AtomicU64`. The memory is only ever
        // accessed through atomics or raw copies, never through references,
        // so viewing it as an atomic for this one load creates no aliasing
        // conflict; mixed-size or non-atomic accesses by other processes are
        // inherent to shared memory and cannot make an aligned 8-byte load
        // tear on the 64-bit targets we support.
        let v = unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }.load(Ordering::Acquire);
        Ok(v)
    }

    /// Write `v` to the 8 bytes at `off` in a single aligned atomic store
    /// (`Release`, so bytes written before it are visible to a reader that
    /// sees it). Same alignment rule as [`RawMem::load_u64`].
    pub fn store_u64(&self, off: usize, v: u64) -> Result<(), ListError> {
        self.check_writable()?;
        let p = self.word(off)?;
        // SAFETY: as in `load_u64`: in bounds, aligned, and only ever accessed
        // through atomics or raw copies; the block is writable (checked
        // above, and promised by the contract of `new`).
        unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }.store(v, Ordering::Release);
        Ok(())
    }

    /// Read the byte at `off` (atomic `Acquire` load).
    pub fn load_u8(&self, off: usize) -> Result<u8, ListError> {
        let p = self.range(off, 1)?;
        // SAFETY: the byte lies inside the block (checked by `range`), which
        // stays valid per the contract of `new`; `AtomicU8` has alignment 1.
        let v = unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Acquire);
        Ok(v)
    }

    /// Write the byte at `off` (atomic `Release` store).
    pub fn store_u8(&self, off: usize, v: u8) -> Result<(), ListError> {
        self.check_writable()?;
        let p = self.range(off, 1)?;
        // SAFETY: in bounds (checked by `range`), valid and writable per the
        // contract of `new` and the check above; `AtomicU8` has alignment 1.
        unsafe { AtomicU8::from_ptr(p) }.store(v, Ordering::Release);
        Ok(())
    }

    /// Copy `dst.len()` bytes starting at `off` into `dst`, each aligned
    /// word (or byte, at unaligned ends) one relaxed atomic load: a copy
    /// that another writer changes meanwhile may mix old and new bytes,
    /// which callers validate.
    pub fn read_into(&self, off: usize, dst: &mut [u8]) -> Result<(), ListError> {
        let p = self.range(off, dst.len())?;
        // SAFETY: the source range lies inside the block (checked by
        // `range`) and is valid for reads per the contract of `new`.
        unsafe { copy_out(p, dst) };
        Ok(())
    }

    /// Copy `src` into the block starting at `off`, each aligned word (or
    /// byte, at unaligned ends) one relaxed atomic store.
    pub fn write_from(&self, off: usize, src: &[u8]) -> Result<(), ListError> {
        self.check_writable()?;
        let p = self.range(off, src.len())?;
        // SAFETY: the destination range lies inside the block (checked by
        // `range`) and is valid for writes (contract of `new`, `writable`
        // checked).
        unsafe {
            copy_in(p, src.len(), |at, buf| {
                buf.copy_from_slice(&src[at..at + buf.len()])
            })
        };
        Ok(())
    }

    /// Set `count` bytes starting at `off` to `byte` (relaxed atomic stores,
    /// as in [`RawMem::write_from`]).
    pub fn fill(&self, off: usize, count: usize, byte: u8) -> Result<(), ListError> {
        self.check_writable()?;
        let p = self.range(off, count)?;
        // SAFETY: the range lies inside the block (checked by `range`) and is
        // valid for writes (contract of `new`, `writable` checked).
        unsafe { copy_in(p, count, |_, buf| buf.fill(byte)) };
        Ok(())
    }

    // --- The list reader's fast path: positions validated by the caller ---

    /// Read the 8 bytes at `off` as one `u64` (atomic `Acquire` load) without
    /// checking the range.
    ///
    /// # Safety
    ///
    /// `off + 8 <= self.len()` and `self.as_ptr() + off` is 8-aligned.
    #[inline(always)]
    pub(crate) unsafe fn load_u64_unchecked(&self, off: usize) -> u64 {
        debug_assert!(off <= self.len.saturating_sub(8) && self.len >= 8);
        debug_assert!((self.ptr as usize).wrapping_add(off) % 8 == 0);
        // SAFETY: in bounds and aligned per this function's contract; valid
        // per the contract of `new`; only ever accessed through atomics or
        // element-wise atomic copies (see `load_u64`).
        unsafe { AtomicU64::from_ptr(self.ptr.add(off).cast::<u64>()) }.load(Ordering::Acquire)
    }

    /// Read the byte at `off` (atomic `Acquire` load) without checking the
    /// range.
    ///
    /// # Safety
    ///
    /// `off < self.len()`.
    #[inline(always)]
    pub(crate) unsafe fn load_u8_unchecked(&self, off: usize) -> u8 {
        debug_assert!(off < self.len);
        // SAFETY: in bounds per this function's contract, valid per the
        // contract of `new`; `AtomicU8` has alignment 1.
        unsafe { AtomicU8::from_ptr(self.ptr.add(off)) }.load(Ordering::Acquire)
    }

    /// Store `v` at `off` in one atomic store of the given ordering, without
    /// checking the range or whether the block is writable.
    ///
    /// # Safety
    ///
    /// As for [`RawMem::load_u64_unchecked`], and the block is writable
    /// ([`RawMem::is_writable`]).
    #[inline(always)]
    pub(crate) unsafe fn store_u64_unchecked(&self, off: usize, v: u64, order: Ordering) {
        debug_assert!(self.writable);
        debug_assert!(off <= self.len.saturating_sub(8) && self.len >= 8);
        debug_assert!((self.ptr as usize).wrapping_add(off) % 8 == 0);
        // SAFETY: in bounds, aligned and writable per this function's
        // contract; valid per the contract of `new`.
        unsafe { AtomicU64::from_ptr(self.ptr.add(off).cast::<u64>()) }.store(v, order)
    }

    /// Store the byte `v` at `off` (atomic `Release` store) without checking
    /// the range or whether the block is writable.
    ///
    /// # Safety
    ///
    /// `off < self.len()`, and the block is writable.
    #[inline(always)]
    pub(crate) unsafe fn store_u8_unchecked(&self, off: usize, v: u8) {
        debug_assert!(self.writable && off < self.len);
        // SAFETY: in bounds and writable per this function's contract; valid
        // per the contract of `new`; `AtomicU8` has alignment 1.
        unsafe { AtomicU8::from_ptr(self.ptr.add(off)) }.store(v, Ordering::Release)
    }

    /// Copy the `n` bytes at `off` into `buf`, as the `n.div_ceil(8)`
    /// whole words that hold them, each one relaxed atomic load, and return
    /// the first `n` bytes of the copy.
    ///
    /// # Safety
    ///
    /// `buf.len() >= n.div_ceil(8)`, `off + 8 * n.div_ceil(8) <= self.len()`
    /// and `self.as_ptr() + off` is 8-aligned.
    #[inline(always)]
    pub(crate) unsafe fn read_bytes_unchecked<'b>(
        &self,
        off: usize,
        n: usize,
        buf: &'b mut [MaybeUninit<u64>],
    ) -> &'b [u8] {
        let words = n.div_ceil(8);
        debug_assert!(buf.len() >= words);
        debug_assert!(off
            .checked_add(8 * words)
            .is_some_and(|end| end <= self.len));
        debug_assert!((self.ptr as usize).wrapping_add(off) % 8 == 0);
        let src = self.ptr.wrapping_add(off).cast::<u64>();
        for (k, word) in buf[..words].iter_mut().enumerate() {
            // SAFETY: word `k < words` lies inside the range this function's
            // contract makes valid and aligned (valid per `new`).
            word.write(unsafe { AtomicU64::from_ptr(src.add(k)) }.load(Ordering::Relaxed));
        }
        // SAFETY: the first `words` elements of `buf` were written just
        // above, so its first `8 * words >= n` bytes are initialised; `u8`
        // has alignment 1, and the result borrows `buf`.
        unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) }
    }

    /// Store `src` at `off` followed by NULs up to `words` words, each word
    /// one relaxed atomic store, without checking the range.
    ///
    /// # Safety
    ///
    /// `src.len() <= 8 * words`, `off + 8 * words <= self.len()`,
    /// `self.as_ptr() + off` is 8-aligned, and the block is writable.
    #[inline(always)]
    pub(crate) unsafe fn write_padded_words_unchecked(&self, off: usize, src: &[u8], words: usize) {
        debug_assert!(self.writable && src.len() <= 8 * words);
        debug_assert!(off
            .checked_add(8 * words)
            .is_some_and(|end| end <= self.len));
        debug_assert!((self.ptr as usize).wrapping_add(off) % 8 == 0);
        let dst = self.ptr.wrapping_add(off).cast::<u64>();
        let mut chunks = src.chunks_exact(8);
        let mut k = 0;
        for chunk in chunks.by_ref() {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            // SAFETY: word `k < words` (src.len() <= 8 * words) lies inside
            // the writable, aligned range of this function's contract.
            unsafe { AtomicU64::from_ptr(dst.add(k)) }
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
            k += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // SAFETY: as above: `k < words` since `src.len() <= 8 * words`.
            unsafe { AtomicU64::from_ptr(dst.add(k)) }
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
            k += 1;
        }
        while k < words {
            // SAFETY: `k < words`, inside the range as above.
            unsafe { AtomicU64::from_ptr(dst.add(k)) }.store(0, Ordering::Relaxed);
            k += 1;
        }
    }
}

/// Copy `dst.len()` bytes from `src` into `dst`: single bytes up to the
/// first 8-aligned address, then aligned words, then the last bytes, each
/// one relaxed atomic load.
///
/// # Safety
///
/// `src` is valid for reads of `dst.len()` bytes, memory that is only
/// accessed through atomics (by this process).
#[inline]
unsafe fn copy_out(src: *mut u8, dst: &mut [u8]) {
    let n = dst.len();
    let mut i = 0;
    while i < n && (src as usize).wrapping_add(i) % 8 != 0 {
        // SAFETY: `i < n`: inside the readable range; alignment 1.
        dst[i] = unsafe { AtomicU8::from_ptr(src.add(i)) }.load(Ordering::Relaxed);
        i += 1;
    }
    while n - i >= 8 {
        // SAFETY: `i + 8 <= n`: inside the readable range, and the address
        // is 8-aligned (the loop above reached alignment, and `i` moves by 8).
        let w = unsafe { AtomicU64::from_ptr(src.add(i).cast::<u64>()) }.load(Ordering::Relaxed);
        dst[i..i + 8].copy_from_slice(&w.to_ne_bytes());
        i += 8;
    }
    while i < n {
        // SAFETY: `i < n`: inside the readable range; alignment 1.
        dst[i] = unsafe { AtomicU8::from_ptr(src.add(i)) }.load(Ordering::Relaxed);
        i += 1;
    }
}

/// Store `n` bytes at `dst`, as `fill(at, buf)` gives them for the bytes
/// `at..at + buf.len()`: single bytes up to the first 8-aligned address,
/// then aligned words, then the last bytes, each one relaxed atomic store.
///
/// # Safety
///
/// `dst` is valid for writes of `n` bytes, memory that is only accessed
/// through atomics (by this process).
#[inline]
unsafe fn copy_in(dst: *mut u8, n: usize, mut fill: impl FnMut(usize, &mut [u8])) {
    let mut i = 0;
    let mut one = [0u8; 1];
    while i < n && (dst as usize).wrapping_add(i) % 8 != 0 {
        fill(i, &mut one);
        // SAFETY: `i < n`: inside the writable range; alignment 1.
        unsafe { AtomicU8::from_ptr(dst.add(i)) }.store(one[0], Ordering::Relaxed);
        i += 1;
    }
    while n - i >= 8 {
        let mut w = [0u8; 8];
        fill(i, &mut w);
        // SAFETY: `i + 8 <= n`: inside the writable range, 8-aligned (as in
        // `copy_out`).
        unsafe { AtomicU64::from_ptr(dst.add(i).cast::<u64>()) }
            .store(u64::from_ne_bytes(w), Ordering::Relaxed);
        i += 8;
    }
    while i < n {
        fill(i, &mut one);
        // SAFETY: `i < n`: inside the writable range; alignment 1.
        unsafe { AtomicU8::from_ptr(dst.add(i)) }.store(one[0], Ordering::Relaxed);
        i += 1;
    }
}

impl fmt::Debug for RawMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMem")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("writable", &self.writable)
            .field("owned", &self._owned.is_some())
            .finish()
    }
}

/// A heap buffer of `u64` words (so it is 8-aligned), held by raw pointer so
/// that moving its owner never asserts uniqueness over bytes that `RawMem`
/// writes through its own pointer.
struct OwnedWords {
    ptr: *mut u64,
    words: usize,
}

impl OwnedWords {
    fn zeroed(words: usize) -> OwnedWords {
        let boxed: Box<[u64]> = vec![0u64; words].into_boxed_slice();
        let ptr = Box::into_raw(boxed).cast::<u64>();
        OwnedWords { ptr, words }
    }
}

impl Drop for OwnedWords {
    fn drop(&mut self) {
        let slice = ptr::slice_from_raw_parts_mut(self.ptr, self.words);
        // SAFETY: `ptr` and `words` come from `Box::into_raw` of a
        // `Box<[u64]>` with `words` elements in `zeroed`, and this is the
        // only place that turns it back into a box, exactly once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// Fast stores into a writable block for code that writes a whole layout
/// at once (list creation). The block's writability is checked once, when
/// the writer is made; each store still checks its range with one
/// comparison and panics, rather than writing out of bounds, if the caller
/// got an offset wrong (a bug, never a consequence of the data).
pub(crate) struct BlockWriter<'a> {
    mem: &'a RawMem,
}

impl RawMem {
    /// A [`BlockWriter`] for this block, if it is writable.
    pub(crate) fn writer(&self) -> Result<BlockWriter<'_>, ListError> {
        self.check_writable()?;
        Ok(BlockWriter { mem: self })
    }
}

impl BlockWriter<'_> {
    /// Store `v` at `off` (which must be 8-aligned) in one aligned store.
    #[inline]
    pub(crate) fn put_u64(&self, off: usize, v: u64) {
        assert!(
            off <= self.mem.len.saturating_sub(8),
            "store past the end of the block"
        );
        let p = self.mem.ptr.wrapping_add(off);
        assert!(p as usize % 8 == 0, "misaligned word store");
        // SAFETY: the 8 bytes at `p` lie inside the block (asserted above)
        // and the address is aligned for `AtomicU64` (asserted above); the
        // block is writable (checked when the writer was made) and valid for
        // the writer's lifetime per the contract of `RawMem::new`. The
        // memory is only accessed through atomics and raw copies.
        unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }.store(v, Ordering::Relaxed);
    }

    /// Store one byte at `off`.
    #[inline]
    pub(crate) fn put_u8(&self, off: usize, v: u8) {
        assert!(off < self.mem.len, "store past the end of the block");
        // SAFETY: in bounds (asserted), writable and valid as in `put_u64`;
        // `AtomicU8` has alignment 1.
        unsafe { AtomicU8::from_ptr(self.mem.ptr.wrapping_add(off)) }.store(v, Ordering::Relaxed);
    }

    /// Copy `src` to `off`, then NUL-fill up to `off + slot_len`.
    #[inline]
    pub(crate) fn put_padded(&self, off: usize, src: &[u8], slot_len: usize) {
        assert!(src.len() <= slot_len, "value longer than its slot");
        let end = off.checked_add(slot_len).expect("slot range overflows");
        assert!(end <= self.mem.len, "store past the end of the block");
        let p = self.mem.ptr.wrapping_add(off);
        // SAFETY: `[off, off + slot_len)` lies inside the writable block
        // (asserted above), `src` is caller memory outside it, and
        // `src.len() <= slot_len`.
        unsafe {
            ptr::copy_nonoverlapping(src.as_ptr(), p, src.len());
            ptr::write_bytes(p.add(src.len()), 0, slot_len - src.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_block_is_zeroed_and_aligned() {
        let mem = RawMem::zeroed(20);
        assert_eq!(mem.len(), 20);
        assert_eq!(mem.to_vec(), vec![0; 20]);
        assert_eq!(mem.as_ptr() as usize % 8, 0);
        assert!(mem.is_writable());
        let empty = RawMem::zeroed(0);
        assert!(empty.is_empty());
        assert_eq!(empty.to_vec(), Vec::<u8>::new());
        assert_eq!(
            empty.load_u8(0),
            Err(ListError::OutOfBounds {
                offset: 0,
                len: 1,
                size: 0
            })
        );
        assert_eq!(empty.read_into(0, &mut []), Ok(()));
        assert_eq!(empty.write_from(0, &[]), Ok(()));
    }

    #[test]
    fn words_bytes_and_bounds() {
        let mem = RawMem::zeroed(20);
        mem.store_u64(8, u64::from_ne_bytes(*b"abcdefgh")).unwrap();
        assert_eq!(mem.load_u64(8).unwrap(), u64::from_ne_bytes(*b"abcdefgh"));
        assert_eq!(mem.load_u8(9).unwrap(), b'b');
        mem.store_u8(19, 7).unwrap();
        let mut buf = [0u8; 4];
        mem.read_into(16, &mut buf).unwrap();
        assert_eq!(buf, [0, 0, 0, 7]);
        mem.write_from(0, b"xyz").unwrap();
        mem.fill(1, 2, b'-').unwrap();
        assert_eq!(&mem.to_vec()[..3], b"x--");

        // Bounds: the last word would end at 24 > 20.
        assert!(matches!(
            mem.load_u64(16),
            Err(ListError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.store_u64(16, 1),
            Err(ListError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.load_u64(usize::MAX - 3),
            Err(ListError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.load_u8(20),
            Err(ListError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.store_u8(usize::MAX, 1),
            Err(ListError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.read_into(19, &mut [0; 2]),
            Err(ListError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.write_from(usize::MAX, &[1]),
            Err(ListError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.fill(usize::MAX, 2, 0),
            Err(ListError::OutOfBounds { .. })
        ));
        // Alignment.
        assert_eq!(mem.load_u64(4), Err(ListError::Misaligned { offset: 4 }));
        assert_eq!(
            mem.store_u64(1, 0),
            Err(ListError::Misaligned { offset: 1 })
        );
    }

    #[test]
    fn misaligned_base_pointer() {
        let backing = RawMem::zeroed(64);
        // SAFETY: `backing` owns 64 bytes and outlives `mem`; the view covers
        // bytes 1..64 of it.
        let mem = unsafe { RawMem::new(backing.as_ptr().wrapping_add(1), 63) };
        assert_eq!(mem.load_u64(0), Err(ListError::Misaligned { offset: 0 }));
        assert_eq!(mem.load_u64(7), Ok(0)); // address 8 is aligned
        mem.store_u8(0, 5).unwrap();
        assert_eq!(backing.load_u8(1), Ok(5));
        // Whole lists refuse it up front.
        let before = backing.to_vec();
        assert_eq!(
            super::super::write_new(&mem, &[super::super::ItemRef::Int(1)]),
            Err(ListError::Misaligned { offset: 0 })
        );
        assert_eq!(backing.to_vec(), before);
        assert_eq!(
            super::super::ListView::attach(mem).unwrap_err(),
            ListError::Misaligned { offset: 0 }
        );
    }

    #[test]
    fn read_only_block_refuses_writes() {
        let backing = RawMem::from_bytes(&[1, 2, 3, 4, 5, 6, 7, 8]);
        // SAFETY: `backing` owns 8 bytes and outlives `mem`.
        let mem = unsafe { RawMem::new_read_only(backing.as_ptr(), 8) };
        assert!(!mem.is_writable());
        assert_eq!(mem.load_u8(2), Ok(3));
        assert_eq!(mem.store_u8(0, 0), Err(ListError::ReadOnly));
        assert_eq!(mem.store_u64(0, 0), Err(ListError::ReadOnly));
        assert_eq!(mem.write_from(0, &[0]), Err(ListError::ReadOnly));
        assert_eq!(mem.fill(0, 1, 0), Err(ListError::ReadOnly));
        assert_eq!(backing.to_vec(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
