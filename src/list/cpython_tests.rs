//! Byte-for-byte comparisons with the real `multiprocessing.shared_memory`
//! of the standard library's Python (`$PYTHON`, else `python3`, 3.9+), in
//! both directions. Each test runs short `python -c` scripts that create
//! their segments, dump or check them, and close and unlink them again.
//!
//! These tests start a Python, so they are built with the `python` feature
//! only (`cargo test --features python`, which `make test` runs); without a
//! usable Python they fail.

use std::fmt::Write as _;
use std::process::Command;

use super::shared::tests::{Name, ITEMS};
use super::tests::{bytes_of, make, unhex};
use super::*;

/// Run `code` with the standard library's Python and return its stdout.
/// Fails the test if Python cannot run, fails, or its resource tracker
/// complains about a leaked segment.
fn python(code: &str) -> String {
    let exe = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&exe)
        .arg("-c")
        .arg(code)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {exe} (set PYTHON to a Python 3.9+): {e}"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{exe} failed: {}\n--- program\n{code}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // The resource tracker complains at exit about segments left behind.
    assert!(
        !stderr.contains("leaked"),
        "{exe} leaked a segment:\n{stderr}"
    );
    stdout
}

const PRELUDE: &str = "\
import struct, sys
from multiprocessing import shared_memory as sm
";

/// Run `PRELUDE + script` (see [`python`]).
fn run_python(script: &str) -> String {
    python(&format!("{PRELUDE}{script}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A Python expression for `item`, exact to the bit and free of escaping
/// questions.
fn py_item(item: &ItemRef<'_>) -> String {
    match item {
        ItemRef::Int(v) => v.to_string(),
        ItemRef::Float(v) => format!(
            "struct.unpack('d', bytes.fromhex('{}'))[0]",
            hex(&v.to_ne_bytes())
        ),
        ItemRef::Bool(true) => "True".into(),
        ItemRef::Bool(false) => "False".into(),
        ItemRef::None => "None".into(),
        ItemRef::Str(s) => format!("bytes.fromhex('{}').decode()", hex(s.as_bytes())),
        ItemRef::Bytes(b) => format!("bytes.fromhex('{}')", hex(b)),
    }
}

fn py_list(items: &[ItemRef<'_>]) -> String {
    let parts: Vec<String> = items.iter().map(py_item).collect();
    format!("[{}]", parts.join(", "))
}

/// Compare our bytes with a CPython dump of the same list: the dump may be
/// longer only by zero bytes (page rounding on some systems).
fn assert_same_bytes(ours: &[u8], theirs: &[u8], what: &str) {
    assert!(
        theirs.len() >= ours.len(),
        "{what}: CPython made {} bytes, we {}",
        theirs.len(),
        ours.len()
    );
    assert_eq!(hex(ours), hex(&theirs[..ours.len()]), "{what}");
    assert!(
        theirs[ours.len()..].iter().all(|&b| b == 0),
        "{what}: CPython's tail is not zero"
    );
}

fn creation_cases() -> Vec<Vec<ItemRef<'static>>> {
    vec![
        vec![
            ItemRef::Int(1),
            ItemRef::Bytes(b"ab"),
            ItemRef::Str("xy"),
            ItemRef::None,
            ItemRef::Bool(true),
            ItemRef::Float(1.5),
        ],
        vec![],
        vec![
            ItemRef::Int(0),
            ItemRef::Int(-1),
            ItemRef::Int(42),
            ItemRef::Int(i64::MIN),
            ItemRef::Int(i64::MAX),
        ],
        vec![
            ItemRef::Float(0.0),
            ItemRef::Float(-0.0),
            ItemRef::Float(-2.25e300),
            ItemRef::Float(f64::INFINITY),
            ItemRef::Float(f64::NEG_INFINITY),
            ItemRef::Float(f64::NAN),
            ItemRef::Float(5e-324),
        ],
        vec![
            ItemRef::Str(""),
            ItemRef::Str("seven77"),
            ItemRef::Str("eight888"),
            ItemRef::Str("nine99999"),
            ItemRef::Str("fifteen15151515"),
            ItemRef::Str("sixteen161616161"),
            ItemRef::Str("seventeen17171717"),
        ],
        vec![
            ItemRef::Bytes(b""),
            ItemRef::Bytes(b"\x00\x01"),
            ItemRef::Bytes(b"12345678"),
            ItemRef::Bytes(&[0xff; 9]),
        ],
        vec![
            ItemRef::None,
            ItemRef::Bool(true),
            ItemRef::Bool(false),
            ItemRef::None,
        ],
        vec![ItemRef::Str("é"), ItemRef::Str("abcdé")], // same slot size by chars and by bytes
        (0..100)
            .map(|k| match k % 6 {
                0 => ItemRef::Int(k * 1_000_003),
                1 => ItemRef::Float(k as f64 / 7.0),
                2 => ItemRef::Str(&"abcdefghijklmnopqrstuvwxyz"[..(k as usize % 27)]),
                3 => ItemRef::Bytes(&b"0123456789"[..(k as usize % 11)]),
                4 => ItemRef::Bool(k % 4 == 0),
                _ => ItemRef::None,
            })
            .collect(),
    ]
}

#[test]
fn creation_matches_cpython() {
    let cases = creation_cases();
    let literals: Vec<String> = cases.iter().map(|c| py_list(c)).collect();
    let script = format!(
        "cases = [{}]
for items in cases:
    sl = sm.ShareableList(items)
    try:
        print(bytes(sl.shm.buf[:sl.shm.size]).hex())
    finally:
        sl.shm.close()
        sl.shm.unlink()
",
        literals.join(",\n ")
    );
    let out = run_python(&script);
    let dumps: Vec<&str> = out.lines().collect();
    assert_eq!(dumps.len(), cases.len());
    for (k, (items, dump)) in cases.iter().zip(dumps).enumerate() {
        let theirs = unhex(dump);
        let ours = bytes_of(items);
        assert_eq!(ours.len(), encoded_size(items).unwrap());
        assert_same_bytes(&ours, &theirs, &format!("case {k}"));

        // And we read CPython's bytes back as the same items.
        let view = ListView::attach(RawMem::from_bytes(&theirs)).unwrap();
        let values = view.get_all().unwrap();
        assert_eq!(values.len(), items.len());
        for (i, (value, item)) in values.iter().zip(items).enumerate() {
            match (value.as_item(), item) {
                (ItemRef::Float(a), ItemRef::Float(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                (a, b) => assert_eq!(a, *b, "case {k} item {i}"),
            }
        }
    }
}

#[test]
fn assignments_match_cpython() {
    let initial = [
        ItemRef::Int(1),
        ItemRef::Str("abcdefghijk"),
        ItemRef::Bytes(b"xy"),
        ItemRef::None,
        ItemRef::Bool(true),
        ItemRef::Float(2.5),
        ItemRef::Str("q"),
    ];
    let sets: [(usize, ItemRef<'static>); 13] = [
        (0, ItemRef::Str("abcdefgh")),
        (1, ItemRef::Int(7)),
        (1, ItemRef::Str("zz")),
        (2, ItemRef::Bytes(b"12345678")),
        (3, ItemRef::Bool(false)),
        (4, ItemRef::None),
        (5, ItemRef::Str("hi")),
        (6, ItemRef::Int(-3)),
        (0, ItemRef::Float(4.25)),
        (1, ItemRef::Bytes(b"0123456789abcdef")),
        (6, ItemRef::Bytes(b"")),
        (3, ItemRef::Str("")),
        (4, ItemRef::Int(i64::MIN)),
    ];
    let steps: Vec<String> = sets
        .iter()
        .map(|(i, item)| format!("    sl[{i}] = {}\n", py_item(item)))
        .collect();
    let script = format!(
        "sl = sm.ShareableList({})
try:
{}    print(bytes(sl.shm.buf[:sl.shm.size]).hex())
    print(sl.format)
finally:
    sl.shm.close()
    sl.shm.unlink()
",
        py_list(&initial),
        steps.concat()
    );
    let out = run_python(&script);
    let lines: Vec<&str> = out.lines().collect();
    let theirs = unhex(lines[0]);

    let view = make(&initial);
    for (i, item) in sets {
        view.set(i, item).unwrap();
    }
    assert_same_bytes(&view.mem().to_vec(), &theirs, "after assignments");
    assert_eq!(view.format().unwrap(), lines[1]);
}

#[test]
fn cpython_reads_what_we_write() {
    // Includes the non-ASCII strings CPython itself would truncate (B4).
    let items = [
        ItemRef::Str("ééééé"),
        ItemRef::Str("0\u{10000}\u{10000}"),
        ItemRef::Str("日本語テキスト"),
        ItemRef::Str("encodés"),
        ItemRef::Int(i64::MIN),
        ItemRef::Float(-0.5),
        ItemRef::Bytes(b"\x00\xffbytes"),
        ItemRef::Bool(true),
        ItemRef::None,
        ItemRef::Str(""),
    ];
    let view = make(&items);
    view.set(9, ItemRef::Str("été")).unwrap();
    view.set(4, ItemRef::Str("ok")).unwrap();
    let expected: Vec<Value> = view.get_all().unwrap();
    let expected_items: Vec<ItemRef> = expected.iter().map(Value::as_item).collect();
    let data = view.mem().to_vec();
    let script = format!(
        "data = bytes.fromhex('{}')
expected = {}
shm = sm.SharedMemory(create=True, size=len(data))
try:
    shm.buf[:len(data)] = data
    sl = sm.ShareableList(name=shm.name)
    got = list(sl)
    fmt = sl.format
    sl.shm.close()
finally:
    shm.close()
    shm.unlink()
same = got == expected and [type(x) for x in got] == [type(x) for x in expected]
print('OK' if same else 'MISMATCH %r' % (got,))
print(fmt)
",
        hex(&data),
        py_list(&expected_items)
    );
    let out = run_python(&script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "OK");
    assert_eq!(lines[1], view.format().unwrap());
}

#[test]
fn utf8_error_messages_match_cpython() {
    let cases: [&[u8]; 9] = [
        b"\xff",
        b"a\xff",
        b"\xe2\x82",
        b"\xe2\x82x",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xc0\xaf",
        b"ok\xf0\x9f\x98",
        b"\x80abc",
    ];
    let literals: Vec<String> = cases
        .iter()
        .map(|c| format!("bytes.fromhex('{}')", hex(c)))
        .collect();
    let script = format!(
        "for b in [{}]:
    try:
        b.decode('utf8')
        print('decoded')
    except UnicodeDecodeError as e:
        print(e)
",
        literals.join(", ")
    );
    let out = run_python(&script);
    for (case, theirs) in cases.iter().zip(out.lines()) {
        // Store the bytes as a bytes item, then mark it as str.
        let view = make(&[ItemRef::Bytes(case)]);
        view.mem().store_u8(view.byte_len() - 1, 1).unwrap();
        let err = view.get(0).unwrap_err();
        assert!(matches!(err, ListError::Utf8 { .. }), "{err:?}");
        assert_eq!(err.to_string(), theirs, "{case:?}");
    }
}

// --- SharedList and CPython's own ShareableList, both ways ----------------

/// For the `SharedList` tests: attaching registers the segment with
/// CPython's resource tracker, which would unlink it when the child exits,
/// so the snippets unregister what they attach to or create.
const PY_PRELUDE: &str = "
import sys
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import ShareableList
def untrack(sl):
    resource_tracker.unregister(sl.shm._name, 'shared_memory')
";

#[test]
fn cpython_reads_and_writes_a_list_made_in_rust() {
    let name = Name::new("py1");
    let list = SharedList::create(&name, &ITEMS).unwrap();
    let out = python(&format!(
        "{PY_PRELUDE}
sl = ShareableList(name={name:?})
untrack(sl)
print(ascii(list(sl)))
print(sl.format)
sl[0] = 'seven'
sl[1] = None
sl[4] = b'bytes!'
sl[6] = -1.25
sl.shm.close()
",
        name = &*name
    ));
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        "[-7, 2.5, True, None, 'h\\xe9llo w\\xf6rld', b'\\x00\\x01ab', 9223372036854775807]"
    );
    assert_eq!(lines.next().unwrap(), "qdxxxxxxx?xxxxxx?x16s8sq");
    assert_eq!(list.get(0).unwrap(), Value::Str("seven".into()));
    assert_eq!(list.get(1).unwrap(), Value::None);
    assert_eq!(list.get(4).unwrap(), Value::Bytes(b"bytes!".to_vec()));
    assert_eq!(list.get(6).unwrap(), Value::Float(-1.25));
    assert_eq!(list.format().unwrap(), "8sxxxxxx?xxxxxxxx?xxxxxx?x16s8sd");
    list.unlink().unwrap();
}

#[test]
fn rust_reads_and_writes_a_list_made_by_cpython() {
    let name = Name::new("py2");
    let out = python(&format!(
        "{PY_PRELUDE}
sl = ShareableList([1, b'ab', 'xy', None, True, 1.5, 'a longer string'], name={name:?})
untrack(sl)
print(sl.format)
sl.shm.close()
",
        name = &*name
    ));
    let list = SharedList::open(&name).unwrap();
    assert_eq!(out.trim_end(), list.format().unwrap());
    assert_eq!(
        list.to_vec().unwrap(),
        vec![
            Value::Int(1),
            Value::Bytes(b"ab".to_vec()),
            Value::Str("xy".into()),
            Value::None,
            Value::Bool(true),
            Value::Float(1.5),
            Value::Str("a longer string".into()),
        ]
    );
    list.set(0, ItemRef::Float(0.1)).unwrap();
    list.set(2, ItemRef::Str("ünï")).unwrap();
    list.set(3, ItemRef::Bytes(b"\xff")).unwrap();
    list.set(6, ItemRef::Int(-42)).unwrap();
    let out = python(&format!(
        "{PY_PRELUDE}
sl = ShareableList(name={name:?})
untrack(sl)
print(ascii(list(sl)))
sl.shm.close()
",
        name = &*name
    ));
    assert_eq!(
        out.trim_end(),
        "[0.1, b'ab', '\\xfcn\\xef', b'\\xff', True, 1.5, -42]"
    );
    list.unlink().unwrap();
}
