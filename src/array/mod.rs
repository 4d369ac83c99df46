//! NumPy arrays in named segments: the header that describes an array
//! (dtype, shape, order) at the start of its segment, and typed access to
//! its elements, without any Python types.
//!
//! This is the layout that Python's `ferroshm.share`, `ferroshm.empty`,
//! `ferroshm.zeros` and `ferroshm.attach` use: a Rust program reads and
//! writes the same arrays with [`SharedArray`].
//!
//! # The header, byte for byte
//!
//! A segment holding an array starts with this header; every integer is
//! little-endian, whatever the machine:
//!
//! | offset | size | field | value |
//! |---:|---:|---|---|
//! | 0 | 8 | magic | [`MAGIC`]: `\x93FSHMARR` |
//! | 8 | 2 | version | [`VERSION`] (1) |
//! | 10 | 2 | flags | bit 0 [`FLAG_FORTRAN`]: data in Fortran order (else C); bit 1 [`FLAG_ALIGNED_STRUCT`]: the structured dtype was made with `align=True`; other bits 0 |
//! | 12 | 4 | header length | `48 + 8 * ndim + descr length` |
//! | 16 | 8 | data offset | where the data starts: a multiple of [`DATA_ALIGN`] (64), at or after the header's end |
//! | 24 | 8 | nbytes | bytes of data: itemsize times the number of items |
//! | 32 | 8 | itemsize | bytes per item |
//! | 40 | 2 | ndim | number of dimensions, at most [`MAX_NDIM`] (64) |
//! | 42 | 2 | reserved | 0 |
//! | 44 | 4 | descr length | bytes of the description, at most [`MAX_DESCR_LEN`] |
//! | 48 | 8 × ndim | shape | one unsigned 64-bit count per dimension |
//! | 48 + 8 × ndim | descr length | description | the dtype as NumPy's `.npy` format describes it: the UTF-8 text of a Python literal, `'<f8'` or `[('x', '<f4'), ...]` (see [`Descr`]) |
//!
//! The data (contiguous, C or Fortran order, no strides stored) follows at
//! the data offset; the segment may be larger than `data offset + nbytes`
//! (pages). A program with only Python's standard library and NumPy reads it
//! with `struct.unpack_from("<8sHHIQQQHHI", buf)`, `ast.literal_eval` of the
//! description, `numpy.lib.format.descr_to_dtype` and
//! `np.ndarray(shape, dtype, buffer=buf, offset=data_offset, order=...)`.
//!
//! The writer writes the whole header and then the magic, so a reader that
//! finds the magic finds the rest. [`ArrayHeader::read`] checks every field
//! against the others and against the segment's size (and parses the
//! description with a bounded parser), so a corrupt or hostile header is an
//! [`ArrayError`], never a panic or a view outside the segment.
//!
//! # Example
//!
//! ```
//! use ferroshm::array::SharedArray;
//!
//! # fn main() -> Result<(), ferroshm::array::ArrayError> {
//! // Python: a = ferroshm.zeros((2, 3), dtype="f8", name=name)
//! let name = format!("ferroshm_doc_array_{}", std::process::id());
//! let made = SharedArray::create_of::<f64>(&name, &[2, 3])?;
//!
//! // Another process (Python: b = ferroshm.attach(name)) attaches by name,
//! // reads the header and gets a typed view of the same memory.
//! let other = SharedArray::open(&name)?;
//! assert_eq!(other.shape(), &[2, 3]);
//! assert_eq!(other.header().descr_text(), "'<f8'");
//! let b = other.typed::<f64>()?;
//! b.set_at(&[1, 2], 42.0)?;                 // b[1, 2] = 42.0
//! assert_eq!(made.typed::<f64>()?.get(5)?, 42.0);
//! assert!(other.typed::<i64>().is_err());   // the items are f64
//!
//! made.unlink()?;                           // array.unlink()
//! # Ok(())
//! # }
//! ```

mod descr;
mod error;
mod header;
mod shared;

#[cfg(test)]
mod tests;

pub use descr::{ByteOrder, Descr, Field, TypeStr, MAX_DEPTH, MAX_FIELD_NDIM};
pub use error::ArrayError;
pub use header::{
    ArrayHeader, Order, DATA_ALIGN, FIXED_LEN, FLAG_ALIGNED_STRUCT, FLAG_FORTRAN, MAGIC,
    MAX_DESCR_LEN, MAX_NDIM, VERSION,
};
pub use shared::{ArrayRef, Element, SharedArray};
