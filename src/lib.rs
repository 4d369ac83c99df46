//! ferroshm: named shared-memory segments and `ShareableList`s that are
//! byte-compatible with Python's `multiprocessing.shared_memory`.
//!
//! The crate has a Rust core that knows nothing of Python ([`segment`] and
//! [`list`]) and, behind the `python` feature, the PyO3 bindings that the
//! `ferroshm` Python package is built from. Rust programs use the core
//! directly (`cargo add ferroshm`, default features, no Python needed):
//!
//! * [`SharedList`] creates or opens a `ShareableList` by name and reads and
//!   writes its items ([`Value`] out, [`ItemRef`] in). A Python process
//!   attaches to the same list with `ShareableList(name=...)`, from
//!   ferroshm or from the standard library, and sees every write.
//! * [`Segment`] creates, opens, maps and unlinks a raw named segment, the
//!   counterpart of Python's `SharedMemory` (its names keep the leading `/`,
//!   like Python's private `SharedMemory._name`).
//! * [`list::ListView`] and [`list::RawMem`] read and write the list layout
//!   over any block of memory.
//! * [`array::SharedArray`] opens or creates the NumPy arrays that Python's
//!   `ferroshm.share`/`attach` make (a header with dtype, shape and order at
//!   the start of the segment) and reads and writes their elements.
//!
//! # Example
//!
//! ```
//! use ferroshm::{ItemRef, SharedList, Value};
//!
//! # fn main() -> Result<(), ferroshm::SharedListError> {
//! // Names are given as Python's `ShareableList.shm.name` reports them.
//! let name = format!("ferroshm_doc_{}", std::process::id());
//! let list = SharedList::create(&name, &[ItemRef::Int(42), ItemRef::Str("hello"), ItemRef::None])?;
//!
//! // Another process (Rust here; in Python: `ShareableList(name=name)`)
//! // attaches by name and sees the same items.
//! let other = SharedList::open(&name)?;
//! assert_eq!(other.len(), 3);
//! assert_eq!(other.get(1)?, Value::Str("hello".into()));
//! assert_eq!(other.format()?, "q8sxxxxxx?x");
//!
//! // Items can change value and type; str and bytes must fit their slot.
//! other.set(0, ItemRef::Float(1.5))?;
//! assert_eq!(list.get(0)?, Value::Float(1.5));
//! assert!(other.set(1, ItemRef::Str("far too long for its slot")).is_err());
//!
//! // Dropping a handle unmaps it; unlink removes the segment for everyone.
//! list.unlink()?;
//! # Ok(())
//! # }
//! ```

pub mod array;
pub mod list;
pub mod segment;

#[cfg(feature = "python")]
mod python;

pub use list::{ItemRef, ListError, SharedList, SharedListError, Value};
pub use segment::{Segment, SegmentError};
