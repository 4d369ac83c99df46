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
