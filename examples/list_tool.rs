//! Print or set the items of a ShareableList made by Python (or anyone).
//!
//! ```text
//! cargo run --release --example list_tool -- NAME                 # one JSON value per item
//! cargo run --release --example list_tool -- NAME set INDEX JSON  # set one item
//! ```
//!
//! NAME is the list's name as Python gives it (`sl.shm.name`). Items are
//! JSON: int and float as numbers (a float always has a `.` or an exponent,
//! and NaN/Infinity are spelt as Python's `json` module spells them), str as
//! a string, None as `null`, bool as `true`/`false`, bytes as
//! `{"bytes": "<hex>"}`. `set` takes the same forms; a number without `.` or
//! exponent is an int. A negative INDEX counts from the end, as in Python.
//!
//! Exit status: 0 on success; 1, with a one-line message on stderr, when the
//! name does not exist, the index is out of range, the value does not fit
//! its slot, or the segment is not a valid list; 2 for a usage error.
//!
//! Printing opens the list read-only, so it needs only read permission and
//! cannot change the list.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;

use ferroshm::{ItemRef, ListError, SharedList, SharedListError, Value};

const USAGE: &str = "usage: list_tool NAME [set INDEX JSON]";

/// A failure: the message, and whether it was a usage error (exit 2).
struct Failure {
    message: String,
    usage: bool,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            usage: true,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            message,
            usage: false,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if f.usage {
                eprintln!("list_tool: {} ({USAGE})", f.message);
                ExitCode::from(2)
            } else {
                eprintln!("list_tool: {}", f.message);
                ExitCode::from(1)
            }
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    match args {
        [name] if name != "-h" && name != "--help" => print_items(name),
        [name, cmd, index, json] if cmd == "set" => set_item(name, index, json),
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        [] => Err(Failure::usage("missing NAME")),
        _ => Err(Failure::usage(format!(
            "unexpected arguments: {}",
            args[1..].join(" ")
        ))),
    }
}

fn open_error(name: &str, e: SharedListError) -> Failure {
    let message = match e.raw_os_error() {
        Some(libc::ENOENT) => format!("no shared memory segment named {name:?}"),
        _ => match e {
            SharedListError::List(e) => format!("{name:?} is not a valid ShareableList: {e}"),
            e => format!("cannot open {name:?}: {e}"),
        },
    };
    message.into()
}

fn print_items(name: &str) -> Result<(), Failure> {
    let list = SharedList::open_read_only(name).map_err(|e| open_error(name, e))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for i in 0..list.len() {
        let line = list
            .get_with(i, |item| {
                let mut s = String::new();
                write_json(&mut s, item);
                s
            })
            .map_err(|e| format!("item {i} of {name:?} cannot be read: {e}"))?;
        if writeln!(out, "{line}").is_err() {
            return Ok(()); // stdout closed (e.g. piped into `head`): stop quietly
        }
    }
    let _ = out.flush();
    Ok(())
}

fn set_item(name: &str, index: &str, json: &str) -> Result<(), Failure> {
    let index: i64 = index
        .parse()
        .map_err(|_| Failure::usage(format!("INDEX must be an integer, not {index:?}")))?;
    let value = parse_json(json).map_err(|e| format!("invalid JSON value {json:?}: {e}"))?;
    let list = SharedList::open(name).map_err(|e| open_error(name, e))?;
    let n = list.len();
    let resolved = if index < 0 { index + n as i64 } else { index };
    let out_of_range =
        || format!("index {index} is out of range for {name:?}, which has {n} items");
    let i = usize::try_from(resolved).map_err(|_| out_of_range())?;
    match list.set(i, value.as_item()) {
        Ok(()) => Ok(()),
        Err(SharedListError::List(ListError::IndexOutOfRange)) => Err(out_of_range().into()),
        Err(SharedListError::List(ListError::ExceedsStorage)) => {
            let len = match &value {
                Value::Str(s) => s.len(),
                Value::Bytes(b) => b.len(),
                _ => 8,
            };
            let slot = slot_len(&list, i).map_or(String::new(), |n| format!(" {n}-byte"));
            Err(
                format!("the {len}-byte value does not fit the{slot} slot of item {i} of {name:?}")
                    .into(),
            )
        }
        Err(e) => Err(format!("cannot set item {i} of {name:?}: {e}").into()),
    }
}

/// The size of item `i`'s slot, from the list's offsets table (`offsets[k]`
/// is the 8 bytes at `8 + 8k`).
fn slot_len(list: &SharedList, i: usize) -> Option<u64> {
    let mem = list.view().mem();
    let start = mem.load_u64(8 + 8 * i).ok()?;
    let end = mem.load_u64(8 + 8 * (i + 1)).ok()?;
    end.checked_sub(start)
}

// --- a small JSON printer and parser for the item forms above --------------

fn write_json(out: &mut String, item: ItemRef<'_>) {
    match item {
        ItemRef::Int(v) => write!(out, "{v}").unwrap(),
        ItemRef::Float(v) if v.is_nan() => out.push_str("NaN"),
        ItemRef::Float(v) if v.is_infinite() => {
            out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" })
        }
        // Debug is the shortest text that reads back as the same f64, with
        // a `.0` or an exponent (`1e300`), which is valid JSON.
        ItemRef::Float(v) => write!(out, "{v:?}").unwrap(),
        ItemRef::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        ItemRef::None => out.push_str("null"),
        ItemRef::Str(s) => write_json_str(out, s),
        ItemRef::Bytes(b) => {
            out.push_str("{\"bytes\": \"");
            for byte in b {
                write!(out, "{byte:02x}").unwrap();
            }
            out.push_str("\"}");
        }
    }
}

fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parse one JSON value of the forms the tool prints.
fn parse_json(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(format!("unexpected text at position {}", p.pos));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_ws();
        if self.s.get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected '{}' at position {}",
                byte as char, self.pos
            ))
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        if self.eat("null") {
            return Ok(Value::None);
        }
        if self.eat("true") {
            return Ok(Value::Bool(true));
        }
        if self.eat("false") {
            return Ok(Value::Bool(false));
        }
        if self.eat("NaN") {
            return Ok(Value::Float(f64::NAN));
        }
        if self.eat("Infinity") {
            return Ok(Value::Float(f64::INFINITY));
        }
        if self.eat("-Infinity") {
            return Ok(Value::Float(f64::NEG_INFINITY));
        }
        match self.s.get(self.pos) {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'{') => self.bytes_object(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => Err("lists cannot be stored in a ShareableList".into()),
            Some(_) => Err(format!("unexpected character at position {}", self.pos)),
            None => Err("empty value".into()),
        }
    }

    /// `{"bytes": "<hex>"}`, the only object form.
    fn bytes_object(&mut self) -> Result<Value, String> {
        const FORM: &str = "the only object form is {\"bytes\": \"<hex>\"}";
        self.expect(b'{')?;
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b'"') || self.string()? != "bytes" {
            return Err(FORM.into());
        }
        self.expect(b':')?;
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b'"') {
            return Err(FORM.into());
        }
        let hex = self.string()?;
        self.expect(b'}').map_err(|_| FORM.to_string())?;
        if hex.len() % 2 != 0 {
            return Err("the hex string of bytes must have an even number of digits".into());
        }
        let digits = hex.as_bytes();
        let mut out = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks(2) {
            if !pair.iter().all(u8::is_ascii_hexdigit) {
                return Err("bytes must be given as hex digits".into());
            }
            let text = std::str::from_utf8(pair).expect("ASCII");
            out.push(u8::from_str_radix(text, 16).expect("two hex digits"));
        }
        Ok(Value::Bytes(out))
    }

    /// A JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`;
    /// an int unless it has a fraction or an exponent.
    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while matches!(p.s.get(p.pos), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos - from
        };
        self.eat("-");
        let int_start = self.pos;
        let int_len = digits(self);
        let mut well_formed = int_len > 0 && (int_len == 1 || self.s[int_start] != b'0');
        let mut float = false;
        if self.eat(".") {
            float = true;
            well_formed &= digits(self) > 0;
        }
        if matches!(self.s.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            float = true;
            if matches!(self.s.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            well_formed &= digits(self) > 0;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).expect("ASCII");
        if !well_formed {
            return Err(format!("{text:?} is not a JSON number"));
        }
        if float {
            text.parse::<f64>()
                .map(Value::Float)
                .map_err(|_| format!("{text:?} is not a JSON number"))
        } else {
            text.parse::<i64>()
                .map(Value::Int)
                .map_err(|_| format!("{text} does not fit in a 64-bit signed integer"))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let rest = &self.s[self.pos..];
            // Copy the run up to the next quote or backslash as it is.
            let run = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\')
                .ok_or("unterminated string")?;
            let chunk = std::str::from_utf8(&rest[..run])
                .map_err(|_| "invalid UTF-8 in string".to_string())?;
            if chunk.chars().any(|c| (c as u32) < 0x20) {
                return Err("control character in string (escape it)".into());
            }
            out.push_str(chunk);
            self.pos += run + 1;
            if rest[run] == b'"' {
                return Ok(out);
            }
            let esc = *self.s.get(self.pos).ok_or("unterminated string")?;
            self.pos += 1;
            match esc {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let hi = self.hex4()?;
                    let c = if (0xD800..0xDC00).contains(&hi) {
                        if !self.eat("\\u") {
                            return Err("unpaired surrogate in string".into());
                        }
                        let lo = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err("unpaired surrogate in string".into());
                        }
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else {
                        hi
                    };
                    out.push(char::from_u32(c).ok_or("unpaired surrogate in string")?);
                }
                other => return Err(format!("invalid escape '\\{}' in string", other as char)),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or("truncated \\u escape")?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err("invalid \\u escape".into());
        }
        let text = std::str::from_utf8(digits).expect("ASCII");
        let v = u32::from_str_radix(text, 16).expect("four hex digits");
        self.pos += 4;
        Ok(v)
    }
}
