//! The array header at the start of a segment: encoding, and decoding with
//! every field checked against the others and against the segment.

use super::{ArrayError, Descr};
use crate::segment::Segment;

/// The first 8 bytes of every array segment (`\x93` as in NumPy's `.npy`
/// magic, so that no text file starts with it).
pub const MAGIC: [u8; 8] = *b"\x93FSHMARR";
/// The header version this code writes and reads.
pub const VERSION: u16 = 1;
/// Bytes of the fixed part of the header, before the shape.
pub const FIXED_LEN: usize = 48;
/// The data starts at a multiple of this many bytes from the segment's start
/// (which is page-aligned): a cache line, and the widest SIMD register
/// (AVX-512).
pub const DATA_ALIGN: usize = 64;
/// The most dimensions an array may have (NumPy 2's `NPY_MAXDIMS`).
pub const MAX_NDIM: usize = 64;
/// The longest dtype description, in bytes (NumPy's `.npy` reader refuses
/// headers above 10,000 bytes by default; this allows large structured
/// dtypes while bounding what a hostile header can make a reader copy).
pub const MAX_DESCR_LEN: usize = 1 << 20;

/// `flags` bit 0: the data is in Fortran (column-major) order.
pub const FLAG_FORTRAN: u16 = 1;
/// `flags` bit 1: the structured dtype was made with `align=True`
/// (`dtype.isalignedstruct`), which its description alone does not say.
pub const FLAG_ALIGNED_STRUCT: u16 = 2;
const KNOWN_FLAGS: u16 = FLAG_FORTRAN | FLAG_ALIGNED_STRUCT;

/// The memory order of an array's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Row-major: the last index varies fastest (NumPy's default).
    C,
    /// Column-major: the first index varies fastest.
    Fortran,
}

/// What an array segment's header says: the dtype, the shape, the memory
/// order and where the data is. Made with [`ArrayHeader::new`] (to create an
/// array) or read with [`ArrayHeader::read`] (to attach); either way every
/// size is consistent and fits in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayHeader {
    descr: Descr,
    descr_text: String,
    shape: Vec<usize>,
    order: Order,
    aligned_struct: bool,
    itemsize: usize,
    nbytes: usize,
    data_offset: usize,
}

/// `value` as a `usize`, or the error that names `what`.
fn to_usize(value: u64, what: &str) -> Result<usize, ArrayError> {
    usize::try_from(value)
        .ok()
        .filter(|v| *v <= isize::MAX as usize)
        .ok_or_else(|| ArrayError::Corrupt(format!("{what} {value} does not fit in memory")))
}

/// Bytes of items times every non-zero dimension, or `None` if that
/// overflows `isize` (as NumPy checks it: zero dimensions make an empty
/// array, but the others must still have a representable product).
fn checked_nbytes(itemsize: usize, shape: &[usize]) -> Option<usize> {
    let mut total = itemsize;
    let mut empty = false;
    for &d in shape {
        if d == 0 {
            empty = true;
        } else {
            total = total.checked_mul(d).filter(|n| *n <= isize::MAX as usize)?;
        }
    }
    Some(if empty { 0 } else { total })
}

impl ArrayHeader {
    /// The header of a new array of `shape` elements described by `descr`,
    /// in `order`. Fails when the description has no itemsize that fits in
    /// memory, when the shape has more than [`MAX_NDIM`] dimensions, or when
    /// the array would hold more than `isize::MAX` bytes.
    pub fn new(descr: Descr, shape: &[usize], order: Order) -> Result<ArrayHeader, ArrayError> {
        if shape.len() > MAX_NDIM {
            return Err(ArrayError::Shape(format!(
                "maximum supported dimension for an ndarray is currently {MAX_NDIM}, found {}",
                shape.len()
            )));
        }
        let itemsize = descr
            .itemsize()
            .ok_or_else(|| ArrayError::Descr("the item size does not fit in memory".into()))?;
        let too_big = || {
            ArrayError::Shape(
                "array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum \
                 possible size."
                    .into(),
            )
        };
        let nbytes = checked_nbytes(itemsize, shape).ok_or_else(too_big)?;
        let descr_text = descr.to_text();
        if descr_text.len() > MAX_DESCR_LEN {
            return Err(ArrayError::Descr(format!(
                "the description is {} bytes long; at most {MAX_DESCR_LEN} are allowed",
                descr_text.len()
            )));
        }
        let header_len = FIXED_LEN + 8 * shape.len() + descr_text.len();
        let data_offset = header_len.next_multiple_of(DATA_ALIGN);
        data_offset
            .checked_add(nbytes)
            .filter(|n| *n <= isize::MAX as usize)
            .ok_or_else(too_big)?;
        Ok(ArrayHeader {
            descr,
            descr_text,
            shape: shape.to_vec(),
            order,
            aligned_struct: false,
            itemsize,
            nbytes,
            data_offset,
        })
    }

    /// Mark a structured dtype as made with `align=True` (NumPy's
    /// `dtype.isalignedstruct`), so that readers rebuild it so. Fails for a
    /// plain type, which has no such flag.
    pub fn with_aligned_struct(mut self, aligned: bool) -> Result<ArrayHeader, ArrayError> {
        if aligned && !matches!(self.descr, Descr::Struct(_)) {
            return Err(ArrayError::Descr(
                "only a structured dtype can be an aligned struct".into(),
            ));
        }
        self.aligned_struct = aligned;
        Ok(self)
    }

    /// The description of one item.
    pub fn descr(&self) -> &Descr {
        &self.descr
    }

    /// The description as the header stores it: the text of a Python
    /// literal (see [`Descr`]).
    pub fn descr_text(&self) -> &str {
        &self.descr_text
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The memory order of the elements.
    pub fn order(&self) -> Order {
        self.order
    }

    /// Whether the structured dtype was made with `align=True`.
    pub fn aligned_struct(&self) -> bool {
        self.aligned_struct
    }

    /// Bytes per item.
    pub fn itemsize(&self) -> usize {
        self.itemsize
    }

    /// Number of items (the product of the shape).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of data: itemsize times the number of items.
    pub fn nbytes(&self) -> usize {
        self.nbytes
    }

    /// Where the data starts, in bytes from the segment's start: a multiple
    /// of [`DATA_ALIGN`].
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Bytes of the header itself (fixed part, shape and description).
    pub fn header_len(&self) -> usize {
        FIXED_LEN + 8 * self.shape.len() + self.descr_text.len()
    }

    /// The size a segment needs to hold the array: data offset plus data.
    pub fn segment_len(&self) -> usize {
        self.data_offset + self.nbytes
    }

    /// The header's bytes, [`header_len`](ArrayHeader::header_len) of them,
    /// all integers little-endian (see the module's documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len());
        let mut flags = 0;
        if self.order == Order::Fortran {
            flags |= FLAG_FORTRAN;
        }
        if self.aligned_struct {
            flags |= FLAG_ALIGNED_STRUCT;
        }
        // Sizes were bounded by isize::MAX and the lengths by MAX_NDIM and
        // MAX_DESCR_LEN when the header was made: the casts are exact.
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(self.header_len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.data_offset as u64).to_le_bytes());
        out.extend_from_slice(&(self.nbytes as u64).to_le_bytes());
        out.extend_from_slice(&(self.itemsize as u64).to_le_bytes());
        out.extend_from_slice(&(self.shape.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.descr_text.len() as u32).to_le_bytes());
        for &d in &self.shape {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(self.descr_text.as_bytes());
        debug_assert_eq!(out.len(), self.header_len());
        out
    }

    /// Decode a header from `bytes`, a copy of the start of a segment of
    /// `segment_len` bytes (at least the whole header; more is ignored).
    /// Every field is checked: the data must lie inside the segment, the
    /// sizes must agree with the shape and the description, the
    /// description must parse; anything else is an error, never a panic.
    pub fn decode(bytes: &[u8], segment_len: usize) -> Result<ArrayHeader, ArrayError> {
        if bytes.len() < FIXED_LEN || bytes[..8] != MAGIC {
            return Err(ArrayError::NotAnArray { len: segment_len });
        }
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let version = u16_at(8);
        if version != VERSION {
            return Err(ArrayError::UnsupportedVersion(version));
        }
        let flags = u16_at(10);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(ArrayError::Corrupt(format!("unknown flags {flags:#06x}")));
        }
        let header_len = u32_at(12) as usize;
        let data_offset = to_usize(u64_at(16), "data offset")?;
        let nbytes = to_usize(u64_at(24), "data size")?;
        let itemsize = to_usize(u64_at(32), "item size")?;
        let ndim = u16_at(40) as usize;
        if u16_at(42) != 0 {
            return Err(ArrayError::Corrupt(
                "reserved bytes 42-43 are not zero".into(),
            ));
        }
        let descr_len = u32_at(44) as usize;
        if ndim > MAX_NDIM {
            return Err(ArrayError::Corrupt(format!(
                "{ndim} dimensions; at most {MAX_NDIM} are allowed"
            )));
        }
        if descr_len > MAX_DESCR_LEN {
            return Err(ArrayError::Corrupt(format!(
                "a description of {descr_len} bytes; at most {MAX_DESCR_LEN} are allowed"
            )));
        }
        let expected_len = FIXED_LEN + 8 * ndim + descr_len;
        if header_len != expected_len {
            return Err(ArrayError::Corrupt(format!(
                "header length {header_len}, but {ndim} dimensions and a {descr_len}-byte \
                 description make {expected_len}"
            )));
        }
        if header_len > segment_len || header_len > bytes.len() {
            return Err(ArrayError::Corrupt(format!(
                "the {header_len}-byte header does not fit in the {segment_len}-byte segment"
            )));
        }
        if data_offset % DATA_ALIGN != 0 || data_offset < header_len {
            return Err(ArrayError::Corrupt(format!(
                "data offset {data_offset} is not a multiple of {DATA_ALIGN} after the \
                 {header_len}-byte header"
            )));
        }
        match data_offset.checked_add(nbytes) {
            Some(end) if end <= segment_len => {}
            _ => {
                return Err(ArrayError::Corrupt(format!(
                    "{nbytes} bytes of data at offset {data_offset} do not fit in the \
                     {segment_len}-byte segment"
                )))
            }
        }
        let mut shape = Vec::with_capacity(ndim);
        for k in 0..ndim {
            shape.push(to_usize(u64_at(FIXED_LEN + 8 * k), "dimension")?);
        }
        let text_start = FIXED_LEN + 8 * ndim;
        let descr_text = std::str::from_utf8(&bytes[text_start..header_len])
            .map_err(|_| ArrayError::Descr("the description is not UTF-8".into()))?;
        let descr = Descr::parse(descr_text)?;
        if descr.itemsize() != Some(itemsize) {
            return Err(ArrayError::Corrupt(format!(
                "item size {itemsize}, but the description {descr_text} has items of {}",
                descr
                    .itemsize()
                    .map_or_else(|| "more than isize::MAX".to_owned(), |n| n.to_string())
            )));
        }
        if checked_nbytes(itemsize, &shape) != Some(nbytes) {
            return Err(ArrayError::Corrupt(format!(
                "data size {nbytes}, but {shape:?} items of {itemsize} bytes make {}",
                checked_nbytes(itemsize, &shape)
                    .map_or_else(|| "more than isize::MAX".to_owned(), |n| n.to_string())
            )));
        }
        let aligned_struct = flags & FLAG_ALIGNED_STRUCT != 0;
        if aligned_struct && !matches!(descr, Descr::Struct(_)) {
            return Err(ArrayError::Corrupt(
                "the aligned-struct flag is set for a plain type".into(),
            ));
        }
        Ok(ArrayHeader {
            // Kept as read: the exact text the writer chose (quotes, spaces).
            descr_text: descr_text.to_owned(),
            descr,
            shape,
            order: if flags & FLAG_FORTRAN != 0 {
                Order::Fortran
            } else {
                Order::C
            },
            aligned_struct,
            itemsize,
            nbytes,
            data_offset,
        })
    }

    /// Read and check the header of the array in `segment`. The header is
    /// copied out of shared memory (the fixed part, then the rest, at most
    /// [`MAX_DESCR_LEN`] and the segment's size) and checked as
    /// [`decode`](ArrayHeader::decode) does, so a writer changing it
    /// meanwhile can only make it wrong, never make the result reach outside
    /// the segment.
    pub fn read(segment: &Segment) -> Result<ArrayHeader, ArrayError> {
        let len = segment.len();
        if len < FIXED_LEN {
            return Err(ArrayError::NotAnArray { len });
        }
        let mut fixed = [0u8; FIXED_LEN];
        segment.read_at(0, &mut fixed);
        if fixed[..8] != MAGIC {
            return Err(ArrayError::NotAnArray { len });
        }
        // Pairs with the fence in `write`: on weakly ordered CPUs, the rest
        // of the header is read after the magic that says it is complete.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let ndim = u16::from_le_bytes([fixed[40], fixed[41]]) as usize;
        let descr_len = u32::from_le_bytes(fixed[44..48].try_into().unwrap()) as usize;
        // Bounded before anything is allocated: a forged length costs at
        // most what the segment holds, and never more than the limits.
        let wanted = FIXED_LEN + 8 * ndim.min(MAX_NDIM) + descr_len.min(MAX_DESCR_LEN);
        let mut bytes = fixed.to_vec();
        bytes.resize(wanted.min(len), 0);
        segment.read_at(FIXED_LEN, &mut bytes[FIXED_LEN..]);
        // The fixed part as first read, so both copies agree on the lengths.
        bytes[..FIXED_LEN].copy_from_slice(&fixed);
        ArrayHeader::decode(&bytes, len)
    }

    /// Write this header at the start of `segment`: the body first and the
    /// magic bytes last, so that a process attaching meanwhile sees either
    /// no array yet or the whole header. Fails if the segment is too small
    /// for the array or mapped read-only.
    pub fn write(&self, segment: &Segment) -> Result<(), ArrayError> {
        if !segment.writable() {
            return Err(ArrayError::ReadOnly);
        }
        if segment.len() < self.segment_len() {
            return Err(ArrayError::Shape(format!(
                "the array needs a segment of {} bytes; this one has {}",
                self.segment_len(),
                segment.len()
            )));
        }
        let bytes = self.encode();
        segment.write_at(8, &bytes[8..]);
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        segment.write_at(0, &bytes[..8]);
        Ok(())
    }
}
