//! NumPy dtype descriptions, as NumPy's `.npy` format writes them: the text
//! of a Python literal, either a type string (`'<f8'`, `'|S5'`,
//! `'<M8[ns]'`) or, for a structured dtype, a list of fields
//! (`[('x', '<f4'), (('title', 'y'), '<i2', (2, 3)), ('', '|V2')]`),
//! exactly what `numpy.lib.format.dtype_to_descr(dtype)` gives and
//! `numpy.lib.format.descr_to_dtype(ast.literal_eval(text))` reads back.
//!
//! [`Descr::parse`] accepts the subset of Python literal syntax those
//! descriptions use and nothing else (no expressions, a bounded nesting
//! depth, a bounded length), so hostile text is an [`ArrayError::Descr`],
//! never a crash, a deep recursion or an allocation in proportion to a
//! number written in it. [`Descr::itemsize`] computes the size of one item
//! from the description alone, which is how a header's sizes are checked
//! without NumPy. Object dtypes (`'|O'`) are refused: their items are
//! pointers into one process's memory.

use std::fmt::{self, Write as _};

use super::ArrayError;

/// The deepest nesting of structured dtypes that [`Descr::parse`] accepts
/// (NumPy itself has no limit; 32 is far beyond any real dtype and keeps
/// the recursive parser's stack small).
pub const MAX_DEPTH: usize = 32;

/// The most dimensions a field's sub-array may have, as NumPy 2 allows for
/// arrays (`NPY_MAXDIMS`).
pub const MAX_FIELD_NDIM: usize = 64;

/// What one item of an array is: a plain type or a structure of fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Descr {
    /// A plain type, such as `'<f8'` (see [`TypeStr`]).
    Type(TypeStr),
    /// A structured dtype: its fields in memory order, padding included
    /// (as unnamed `'|V…'` fields), so that the offsets follow from the
    /// sizes.
    Struct(Vec<Field>),
}

/// One field of a structured dtype.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name; empty for padding (a `'|V…'` field).
    pub name: String,
    /// The field's title, when it has one (`(('title', 'name'), ...)`).
    pub title: Option<String>,
    /// The type of one element of the field.
    pub descr: Descr,
    /// The sub-array shape of the field (`('x', '<f4', (2, 3))`); empty for
    /// a scalar field.
    pub shape: Vec<usize>,
}

/// The byte order of a type string's first character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// `<`: little-endian.
    Little,
    /// `>`: big-endian.
    Big,
    /// `|`: not applicable (one-byte numbers, bool, bytes, void).
    NotApplicable,
}

impl ByteOrder {
    /// The byte order of the machine this runs on.
    pub const NATIVE: ByteOrder = if cfg!(target_endian = "little") {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };

    fn char(self) -> char {
        match self {
            ByteOrder::Little => '<',
            ByteOrder::Big => '>',
            ByteOrder::NotApplicable => '|',
        }
    }
}

/// A NumPy type string (the array interface's `typestr`): byte order, kind
/// and size, with a unit for datetimes (`'<M8[ns]'`, `'<m8[10s]'`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeStr {
    /// The byte order character.
    pub byteorder: ByteOrder,
    /// The kind character: `b` bool, `i`/`u` integers, `f` floats, `c`
    /// complex, `m` timedelta, `M` datetime, `S` (or `a`) bytes, `U`
    /// unicode (UCS-4), `V` void (raw bytes).
    pub kind: char,
    /// The number after the kind: bytes, except for `U`, where it counts
    /// characters of 4 bytes each.
    pub count: usize,
    /// The unit of a datetime or timedelta, as written between the brackets
    /// (`"ns"`, `"10s"`); `None` for other kinds and for generic units.
    pub unit: Option<String>,
}

impl TypeStr {
    /// The size in bytes of one item of this type.
    pub fn itemsize(&self) -> usize {
        if self.kind == 'U' {
            // Checked when parsed: count * 4 cannot overflow.
            self.count * 4
        } else {
            self.count
        }
    }

    /// Parse a type string (the text between the quotes).
    pub fn parse(text: &str) -> Result<TypeStr, ArrayError> {
        let bad = |why: &str| ArrayError::Descr(format!("type string {text:?}: {why}"));
        let mut chars = text.chars();
        let byteorder = match chars.next() {
            Some('<') => ByteOrder::Little,
            Some('>') => ByteOrder::Big,
            Some('|') => ByteOrder::NotApplicable,
            _ => return Err(bad("must start with a byte order, '<', '>' or '|'")),
        };
        let kind = chars.next().ok_or_else(|| bad("has no kind"))?;
        if kind == 'O' {
            return Err(ArrayError::Descr(format!(
                "type string {text:?} is an object dtype: its items are pointers into one \
                 process's memory, which no other process can follow"
            )));
        }
        let rest = chars.as_str();
        let (digits, unit) = match rest.find('[') {
            Some(open) => {
                if !rest.ends_with(']') {
                    return Err(bad("a '[' without its closing ']'"));
                }
                (&rest[..open], Some(&rest[open + 1..rest.len() - 1]))
            }
            None => (rest, None),
        };
        let count = parse_count(digits).ok_or_else(|| bad("needs a size in decimal digits"))?;
        let fixed = |sizes: &[usize]| -> Result<(), ArrayError> {
            if sizes.contains(&count) {
                Ok(())
            } else {
                Err(bad(&format!("size {count} is not one of {sizes:?}")))
            }
        };
        match kind {
            'b' => fixed(&[1])?,
            'i' | 'u' => fixed(&[1, 2, 4, 8])?,
            'f' => fixed(&[2, 4, 8, 12, 16])?,
            'c' => fixed(&[8, 16, 24, 32])?,
            'm' | 'M' => fixed(&[8])?,
            'S' | 'a' | 'V' => {}
            'U' => {
                count
                    .checked_mul(4)
                    .filter(|n| *n <= isize::MAX as usize)
                    .ok_or_else(|| bad("too many characters"))?;
            }
            _ => return Err(bad("unknown kind")),
        }
        let unit = match (kind, unit) {
            ('m' | 'M', Some(unit)) => {
                check_time_unit(unit).map_err(&bad)?;
                Some(unit.to_owned())
            }
            (_, Some(_)) => return Err(bad("only datetimes and timedeltas have a unit")),
            (_, None) => None,
        };
        // Multi-byte numbers and UCS-4 text have a byte order; NumPy writes
        // '|' only for types that have none.
        let needs_order = matches!(kind, 'U' | 'm' | 'M') || (count > 1 && "iufc".contains(kind));
        if needs_order && byteorder == ByteOrder::NotApplicable {
            return Err(bad("needs a byte order, '<' or '>'"));
        }
        Ok(TypeStr {
            byteorder,
            kind,
            count,
            unit,
        })
    }
}

impl fmt::Display for TypeStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.byteorder.char(), self.kind, self.count)?;
        if let Some(unit) = &self.unit {
            write!(f, "[{unit}]")?;
        }
        Ok(())
    }
}

/// A decimal count as NumPy writes it: digits only, no sign, no leading
/// zero (but `0` itself), at most what `isize` holds.
fn parse_count(digits: &str) -> Option<usize> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= isize::MAX as usize)
}

/// A datetime unit as NumPy writes it: an optional multiplier (`10ns`) and
/// one of NumPy's units (`generic` has no brackets at all).
fn check_time_unit(unit: &str) -> Result<(), &'static str> {
    const UNITS: [&str; 13] = [
        "Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as",
    ];
    let split = unit
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unit.len());
    let (multiplier, base) = unit.split_at(split);
    if !multiplier.is_empty() && parse_count(multiplier).filter(|n| *n > 0).is_none() {
        return Err("the unit's multiplier must be a positive number");
    }
    if !UNITS.contains(&base) {
        return Err("unknown datetime unit");
    }
    Ok(())
}

impl Descr {
    /// Parse a description from the text of its Python literal.
    pub fn parse(text: &str) -> Result<Descr, ArrayError> {
        let mut parser = Parser { text, pos: 0 };
        parser.skip_ws();
        let descr = parser.descr(0)?;
        parser.skip_ws();
        if parser.pos != text.len() {
            return Err(parser.error("unexpected text after the description"));
        }
        Ok(descr)
    }

    /// The size in bytes of one item: the type's, or the sum of the fields'
    /// (each times its sub-array's element count). `None` if it overflows
    /// `isize`, as no array could have such items.
    pub fn itemsize(&self) -> Option<usize> {
        match self {
            Descr::Type(t) => Some(t.itemsize()),
            Descr::Struct(fields) => fields.iter().try_fold(0usize, |total, field| {
                let count = field
                    .shape
                    .iter()
                    .try_fold(1usize, |n, &d| n.checked_mul(d))?;
                let size = field.descr.itemsize()?.checked_mul(count)?;
                total
                    .checked_add(size)
                    .filter(|n| *n <= isize::MAX as usize)
            }),
        }
    }

    /// The type string, when this is a plain type.
    pub fn as_type(&self) -> Option<&TypeStr> {
        match self {
            Descr::Type(t) => Some(t),
            Descr::Struct(_) => None,
        }
    }

    /// The text of the Python literal (see the module's documentation):
    /// what `repr(numpy.lib.format.dtype_to_descr(dtype))` gives, up to the
    /// quotes chosen for strings.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out);
        out
    }

    fn write_text(&self, out: &mut String) {
        match self {
            Descr::Type(t) => {
                // A type string holds no character that needs escaping.
                let _ = write!(out, "'{t}'");
            }
            Descr::Struct(fields) => {
                out.push('[');
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push('(');
                    match &field.title {
                        Some(title) => {
                            out.push('(');
                            write_str_literal(out, title);
                            out.push_str(", ");
                            write_str_literal(out, &field.name);
                            out.push(')');
                        }
                        None => write_str_literal(out, &field.name),
                    }
                    out.push_str(", ");
                    field.descr.write_text(out);
                    if !field.shape.is_empty() {
                        out.push_str(", (");
                        for (k, d) in field.shape.iter().enumerate() {
                            if k > 0 {
                                out.push_str(", ");
                            }
                            let _ = write!(out, "{d}");
                        }
                        if field.shape.len() == 1 {
                            out.push(',');
                        }
                        out.push(')');
                    }
                    out.push(')');
                }
                out.push(']');
            }
        }
    }
}

impl fmt::Display for Descr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// `s` as a single-quoted Python string literal that `ast.literal_eval`
/// reads back: backslash, quote and control characters escaped, the rest
/// as it is (UTF-8).
fn write_str_literal(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// A recursive-descent parser over the description's text.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, why: &str) -> ArrayError {
        ArrayError::Descr(format!("{why} (at byte {} of the description)", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), ArrayError> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected {:?}", byte as char)))
        }
    }

    /// Consume `byte` if it comes next (after spaces).
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn descr(&mut self, depth: usize) -> Result<Descr, ArrayError> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!(
                "structured dtypes nested more than {MAX_DEPTH} deep"
            )));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'\'' | b'"') => {
                let at = self.pos;
                let text = self.string()?;
                TypeStr::parse(&text).map(Descr::Type).map_err(|e| match e {
                    ArrayError::Descr(why) => {
                        ArrayError::Descr(format!("{why} (at byte {at} of the description)"))
                    }
                    other => other,
                })
            }
            Some(b'[') => {
                self.pos += 1;
                let mut fields = Vec::new();
                loop {
                    if self.eat(b']') {
                        break;
                    }
                    fields.push(self.field(depth)?);
                    if !self.eat(b',') {
                        self.expect(b']')?;
                        break;
                    }
                }
                check_names(&fields).map_err(|why| self.error(&why))?;
                Ok(Descr::Struct(fields))
            }
            _ => Err(self.error("expected a type string or a list of fields")),
        }
    }

    fn field(&mut self, depth: usize) -> Result<Field, ArrayError> {
        self.expect(b'(')?;
        self.skip_ws();
        let (title, name) = if self.peek() == Some(b'(') {
            self.pos += 1;
            let title = self.string_after_ws()?;
            self.expect(b',')?;
            let name = self.string_after_ws()?;
            self.eat(b',');
            self.expect(b')')?;
            (Some(title), name)
        } else {
            (None, self.string()?)
        };
        self.expect(b',')?;
        let descr = self.descr(depth + 1)?;
        let mut shape = Vec::new();
        // `(name, descr)`, `(name, descr,)`, `(name, descr, shape)` or
        // `(name, descr, shape,)`.
        let mut closed = false;
        if self.eat(b',') {
            closed = self.eat(b')');
            if !closed {
                shape = self.shape()?;
                self.eat(b',');
            }
        }
        if !closed {
            self.expect(b')')?;
        }
        if name.is_empty() && !matches!(&descr, Descr::Type(t) if t.kind == 'V') {
            return Err(self.error("only padding ('|V…' fields) may have an empty name"));
        }
        Ok(Field {
            name,
            title,
            descr,
            shape,
        })
    }

    /// A sub-array shape: `(2, 3)`, `(4,)`, `()`, or a bare or parenthesized
    /// integer (NumPy reads `('x', '<f4', 3)` as shape `(3,)`).
    fn shape(&mut self) -> Result<Vec<usize>, ArrayError> {
        self.skip_ws();
        if self.peek() != Some(b'(') {
            return Ok(vec![self.integer()?]);
        }
        self.pos += 1;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                break;
            }
            if dims.len() == MAX_FIELD_NDIM {
                return Err(self.error(&format!(
                    "a field's sub-array has more than {MAX_FIELD_NDIM} dimensions"
                )));
            }
            dims.push(self.integer()?);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(dims)
    }

    fn integer(&mut self) -> Result<usize, ArrayError> {
        self.skip_ws();
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        parse_count(&self.text[start..self.pos])
            .ok_or_else(|| self.error("expected a non-negative integer"))
    }

    fn string_after_ws(&mut self) -> Result<String, ArrayError> {
        self.skip_ws();
        self.string()
    }

    /// A Python string literal in single or double quotes, with the escapes
    /// `repr()` writes (`\\`, `\'`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b`,
    /// `\f`, `\v`, `\xhh`, `\uhhhh`, `\Uhhhhhhhh`). No prefixes, no
    /// triple quotes, no raw line breaks.
    fn string(&mut self) -> Result<String, ArrayError> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q as char,
            _ => return Err(self.error("expected a quoted string")),
        };
        self.pos += 1;
        let mut out = String::new();
        let text = self.text;
        let rest = &text[self.pos..];
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\n' | '\r' => break,
                '\\' => {
                    let (_, e) = chars
                        .next()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    let simple = match e {
                        '\\' => Some('\\'),
                        '\'' => Some('\''),
                        '"' => Some('"'),
                        'n' => Some('\n'),
                        'r' => Some('\r'),
                        't' => Some('\t'),
                        'a' => Some('\x07'),
                        'b' => Some('\x08'),
                        'f' => Some('\x0c'),
                        'v' => Some('\x0b'),
                        _ => None,
                    };
                    if let Some(c) = simple {
                        out.push(c);
                        continue;
                    }
                    let digits = match e {
                        'x' => 2,
                        'u' => 4,
                        'U' => 8,
                        _ => return Err(self.error("unsupported escape in a string")),
                    };
                    let mut code = 0u32;
                    for _ in 0..digits {
                        let d = chars
                            .next()
                            .and_then(|(_, h)| h.to_digit(16))
                            .ok_or_else(|| self.error("bad hexadecimal escape in a string"))?;
                        code = code * 16 + d;
                    }
                    out.push(
                        char::from_u32(code)
                            .ok_or_else(|| self.error("escape is not a Unicode scalar value"))?,
                    );
                }
                c => out.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }
}

/// Field names (and titles) must be unique, as NumPy requires; padding has
/// no name.
fn check_names(fields: &[Field]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for field in fields {
        for key in std::iter::once(&field.name).chain(field.title.as_ref()) {
            if !key.is_empty() && !seen.insert(key.as_str()) {
                return Err(format!("field name or title {key:?} appears twice"));
            }
        }
    }
    Ok(())
}
