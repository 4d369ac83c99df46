//! [`SharedArray`]: a NumPy array in a named segment, for Rust programs, and
//! [`ArrayRef`], a typed view of its elements.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::{ArrayError, ArrayHeader, ByteOrder, Descr, Order, TypeStr};
use crate::segment::{self, os_name, OpenOptions, Segment};

mod sealed {
    pub trait Sealed {}
}

/// The element types of a typed view ([`SharedArray::typed`]): fixed-size
/// numbers whose every bit pattern is a valid value, so that whatever
/// another process wrote can be read as one. NumPy's `bool`, datetimes,
/// complex, text and structured dtypes are read as bytes
/// ([`SharedArray::read_bytes`]) instead.
pub trait Element: Copy + Send + Sync + 'static + sealed::Sealed {
    /// NumPy's kind character: `i`, `u` or `f`.
    const KIND: char;

    /// The type string of this type in the machine's byte order, as NumPy's
    /// `np.dtype(...).str` gives it (`<f8` on x86-64 for `f64`).
    fn typestr() -> TypeStr {
        let size = std::mem::size_of::<Self>();
        TypeStr {
            byteorder: if size == 1 {
                ByteOrder::NotApplicable
            } else {
                ByteOrder::NATIVE
            },
            kind: Self::KIND,
            count: size,
            unit: None,
        }
    }
}

macro_rules! element {
    ($($t:ty => $kind:literal),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const KIND: char = $kind;
        }
    )*};
}

element!(
    i8 => 'i', i16 => 'i', i32 => 'i', i64 => 'i',
    u8 => 'u', u16 => 'u', u32 => 'u', u64 => 'u',
    f32 => 'f', f64 => 'f',
);

/// A NumPy array in a named shared-memory segment: the header that
/// describes it and the segment that holds it, byte-compatible with Python's
/// `ferroshm.share`, `ferroshm.empty` and `ferroshm.attach`.
///
/// Names are given as Python's `array.name` reports them, without the
/// leading `/`. The memory may be written by other processes at any time:
/// it is only read and written through raw copies and element-wise volatile
/// accesses ([`ArrayRef`]), never through `&[T]`, except with the
/// documented `unsafe` [`ArrayRef::as_slice`].
///
/// Dropping a `SharedArray` unmaps it (once the last [`Arc`] of its segment
/// goes); the segment stays until someone calls
/// [`unlink`](SharedArray::unlink).
pub struct SharedArray {
    header: ArrayHeader,
    segment: Arc<Segment>,
}

impl SharedArray {
    /// Create the segment `name` (failing with `EEXIST` if it is taken),
    /// sized for `header`, and write the header; the data is zero-filled.
    /// The segment's pages are reserved, as ferroshm's Python side does.
    /// Nothing tracks the name: unlink it when it is no longer needed.
    pub fn create(name: &str, header: ArrayHeader) -> Result<SharedArray, ArrayError> {
        let os_name = os_name(name);
        let segment = Segment::create(&os_name, header.segment_len())
            .map_err(|e| ArrayError::segment(&os_name, e))?;
        SharedArray::write_new(Arc::new(segment), header).inspect_err(|_| {
            // Just created: nobody relies on it yet. The array error is the
            // one to report.
            let _ = segment::unlink(&os_name);
        })
    }

    /// Create a C-ordered array of `T` (in the machine's byte order) of
    /// `shape`, zero-filled, under `name`: [`create`](SharedArray::create)
    /// with the header NumPy's `np.zeros(shape, dtype=T)` would get.
    pub fn create_of<T: Element>(name: &str, shape: &[usize]) -> Result<SharedArray, ArrayError> {
        let header = ArrayHeader::new(Descr::Type(T::typestr()), shape, Order::C)?;
        SharedArray::create(name, header)
    }

    /// Attach to the existing array `name` for reading and writing, as
    /// Python's `ferroshm.attach(name)` does. `ENOENT` (see
    /// [`ArrayError::raw_os_error`]) when there is no such segment; an
    /// error, never a panic, when its header is not a valid array.
    pub fn open(name: &str) -> Result<SharedArray, ArrayError> {
        SharedArray::open_with(name, &OpenOptions::attach())
    }

    /// Attach to the existing array `name` read-only (`O_RDONLY`,
    /// `PROT_READ`), as `ferroshm.attach(name, readonly=True)` does: writes
    /// fail with [`ArrayError::ReadOnly`].
    pub fn open_read_only(name: &str) -> Result<SharedArray, ArrayError> {
        let opts = OpenOptions {
            flags: libc::O_RDONLY,
            mode: 0,
            size: None,
            reserve: false,
        };
        SharedArray::open_with(name, &opts)
    }

    fn open_with(name: &str, opts: &OpenOptions) -> Result<SharedArray, ArrayError> {
        let os_name = os_name(name);
        let segment =
            Segment::open_with(&os_name, opts).map_err(|e| ArrayError::segment(&os_name, e))?;
        SharedArray::attach(Arc::new(segment))
    }

    /// Read the array header of `segment`, an open segment that others (a
    /// Python `SharedMemory`) may hold too.
    pub fn attach(segment: Arc<Segment>) -> Result<SharedArray, ArrayError> {
        let header = ArrayHeader::read(&segment)?;
        Ok(SharedArray { header, segment })
    }

    /// Write `header` into `segment` (a new segment, at least
    /// [`ArrayHeader::segment_len`] bytes) and hold it as an array.
    pub fn write_new(
        segment: Arc<Segment>,
        header: ArrayHeader,
    ) -> Result<SharedArray, ArrayError> {
        header.write(&segment)?;
        Ok(SharedArray { header, segment })
    }

    /// The segment's name without the leading `/`, as Python's `array.name`
    /// gives it: pass it to another process.
    pub fn name(&self) -> &str {
        segment::reported_name(self.segment.name())
    }

    /// The header: dtype description, shape, order, sizes.
    pub fn header(&self) -> &ArrayHeader {
        &self.header
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        self.header.shape()
    }

    /// The segment the array lives in.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// Whether the array may be written (the segment is mapped read-write).
    pub fn writable(&self) -> bool {
        self.segment.writable()
    }

    /// Start of the data: [`ArrayHeader::nbytes`] bytes, aligned to
    /// [`DATA_ALIGN`](super::DATA_ALIGN), valid while `self` lives. Other
    /// processes may change the bytes at any time.
    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: the header was checked (or written) against this segment:
        // `data_offset + nbytes <= segment.len()`, so the offset stays
        // inside the mapping.
        unsafe { self.segment.as_ptr().add(self.header.data_offset()) }
    }

    fn data_range(&self, offset: usize, len: usize) -> Result<usize, ArrayError> {
        let nbytes = self.header.nbytes();
        match offset.checked_add(len) {
            Some(end) if end <= nbytes => Ok(self.header.data_offset() + offset),
            _ => Err(ArrayError::OutOfBounds {
                index: offset.saturating_add(len),
                len: nbytes,
            }),
        }
    }

    /// Copy `dst.len()` bytes of the data, from byte `offset` of it.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), ArrayError> {
        let at = self.data_range(offset, dst.len())?;
        self.segment.read_at(at, dst);
        Ok(())
    }

    /// Copy `src` into the data at byte `offset` of it.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), ArrayError> {
        if !self.writable() {
            return Err(ArrayError::ReadOnly);
        }
        let at = self.data_range(offset, src.len())?;
        self.segment.write_at(at, src);
        Ok(())
    }

    /// A typed view of the elements, when they are `T` in the machine's byte
    /// order (`<f8` for `f64` on x86-64); [`ArrayError::TypeMismatch`]
    /// otherwise.
    pub fn typed<T: Element>(&self) -> Result<ArrayRef<'_, T>, ArrayError> {
        let wanted = T::typestr();
        if self.header.descr().as_type() != Some(&wanted) {
            return Err(ArrayError::TypeMismatch {
                wanted: wanted.to_string(),
                found: self.header.descr_text().to_owned(),
            });
        }
        Ok(ArrayRef {
            array: self,
            len: self.header.len(),
            _element: PhantomData,
        })
    }

    /// Remove the segment's name from the system (`shm_unlink`), as Python's
    /// `array.unlink()` does. Mappings stay valid here and elsewhere.
    pub fn unlink(&self) -> Result<(), ArrayError> {
        self.segment
            .unlink()
            .map_err(|e| ArrayError::segment(self.segment.name(), e))
    }
}

impl fmt::Debug for SharedArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("name", &self.name())
            .field("descr", &self.header.descr_text())
            .field("shape", &self.shape())
            .field("order", &self.header.order())
            .finish()
    }
}

/// The elements of a [`SharedArray`] as `T`, by index. Indices are either
/// flat, in memory order ([`get`](ArrayRef::get), [`set`](ArrayRef::set)),
/// or one per dimension ([`get_at`](ArrayRef::get_at),
/// [`set_at`](ArrayRef::set_at)), which follow the array's
/// [`Order`].
///
/// Each element is read and written as one aligned volatile access: another
/// process may write the array at any time, and a view never assumes the
/// memory keeps its value between two reads (no `&[T]` of it exists).
pub struct ArrayRef<'a, T: Element> {
    array: &'a SharedArray,
    len: usize,
    _element: PhantomData<T>,
}

impl<'a, T: Element> ArrayRef<'a, T> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The array's shape.
    pub fn shape(&self) -> &'a [usize] {
        self.array.shape()
    }

    /// Start of the elements. Valid for [`len`](ArrayRef::len) elements
    /// while the array lives; aligned for `T`.
    pub fn as_ptr(&self) -> *mut T {
        self.array.data_ptr().cast::<T>()
    }

    fn check(&self, index: usize) -> Result<(), ArrayError> {
        if index < self.len {
            Ok(())
        } else {
            Err(ArrayError::OutOfBounds {
                index,
                len: self.len,
            })
        }
    }

    /// Element `index` in memory order (C or Fortran, see
    /// [`ArrayHeader::order`]).
    pub fn get(&self, index: usize) -> Result<T, ArrayError> {
        self.check(index)?;
        // SAFETY: `index < len`, and the data holds `len` elements of `T`
        // inside the mapping (the header was checked against the segment
        // and its description is `T`'s); the data offset is a multiple of 64
        // in a page-aligned mapping and `size_of::<T>()` divides 64, so the
        // pointer is aligned. Every bit pattern is a valid `T`. Volatile:
        // other processes may write the element at any time.
        Ok(unsafe { self.as_ptr().add(index).read_volatile() })
    }

    /// Store `value` at `index` in memory order. [`ArrayError::ReadOnly`] if
    /// the segment is mapped read-only.
    pub fn set(&self, index: usize, value: T) -> Result<(), ArrayError> {
        self.check(index)?;
        if !self.array.writable() {
            return Err(ArrayError::ReadOnly);
        }
        // SAFETY: in bounds and aligned as in `get`, and the mapping is
        // writable (checked above).
        unsafe { self.as_ptr().add(index).write_volatile(value) };
        Ok(())
    }

    /// The flat index (in memory order) of the element at `index`, one
    /// index per dimension.
    pub fn flat_index(&self, index: &[usize]) -> Result<usize, ArrayError> {
        let shape = self.shape();
        if index.len() != shape.len() {
            return Err(ArrayError::Shape(format!(
                "{} indices for an array of {} dimensions",
                index.len(),
                shape.len()
            )));
        }
        let mut flat = 0;
        let mut stride = 1;
        let mut step = |i: usize, dim: usize| -> Result<(), ArrayError> {
            if i >= dim {
                return Err(ArrayError::OutOfBounds { index: i, len: dim });
            }
            // No overflow: the result stays below `len`.
            flat += i * stride;
            stride *= dim;
            Ok(())
        };
        match self.array.header().order() {
            Order::C => {
                for (&i, &d) in index.iter().zip(shape).rev() {
                    step(i, d)?;
                }
            }
            Order::Fortran => {
                for (&i, &d) in index.iter().zip(shape) {
                    step(i, d)?;
                }
            }
        }
        Ok(flat)
    }

    /// The element at `index`, one index per dimension (`a[i, j]`).
    pub fn get_at(&self, index: &[usize]) -> Result<T, ArrayError> {
        self.get(self.flat_index(index)?)
    }

    /// Store `value` at `index`, one index per dimension (`a[i, j] = v`).
    pub fn set_at(&self, index: &[usize], value: T) -> Result<(), ArrayError> {
        self.set(self.flat_index(index)?, value)
    }

    /// Copy the elements into `dst` (which must hold exactly
    /// [`len`](ArrayRef::len) of them), in memory order.
    pub fn copy_to(&self, dst: &mut [T]) -> Result<(), ArrayError> {
        if dst.len() != self.len {
            return Err(ArrayError::Shape(format!(
                "a destination of {} elements for {} elements",
                dst.len(),
                self.len
            )));
        }
        // SAFETY: the source is the `len` elements of the array inside the
        // mapping (see `get`); `dst` is caller memory of the same length,
        // outside the mapping. A copy tolerates concurrent writers: it
        // reads each byte once, and every bit pattern is a valid `T`.
        unsafe { std::ptr::copy_nonoverlapping(self.as_ptr(), dst.as_mut_ptr(), self.len) };
        Ok(())
    }

    /// The elements, copied, in memory order.
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        // SAFETY: as in `copy_to`, into the vector's spare capacity of `len`
        // elements, which the copy initialises entirely before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr(), out.as_mut_ptr(), self.len);
            out.set_len(self.len);
        }
        out
    }

    /// Copy `src` (exactly [`len`](ArrayRef::len) elements) into the array,
    /// in memory order.
    pub fn copy_from(&self, src: &[T]) -> Result<(), ArrayError> {
        if src.len() != self.len {
            return Err(ArrayError::Shape(format!(
                "{} elements for an array of {}",
                src.len(),
                self.len
            )));
        }
        if !self.array.writable() {
            return Err(ArrayError::ReadOnly);
        }
        // SAFETY: the destination is the array's `len` elements inside a
        // writable mapping (see `get`); `src` is caller memory outside it.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.as_ptr(), self.len) };
        Ok(())
    }

    /// The elements as a slice, without a copy.
    ///
    /// # Safety
    ///
    /// While the slice lives, no process (this one included, through
    /// NumPy, another `ArrayRef` or a `SharedMemory`) may write the array,
    /// and no process may shrink the segment (`ftruncate`): Rust assumes the
    /// memory behind a `&[T]` does not change. Use it for read-only phases
    /// that the processes coordinate (a barrier, a lock, the writer having
    /// exited); otherwise use [`get`](ArrayRef::get) or
    /// [`to_vec`](ArrayRef::to_vec).
    pub unsafe fn as_slice(&self) -> &'a [T] {
        // SAFETY: the pointer is aligned and valid for `len` elements for as
        // long as the array (borrowed for 'a) keeps the mapping; the caller
        // guarantees that nothing writes the memory meanwhile.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }
}

impl<T: Element + fmt::Debug> fmt::Debug for ArrayRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayRef")
            .field("array", &self.array)
            .field("len", &self.len)
            .finish()
    }
}
