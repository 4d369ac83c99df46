//! The closed vocabulary of per-item `struct` formats and back-transform
//! codes that CPython's `ShareableList` reads and writes.
//!
//! A stock reader passes the stored format straight to `struct.unpack_from`
//! and looks the code up in a four-entry table, so writers must emit exactly
//! these (reference §5, pitfall 2), and readers here accept only these.

use super::ItemRef;

/// Back-transform code 0: identity (int, float, bool).
pub(crate) const CODE_IDENTITY: u8 = 0;
/// Back-transform code 1: `v.rstrip(b'\x00').decode('utf8')` (str).
pub(crate) const CODE_STR: u8 = 1;
/// Back-transform code 2: `v.rstrip(b'\x00')` (bytes).
pub(crate) const CODE_BYTES: u8 = 2;
/// Back-transform code 3: `None`, whatever the slot holds.
pub(crate) const CODE_NONE: u8 = 3;

/// Largest slot length a `"%ds"` format can name in 8 characters.
pub(crate) const MAX_SLOT_LEN: usize = 9_999_999;

/// One item's packing format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `"q"`: native `int64`.
    Int,
    /// `"d"`: native `double`.
    Float,
    /// `"xxxxxxx?"`: 7 pad bytes, then the bool byte.
    Bool,
    /// `"xxxxxx?x"`: 6 pad bytes, a bool byte, a pad byte.
    None,
    /// `"%ds"`: that many bytes (a `str` or `bytes` item).
    Bytes(usize),
}

impl Format {
    /// Number of bytes `struct` reads or writes for this format.
    pub(crate) fn size(self) -> usize {
        match self {
            Format::Bytes(n) => n,
            _ => 8,
        }
    }

    /// The format CPython gives `item` when it sits in a slot of `slot_len`
    /// bytes (`"%ds" % slot_len` for str/bytes).
    pub(crate) fn for_item(item: &ItemRef<'_>, slot_len: usize) -> Format {
        match item {
            ItemRef::Int(_) => Format::Int,
            ItemRef::Float(_) => Format::Float,
            ItemRef::Bool(_) => Format::Bool,
            ItemRef::None => Format::None,
            ItemRef::Str(_) | ItemRef::Bytes(_) => Format::Bytes(slot_len),
        }
    }

    /// The 8 stored bytes: ASCII, NUL-padded. `None` for a `"%ds"` whose
    /// number needs more than 7 digits (the caller reports it).
    pub(crate) fn encode(self) -> Option<[u8; 8]> {
        let mut out = [0u8; 8];
        match self {
            Format::Int => return Some(*b"q\0\0\0\0\0\0\0"),
            Format::Float => return Some(*b"d\0\0\0\0\0\0\0"),
            Format::Bool => return Some(*b"xxxxxxx?"),
            Format::None => return Some(*b"xxxxxx?x"),
            Format::Bytes(8) => return Some(*b"8s\0\0\0\0\0\0"),
            Format::Bytes(n) => {
                if n > MAX_SLOT_LEN {
                    return None;
                }
                let mut digits = [0u8; 7];
                let mut count = 0;
                let mut rest = n;
                loop {
                    digits[count] = b'0' + (rest % 10) as u8;
                    count += 1;
                    rest /= 10;
                    if rest == 0 {
                        break;
                    }
                }
                for (dst, src) in out.iter_mut().zip(digits[..count].iter().rev()) {
                    *dst = *src;
                }
                out[count] = b's';
            }
        }
        Some(out)
    }

    /// Parse 8 stored bytes. Accepts exactly the formats CPython writes
    /// (`"q"`, `"d"`, `"xxxxxxx?"`, `"xxxxxx?x"`, `"<digits>s"`), followed by
    /// nothing but NUL padding; `None` for anything else.
    #[inline(always)]
    pub(crate) fn parse(raw: &[u8; 8]) -> Option<Format> {
        // The formats CPython writes most, recognised as one word.
        const INT: u64 = u64::from_ne_bytes(*b"q\0\0\0\0\0\0\0");
        const FLOAT: u64 = u64::from_ne_bytes(*b"d\0\0\0\0\0\0\0");
        const BOOL: u64 = u64::from_ne_bytes(*b"xxxxxxx?");
        const NONE: u64 = u64::from_ne_bytes(*b"xxxxxx?x");
        const BYTES8: u64 = u64::from_ne_bytes(*b"8s\0\0\0\0\0\0");
        match u64::from_ne_bytes(*raw) {
            INT => return Some(Format::Int),
            FLOAT => return Some(Format::Float),
            BOOL => return Some(Format::Bool),
            NONE => return Some(Format::None),
            BYTES8 => return Some(Format::Bytes(8)),
            _ => {}
        }
        Format::parse_spelled(raw)
    }

    /// [`Format::parse`] for any spelling but the most common ones.
    #[inline(never)]
    fn parse_spelled(raw: &[u8; 8]) -> Option<Format> {
        let text = trim_nuls(raw);
        if text.len() < raw.len() && raw[text.len()..].iter().any(|&b| b != 0) {
            return None; // an embedded NUL: struct would reject it too
        }
        match text {
            b"q" => Some(Format::Int),
            b"d" => Some(Format::Float),
            b"xxxxxxx?" => Some(Format::Bool),
            b"xxxxxx?x" => Some(Format::None),
            [digits @ .., b's'] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
                // At most 7 digits, so this cannot overflow.
                let n = digits
                    .iter()
                    .fold(0usize, |acc, d| acc * 10 + usize::from(d - b'0'));
                Some(Format::Bytes(n))
            }
            _ => None,
        }
    }

    /// The code CPython stores next to an item with this format.
    pub(crate) fn code_for(item: &ItemRef<'_>) -> u8 {
        match item {
            ItemRef::Int(_) | ItemRef::Float(_) | ItemRef::Bool(_) => CODE_IDENTITY,
            ItemRef::None => CODE_NONE,
            ItemRef::Str(_) => CODE_STR,
            ItemRef::Bytes(_) => CODE_BYTES,
        }
    }

    /// Whether a reader may apply `code` to a value unpacked with this
    /// format. Code 3 yields `None` for any format (as CPython does); the
    /// others must match the format a CPython writer pairs them with.
    pub(crate) fn accepts_code(self, code: u8) -> bool {
        match code {
            CODE_NONE => true,
            CODE_IDENTITY => matches!(self, Format::Int | Format::Float | Format::Bool),
            CODE_STR | CODE_BYTES => matches!(self, Format::Bytes(_)),
            _ => false,
        }
    }
}

/// `raw` without its trailing NUL bytes (CPython's `rstrip(b'\x00')`).
pub(crate) fn trim_nuls(raw: &[u8]) -> &[u8] {
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    &raw[..end]
}

/// What goes into an item's slot.
pub(crate) enum SlotValue<'a> {
    /// The 8 bytes of a numeric, bool or None slot as `struct` packs them
    /// natively, as one word (stored with a single aligned store).
    Word(u64),
    /// The bytes of a str/bytes item, to be NUL-padded to the slot.
    Bytes(&'a [u8]),
}

impl<'a> SlotValue<'a> {
    /// The slot contents CPython's `struct.pack_into` writes for `item`.
    pub(crate) fn of(item: &ItemRef<'a>) -> SlotValue<'a> {
        let bytes = match *item {
            ItemRef::Int(v) => v.to_ne_bytes(),
            ItemRef::Float(v) => v.to_ne_bytes(),
            ItemRef::Bool(b) => [0, 0, 0, 0, 0, 0, 0, u8::from(b)],
            ItemRef::None => [0; 8],
            ItemRef::Str(s) => return SlotValue::Bytes(s.as_bytes()),
            ItemRef::Bytes(b) => return SlotValue::Bytes(b),
        };
        SlotValue::Word(u64::from_ne_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pad(s: &[u8]) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..s.len()].copy_from_slice(s);
        out
    }

    #[test]
    fn encode_matches_cpython_spelling() {
        assert_eq!(Format::Int.encode(), Some(pad(b"q")));
        assert_eq!(Format::Float.encode(), Some(pad(b"d")));
        assert_eq!(Format::Bool.encode(), Some(*b"xxxxxxx?"));
        assert_eq!(Format::None.encode(), Some(*b"xxxxxx?x"));
        assert_eq!(Format::Bytes(0).encode(), Some(pad(b"0s")));
        assert_eq!(Format::Bytes(8).encode(), Some(pad(b"8s")));
        assert_eq!(Format::Bytes(16).encode(), Some(pad(b"16s")));
        assert_eq!(Format::Bytes(9_999_992).encode(), Some(*b"9999992s"));
        assert_eq!(Format::Bytes(9_999_999).encode(), Some(*b"9999999s"));
        assert_eq!(Format::Bytes(10_000_000).encode(), None);
    }

    #[test]
    fn parse_round_trips_and_rejects_junk() {
        for f in [
            Format::Int,
            Format::Float,
            Format::Bool,
            Format::None,
            Format::Bytes(0),
        ] {
            assert_eq!(Format::parse(&f.encode().unwrap()), Some(f));
        }
        for n in [1, 8, 24, 1000, 9_999_999] {
            assert_eq!(
                Format::parse(&Format::Bytes(n).encode().unwrap()),
                Some(Format::Bytes(n))
            );
        }
        assert_eq!(Format::parse(&pad(b"08s")), Some(Format::Bytes(8)));
        for bad in [
            pad(b""),
            pad(b"zz"),
            pad(b"s"),
            pad(b"Q"),
            pad(b"q "),
            pad(b"-8s"),
            pad(b"8S"),
            pad(b"qq"),
            *b"12345678",
            *b"q\0\0\0\0\0\0d",
            *b"8s\0x\0\0\0\0",
            *b"xxxxxxx!",
            [0xff; 8],
        ] {
            assert_eq!(
                Format::parse(&bad),
                None,
                "{:?}",
                bad.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn codes() {
        assert!(Format::Int.accepts_code(0));
        assert!(Format::Bool.accepts_code(0));
        assert!(!Format::None.accepts_code(0));
        assert!(Format::None.accepts_code(3));
        assert!(Format::Int.accepts_code(3));
        assert!(Format::Bytes(8).accepts_code(1));
        assert!(Format::Bytes(8).accepts_code(2));
        assert!(!Format::Bytes(8).accepts_code(0));
        assert!(!Format::Float.accepts_code(1));
        assert!(!Format::Float.accepts_code(4));
        assert!(!Format::Float.accepts_code(0xff));
    }
}
