//! The values a `ShareableList` holds: owned for reading, borrowed for
//! writing.

/// An item read from a list.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A Python `int` (format `"q"`).
    Int(i64),
    /// A Python `float` (format `"d"`).
    Float(f64),
    /// A Python `bool` (format `"xxxxxxx?"`).
    Bool(bool),
    /// Python `None` (format `"xxxxxx?x"`, code 3).
    None,
    /// A Python `str`: the slot's bytes with trailing NULs stripped (as
    /// CPython does, bug B3), decoded as UTF-8.
    Str(String),
    /// Python `bytes`: the slot's bytes with trailing NULs stripped.
    Bytes(Vec<u8>),
}

impl Value {
    /// The same item, borrowed for writing (e.g. to copy it into another
    /// list).
    pub fn as_item(&self) -> ItemRef<'_> {
        match self {
            Value::Int(v) => ItemRef::Int(*v),
            Value::Float(v) => ItemRef::Float(*v),
            Value::Bool(v) => ItemRef::Bool(*v),
            Value::None => ItemRef::None,
            Value::Str(s) => ItemRef::Str(s),
            Value::Bytes(b) => ItemRef::Bytes(b),
        }
    }
}

impl From<ItemRef<'_>> for Value {
    /// The owned value of an item (for reading back what was written).
    fn from(item: ItemRef<'_>) -> Value {
        match item {
            ItemRef::Int(v) => Value::Int(v),
            ItemRef::Float(v) => Value::Float(v),
            ItemRef::Bool(v) => Value::Bool(v),
            ItemRef::None => Value::None,
            ItemRef::Str(s) => Value::Str(s.to_owned()),
            ItemRef::Bytes(b) => Value::Bytes(b.to_vec()),
        }
    }
}

/// An item to write into a list. The bindings convert Python objects (and
/// their subclasses, fixing B13) to this; a `str` that cannot be encoded as
/// UTF-8 (lone surrogates) never gets here.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ItemRef<'a> {
    /// Stored with format `"q"`, code 0.
    Int(i64),
    /// Stored with format `"d"`, code 0.
    Float(f64),
    /// Stored with format `"xxxxxxx?"`, code 0.
    Bool(bool),
    /// Stored with format `"xxxxxx?x"`, code 3.
    None,
    /// Stored as its UTF-8 bytes with format `"%ds"`, code 1.
    Str(&'a str),
    /// Stored as is with format `"%ds"`, code 2.
    Bytes(&'a [u8]),
}

/// An item as [`ListView::get_raw_with`](super::ListView::get_raw_with)
/// reads it: an [`ItemRef`] whose str is still the bytes stored in the slot
/// (trailing NULs stripped), not yet checked to be UTF-8. It is for callers
/// that decode text themselves (the Python bindings let Python's own UTF-8
/// decoder check it, which raises the standard library's exact
/// `UnicodeDecodeError`); [`RawItem::checked`] turns it into an
/// [`ItemRef`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RawItem<'a> {
    /// An int (format `"q"`).
    Int(i64),
    /// A float (format `"d"`).
    Float(f64),
    /// A bool (format `"xxxxxxx?"`).
    Bool(bool),
    /// None (code 3).
    None,
    /// A str item's bytes (code 1), which may not be valid UTF-8: decode
    /// them, and treat invalid UTF-8 as [`ListError::Utf8`](super::ListError::Utf8).
    Str(&'a [u8]),
    /// A bytes item (code 2).
    Bytes(&'a [u8]),
}

impl<'a> RawItem<'a> {
    /// The same item with its str checked to be UTF-8; `Err` gives the
    /// bytes and the decoding error of a str that is not.
    pub fn checked(self) -> Result<ItemRef<'a>, (&'a [u8], std::str::Utf8Error)> {
        Ok(match self {
            RawItem::Int(v) => ItemRef::Int(v),
            RawItem::Float(v) => ItemRef::Float(v),
            RawItem::Bool(v) => ItemRef::Bool(v),
            RawItem::None => ItemRef::None,
            RawItem::Str(b) => ItemRef::Str(std::str::from_utf8(b).map_err(|e| (b, e))?),
            RawItem::Bytes(b) => ItemRef::Bytes(b),
        })
    }
}
