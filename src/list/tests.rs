//! Tests of the list layout that need no Python (see `cpython_tests` for
//! the byte-for-byte comparisons with the real standard library).

use super::*;

use std::sync::Arc;

pub(super) fn make(items: &[ItemRef<'_>]) -> ListView {
    let size = encoded_size(items).unwrap();
    ListView::create(RawMem::zeroed(size), items).unwrap()
}

pub(super) fn bytes_of(items: &[ItemRef<'_>]) -> Vec<u8> {
    make(items).mem().to_vec()
}

fn attach_bytes(bytes: &[u8]) -> Result<ListView, ListError> {
    ListView::attach(RawMem::from_bytes(bytes))
}

fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn put_fmt(buf: &mut [u8], off: usize, fmt: &[u8]) {
    let mut spelled = [0u8; 8];
    spelled[..fmt.len()].copy_from_slice(fmt);
    buf[off..off + 8].copy_from_slice(&spelled);
}

pub(super) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn is_corrupt<T: std::fmt::Debug>(r: Result<T, ListError>) -> bool {
    matches!(r, Err(ListError::Corrupt(_)))
}

/// The items of the reference's worked example.
const EXAMPLE: [ItemRef<'static>; 6] = [
    ItemRef::Int(1),
    ItemRef::Bytes(b"ab"),
    ItemRef::Str("xy"),
    ItemRef::None,
    ItemRef::Bool(true),
    ItemRef::Float(1.5),
];

// Offsets inside the worked example (N = 6, D = 48).
const EX_DATA: usize = 64;
const EX_FORMATS: usize = 112;
const EX_CODES: usize = 160;

#[cfg(target_endian = "little")]
#[test]
fn worked_example_is_byte_identical() {
    let expected = unhex(
        "0600000000000000
         0000000000000000 0800000000000000 1000000000000000 1800000000000000
         2000000000000000 2800000000000000 3000000000000000
         0100000000000000 6162000000000000 7879000000000000 0000000000000000
         0000000000000001 000000000000f83f
         7100000000000000 3873000000000000 3873000000000000 787878787878 3f78
         78787878787878 3f 6400000000000000
         00 02 01 03 00 00",
    );
    assert_eq!(expected.len(), 166);
    assert_eq!(encoded_size(&EXAMPLE), Ok(166));
    assert_eq!(bytes_of(&EXAMPLE), expected);

    let view = attach_bytes(&expected).unwrap();
    assert_eq!(view.len(), 6);
    assert_eq!(view.data_len(), 48);
    assert_eq!(view.byte_len(), 166);
    assert_eq!(view.format().unwrap(), "q8s8sxxxxxx?xxxxxxxx?d");
    assert_eq!(
        view.get_all().unwrap(),
        vec![
            Value::Int(1),
            Value::Bytes(b"ab".to_vec()),
            Value::Str("xy".into()),
            Value::None,
            Value::Bool(true),
            Value::Float(1.5)
        ]
    );
}

#[test]
fn layout_beyond_encoded_size_is_untouched() {
    let mem = RawMem::from_bytes(&[0xAA; 200]);
    write_new(&mem, &EXAMPLE).unwrap();
    let bytes = mem.to_vec();
    assert_eq!(bytes[..166], bytes_of(&EXAMPLE)[..]);
    assert!(bytes[166..].iter().all(|&b| b == 0xAA));
    let view = ListView::attach(mem).unwrap();
    assert_eq!(view.get(5), Ok(Value::Float(1.5)));
}

#[test]
fn round_trip_every_type() {
    let items = [
        ItemRef::Int(0),
        ItemRef::Int(-1),
        ItemRef::Int(i64::MIN),
        ItemRef::Int(i64::MAX),
        ItemRef::Float(0.0),
        ItemRef::Float(-2.5e-300),
        ItemRef::Float(f64::MAX),
        ItemRef::Bool(true),
        ItemRef::Bool(false),
        ItemRef::None,
        ItemRef::Str(""),
        ItemRef::Str("seven77"),
        ItemRef::Str("eight888"),
        ItemRef::Str("nine99999"),
        ItemRef::Str("ééééé"),
        ItemRef::Str("日本語テキスト"),
        ItemRef::Str("0\u{10000}\u{10000}"),
        ItemRef::Bytes(b""),
        ItemRef::Bytes(b"\x01\x00\x02"),
        ItemRef::Bytes(&[0xff; 17]),
    ];
    let view = make(&items);
    assert_eq!(view.len(), items.len());
    assert_eq!(view.live_len(), Ok(items.len()));
    for (i, item) in items.iter().enumerate() {
        let got = view.get(i).unwrap();
        assert_eq!(got.as_item(), *item, "item {i}");
    }
    assert_eq!(view.get(items.len()), Err(ListError::IndexOutOfRange));
    assert_eq!(view.get(usize::MAX), Err(ListError::IndexOutOfRange));

    // Each item round-trips through `set` as well, into a slot big enough.
    let big = make(&[ItemRef::Bytes(&[b'.'; 40])]);
    for item in items {
        big.set(0, item).unwrap();
        assert_eq!(big.get(0).unwrap().as_item(), item);
    }
}

#[test]
fn formats_and_codes_as_cpython_writes_them() {
    let view = make(&[
        ItemRef::Int(3),
        ItemRef::Str("abcdefgh"),
        ItemRef::Bytes(b""),
        ItemRef::Float(1.0),
        ItemRef::Bool(false),
        ItemRef::None,
        ItemRef::Str("日本"),
    ]);
    let formats: Vec<String> = (0..7).map(|i| view.format_of(i).unwrap()).collect();
    assert_eq!(
        formats,
        ["q", "16s", "8s", "d", "xxxxxxx?", "xxxxxx?x", "8s"]
    );
    assert_eq!(view.format().unwrap(), formats.concat());
    let codes_start = view.byte_len() - 7;
    let bytes = view.mem().to_vec();
    assert_eq!(&bytes[codes_start..], &[0, 1, 2, 0, 0, 3, 1]);
    assert_eq!(view.format_of(7), Err(ListError::IndexOutOfRange));
}

#[test]
fn bool_and_none_slot_encoding() {
    let bytes = bytes_of(&[ItemRef::Bool(true), ItemRef::None, ItemRef::Bool(false)]);
    let data = 8 * 5;
    assert_eq!(
        &bytes[data..data + 24],
        &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    // struct's '?' reads any non-zero byte as True; pad bytes are ignored.
    let mut forged = bytes.clone();
    forged[data + 7] = 0x80;
    forged[data + 16] = 0xff;
    let view = attach_bytes(&forged).unwrap();
    assert_eq!(view.get(0), Ok(Value::Bool(true)));
    assert_eq!(view.get(2), Ok(Value::Bool(false)));
}

#[test]
fn empty_list() {
    assert_eq!(encoded_size(&[]), Ok(16));
    let view = make(&[]);
    assert_eq!(view.mem().to_vec(), vec![0; 16]);
    assert_eq!(view.len(), 0);
    assert!(view.is_empty());
    assert_eq!(view.format().unwrap(), "");
    assert_eq!(view.get_all().unwrap(), vec![]);
    assert_eq!(view.get(0), Err(ListError::IndexOutOfRange));
    assert_eq!(
        view.set(0, ItemRef::Int(1)),
        Err(ListError::IndexOutOfRange)
    );

    // An all-zero block (even a larger one) is an empty list, as in CPython.
    assert_eq!(ListView::attach(RawMem::zeroed(4096)).unwrap().len(), 0);
    // Too small for the header.
    for len in 0..16 {
        assert!(
            is_corrupt(ListView::attach(RawMem::zeroed(len))),
            "len {len}"
        );
    }
}

#[test]
fn str_slot_boundaries() {
    assert_eq!("encodés".len(), 8);
    assert_eq!("encodées".len(), 9);
    let view = make(&[ItemRef::Int(1), ItemRef::Str("abcdefg"), ItemRef::Int(2)]);
    assert_eq!(view.format_of(1).unwrap(), "8s");

    view.set(1, ItemRef::Str("encodés")).unwrap();
    assert_eq!(view.get(1), Ok(Value::Str("encodés".into())));

    let before = view.mem().to_vec();
    assert_eq!(
        view.set(1, ItemRef::Str("encodées")),
        Err(ListError::ExceedsStorage)
    );
    assert_eq!(
        view.set(1, ItemRef::Bytes(b"123456789")),
        Err(ListError::ExceedsStorage)
    );
    assert_eq!(view.mem().to_vec(), before);
    assert_eq!(view.get(0), Ok(Value::Int(1)));
    assert_eq!(view.get(1), Ok(Value::Str("encodés".into())));
    assert_eq!(view.get(2), Ok(Value::Int(2)));

    // A shorter value is NUL-padded over the old one.
    view.set(1, ItemRef::Str("é")).unwrap();
    assert_eq!(view.get(1), Ok(Value::Str("é".into())));
    let bytes = view.mem().to_vec();
    let slot = 8 * 5 + 8;
    assert_eq!(&bytes[slot..slot + 8], b"\xc3\xa9\0\0\0\0\0\0");
}

#[test]
fn str_slots_are_sized_by_utf8_bytes() {
    // B4: CPython sizes 'ééééé' by its 5 characters (an 8-byte slot) and
    // truncates it; here the slot holds all 10 bytes.
    let view = make(&[ItemRef::Str("ééééé"), ItemRef::Str("0\u{10000}\u{10000}")]);
    assert_eq!(view.format().unwrap(), "16s16s");
    assert_eq!(view.get(0), Ok(Value::Str("ééééé".into())));
    assert_eq!(view.get(1), Ok(Value::Str("0\u{10000}\u{10000}".into())));
    assert_eq!(encoded_size(&[ItemRef::Str("ééééé")]), Ok(8 * 3 + 16 + 9));
}

#[test]
fn non_ascii_that_fits_cpythons_slot_gets_cpythons_slot() {
    // 'encodés' is 7 characters and 8 UTF-8 bytes: CPython's 8-byte slot
    // holds it, so the layout (and format) is exactly CPython's.
    let view = make(&[ItemRef::Str("encodés"), ItemRef::Str("é")]);
    assert_eq!(view.format().unwrap(), "8s8s");
    assert_eq!(view.get(0), Ok(Value::Str("encodés".into())));
}

#[test]
fn trailing_nuls_are_stripped() {
    // CPython behaviour (B3), kept for compatibility.
    let view = make(&[
        ItemRef::Bytes(b"a\0\0"),
        ItemRef::Str("\0"),
        ItemRef::Bytes(b"\0x\0"),
    ]);
    assert_eq!(view.get(0), Ok(Value::Bytes(b"a".to_vec())));
    assert_eq!(view.get(1), Ok(Value::Str(String::new())));
    assert_eq!(view.get(2), Ok(Value::Bytes(b"\0x".to_vec())));
}

#[test]
fn failed_set_changes_nothing() {
    let view = make(&[ItemRef::Str("abc"), ItemRef::Int(5), ItemRef::Bytes(b"x")]);
    let before = view.mem().to_vec();
    let failures = [
        (0, ItemRef::Str("123456789")),
        (1, ItemRef::Str("123456789")),
        (2, ItemRef::Bytes(&[1; 9])),
        (3, ItemRef::Int(1)),
        (usize::MAX, ItemRef::None),
    ];
    for (i, item) in failures {
        assert!(view.set(i, item).is_err());
        assert_eq!(view.mem().to_vec(), before, "set({i}, {item:?})");
    }
}

#[test]
fn items_change_type() {
    let view = make(&[ItemRef::Int(7), ItemRef::Str("0123456789"), ItemRef::None]);
    // int -> str (8 bytes fit in the 8-byte int slot), with CPython's format.
    view.set(0, ItemRef::Str("abcdefgh")).unwrap();
    assert_eq!(view.get(0), Ok(Value::Str("abcdefgh".into())));
    assert_eq!(view.format_of(0).unwrap(), "8s");
    assert_eq!(
        view.set(0, ItemRef::Str("abcdefghi")),
        Err(ListError::ExceedsStorage)
    );
    // str -> int -> bytes in a 16-byte slot.
    view.set(1, ItemRef::Int(-42)).unwrap();
    assert_eq!(view.get(1), Ok(Value::Int(-42)));
    assert_eq!(view.format_of(1).unwrap(), "q");
    view.set(1, ItemRef::Bytes(b"0123456789abcdef")).unwrap();
    assert_eq!(view.get(1), Ok(Value::Bytes(b"0123456789abcdef".to_vec())));
    assert_eq!(view.format_of(1).unwrap(), "16s");
    // str -> int -> float -> bool -> None in the 8-byte slot.
    view.set(0, ItemRef::Int(i64::MIN)).unwrap();
    assert_eq!(view.get(0), Ok(Value::Int(i64::MIN)));
    view.set(0, ItemRef::Float(f64::NEG_INFINITY)).unwrap();
    assert_eq!(view.get(0), Ok(Value::Float(f64::NEG_INFINITY)));
    view.set(0, ItemRef::Bool(true)).unwrap();
    assert_eq!(view.get(0), Ok(Value::Bool(true)));
    view.set(0, ItemRef::None).unwrap();
    assert_eq!(view.get(0), Ok(Value::None));
    assert_eq!(view.format_of(0).unwrap(), "xxxxxx?x");
    // None -> str.
    view.set(2, ItemRef::Str("")).unwrap();
    assert_eq!(view.get(2), Ok(Value::Str(String::new())));
    assert_eq!(view.format().unwrap(), "xxxxxx?x16s8s");
}

#[test]
fn extreme_numbers() {
    let ints = [
        0,
        1,
        -1,
        255,
        -256,
        i64::MIN,
        i64::MIN + 1,
        i64::MAX,
        i64::MAX - 1,
    ];
    let floats = [
        0.0,
        -0.0,
        1.5,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        f64::MIN,
    ];
    let items: Vec<ItemRef> = ints
        .iter()
        .map(|&v| ItemRef::Int(v))
        .chain(floats.iter().map(|&v| ItemRef::Float(v)))
        .collect();
    let view = make(&items);
    for (i, v) in ints.iter().enumerate() {
        assert_eq!(view.get(i), Ok(Value::Int(*v)));
    }
    for (j, v) in floats.iter().enumerate() {
        match view.get(ints.len() + j).unwrap() {
            Value::Float(got) => assert_eq!(got.to_bits(), v.to_bits()),
            other => panic!("{other:?}"),
        }
    }
    // NaN, including a payload-carrying one, keeps its bits.
    let nan = f64::from_bits(0x7ff8_0000_dead_beef);
    view.set(0, ItemRef::Float(f64::NAN)).unwrap();
    assert!(matches!(view.get(0), Ok(Value::Float(x)) if x.is_nan()));
    view.set(0, ItemRef::Float(nan)).unwrap();
    assert!(matches!(view.get(0), Ok(Value::Float(x)) if x.to_bits() == nan.to_bits()));
}

#[test]
fn item_too_large() {
    let max = vec![b'x'; MAX_ITEM_BYTES];
    let over = vec![b'x'; MAX_ITEM_BYTES + 1];
    let size = encoded_size(&[ItemRef::Bytes(&max)]).unwrap();
    assert_eq!(size, 24 + 9_999_992 + 9);
    let err = encoded_size(&[ItemRef::Int(1), ItemRef::Bytes(&over)]).unwrap_err();
    assert_eq!(
        err,
        ListError::ItemTooLarge {
            index: 1,
            len: 9_999_992,
            max: 9_999_991
        }
    );
    assert!(err.to_string().contains("at most 9999991 bytes"), "{err}");
    let s = "é".repeat(5_000_000);
    assert!(matches!(
        encoded_size(&[ItemRef::Str(&s)]),
        Err(ListError::ItemTooLarge {
            index: 0,
            len: 10_000_000,
            ..
        })
    ));
    let mem = RawMem::zeroed(64);
    assert!(matches!(
        write_new(&mem, &[ItemRef::Bytes(&over)]),
        Err(ListError::ItemTooLarge { .. })
    ));
    assert_eq!(mem.to_vec(), vec![0; 64]);

    // The largest item round-trips.
    let view = make(&[ItemRef::Bytes(&max)]);
    assert_eq!(view.format().unwrap(), "9999992s");
    assert_eq!(view.get(0), Ok(Value::Bytes(max)));
}

#[test]
fn write_new_checks_space_and_writability() {
    let mem = RawMem::from_bytes(&[7; 165]);
    assert_eq!(
        write_new(&mem, &EXAMPLE),
        Err(ListError::SegmentTooSmall {
            needed: 166,
            len: 165
        })
    );
    assert_eq!(mem.to_vec(), vec![7; 165]);

    let backing = RawMem::zeroed(166);
    // SAFETY: `backing` owns 166 bytes and outlives `ro`.
    let ro = unsafe { RawMem::new_read_only(backing.as_ptr(), 166) };
    assert_eq!(write_new(&ro, &EXAMPLE), Err(ListError::ReadOnly));
    write_new(&backing, &EXAMPLE).unwrap();
    let view = ListView::attach(ro).unwrap();
    assert_eq!(view.get(1), Ok(Value::Bytes(b"ab".to_vec())));
    assert_eq!(view.set(0, ItemRef::Int(2)), Err(ListError::ReadOnly));
    assert_eq!(backing.to_vec(), bytes_of(&EXAMPLE));
}

#[test]
fn live_len_rereads_the_count() {
    let view = make(&EXAMPLE);
    assert_eq!(view.live_len(), Ok(6));
    view.mem().store_u64(0, 2).unwrap();
    assert_eq!(view.live_len(), Ok(2));
    assert_eq!(view.len(), 6);
    view.mem().store_u64(0, (-1i64) as u64).unwrap();
    assert!(is_corrupt(view.live_len()));
}

#[test]
fn hostile_headers() {
    let mut huge = vec![0u8; 4096];
    put_u64(&mut huge, 0, 1 << 40);
    assert_eq!(
        attach_bytes(&huge).unwrap_err().to_string(),
        "ShareableList header: 1099511627776 items do not fit in a 4096-byte segment"
    );

    // Counts whose 8(N+2) or 9N overflows, or that are negative as int64.
    for n in [
        i64::MAX as u64,
        1 << 61,
        (1 << 61) - 2,
        (1 << 61) - 3,
        u64::MAX,
        1 << 63,
        2047,
    ] {
        let mut buf = vec![0u8; 4096];
        put_u64(&mut buf, 0, n);
        assert!(is_corrupt(attach_bytes(&buf)), "N = {n}");
    }

    let good = bytes_of(&EXAMPLE);
    let d_at = 8 + 8 * 6;
    let cases: [(usize, u64); 6] = [
        (d_at, 44),                  // D not a multiple of 8
        (d_at, (-8i64) as u64),      // D negative
        (d_at, 56),                  // D too big for the block by 8
        (d_at, i64::MAX as u64 - 7), // D huge
        (d_at, u64::MAX - 7),        // D huge and negative
        (8, 8),                      // offsets[0] != 0
    ];
    for (off, v) in cases {
        let mut buf = good.clone();
        put_u64(&mut buf, off, v);
        assert!(is_corrupt(attach_bytes(&buf)), "{off}: {v}");
    }

    // A consistent smaller N over the same bytes is fine (N=2, D=offsets[2]=16).
    let mut buf = good.clone();
    put_u64(&mut buf, 0, 2);
    let view = attach_bytes(&buf).unwrap();
    assert_eq!(view.len(), 2);
    assert!(view.get(0).is_err()); // the formats are not where N=2 puts them
}

#[test]
fn hostile_offsets() {
    let good = bytes_of(&EXAMPLE);
    let offsets = |k: usize| 8 + 8 * k;
    let cases: [(usize, i64, &[usize]); 6] = [
        (offsets(2), 4, &[1, 2]),  // not a multiple of 8
        (offsets(2), 0, &[1]),     // decreasing: offsets[2] < offsets[1]
        (offsets(2), 56, &[1, 2]), // past D = 48
        (offsets(2), -8, &[1, 2]), // negative
        (offsets(2), i64::MIN, &[1, 2]),
        (offsets(5), 48, &[5]), // slot 5 becomes empty: too small for "d"
    ];
    for (off, v, bad_items) in cases {
        let mut buf = good.clone();
        put_u64(&mut buf, off, v as u64);
        let view = attach_bytes(&buf).unwrap();
        for &i in bad_items {
            assert!(is_corrupt(view.get(i)), "offset {off} = {v}: get({i})");
            assert!(
                is_corrupt(view.format_of(i)),
                "offset {off} = {v}: format_of({i})"
            );
            let before = view.mem().to_vec();
            assert!(view.set(i, ItemRef::Int(1)).is_err());
            assert_eq!(view.mem().to_vec(), before);
        }
        assert!(view.format().is_err());
        assert_eq!(view.get(0), Ok(Value::Int(1)));
    }
}

#[test]
fn hostile_formats_and_codes() {
    let good = bytes_of(&EXAMPLE);
    let fmt_at = |i: usize| EX_FORMATS + 8 * i;

    for junk in [
        &b"zz"[..],
        b"99s",
        b"9s",
        b"",
        b"s",
        b"q\0d",
        b"xxxxxxx!",
        b"\xff\xfe",
    ] {
        let mut buf = good.clone();
        put_fmt(&mut buf, fmt_at(1), junk);
        let view = attach_bytes(&buf).unwrap();
        let err = view.get(1).unwrap_err();
        assert!(matches!(err, ListError::Corrupt(_)), "{junk:?}");
        assert!(
            err.to_string().starts_with("ShareableList item 1: "),
            "{err}"
        );
        assert!(is_corrupt(view.format_of(1)));
        assert!(is_corrupt(view.format()));
        assert_eq!(view.get(2), Ok(Value::Str("xy".into())));
        // `set` ignores the old format and repairs the item.
        view.set(1, ItemRef::Bytes(b"ok")).unwrap();
        assert_eq!(view.get(1), Ok(Value::Bytes(b"ok".to_vec())));
    }
    let mut buf = good.clone();
    put_fmt(&mut buf, fmt_at(1), b"zz");
    assert_eq!(
        attach_bytes(&buf).unwrap().get(1).unwrap_err().to_string(),
        "ShareableList item 1: unknown format 'zz'"
    );
    put_fmt(&mut buf, fmt_at(1), b"99s");
    assert_eq!(
        attach_bytes(&buf).unwrap().get(1).unwrap_err().to_string(),
        "ShareableList item 1: format '99s' needs 99 bytes, but the slot has 8"
    );

    // A shorter "%ds" than the slot (as some patched writers store) reads
    // that many bytes.
    let mut buf = good.clone();
    put_fmt(&mut buf, fmt_at(2), b"1s");
    assert_eq!(
        attach_bytes(&buf).unwrap().get(2),
        Ok(Value::Str("x".into()))
    );

    // Codes.
    let code_cases: [(usize, u8, Option<Value>); 8] = [
        (0, 7, None),
        (0, 0xff, None),
        (0, 1, None),              // str code on "q"
        (1, 0, None),              // identity code on "8s"
        (3, 0, None),              // identity code on the None format
        (0, 3, Some(Value::None)), // code 3 means None, whatever the format
        (1, 3, Some(Value::None)),
        (1, 1, Some(Value::Str("ab".into()))), // bytes read as str
    ];
    for (i, code, expect) in code_cases {
        let mut buf = good.clone();
        buf[EX_CODES + i] = code;
        let view = attach_bytes(&buf).unwrap();
        match expect {
            Some(v) => assert_eq!(view.get(i), Ok(v)),
            None => assert!(is_corrupt(view.get(i)), "item {i} code {code}"),
        }
        // The format is still readable.
        assert!(view.format_of(i).is_ok());
    }
    let mut buf = good.clone();
    buf[EX_CODES] = 7;
    assert_eq!(
        attach_bytes(&buf).unwrap().get(0).unwrap_err().to_string(),
        "ShareableList item 0: back-transform code 7 is not 0, 1, 2 or 3"
    );
}

#[test]
fn invalid_utf8_str() {
    let mut buf = bytes_of(&EXAMPLE);
    buf[EX_DATA + 16..EX_DATA + 18].copy_from_slice(b"\xffy");
    let view = attach_bytes(&buf).unwrap();
    let err = view.get(2).unwrap_err();
    match &err {
        ListError::Utf8 {
            index,
            bytes,
            error,
        } => {
            assert_eq!(*index, 2);
            assert_eq!(bytes, b"\xffy");
            assert_eq!(error.valid_up_to(), 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
    );
}

#[test]
fn truncated_blocks() {
    let good = bytes_of(&EXAMPLE);
    for len in 0..good.len() {
        assert!(is_corrupt(attach_bytes(&good[..len])), "len {len}");
    }
    assert!(attach_bytes(&good).is_ok());
}

#[test]
fn error_messages() {
    assert_eq!(ListError::IndexOutOfRange.to_string(), "index out of range");
    assert_eq!(
        ListError::ExceedsStorage.to_string(),
        "bytes/str item exceeds available storage"
    );
    assert_eq!(
        ListError::ReadOnly.to_string(),
        "cannot modify read-only memory"
    );
    let e: Box<dyn std::error::Error> = Box::new(ListError::SegmentTooSmall { needed: 16, len: 8 });
    assert_eq!(
        e.to_string(),
        "ShareableList needs 16 bytes, but the shared memory has only 8"
    );
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The reader's fast path against its slow path, for item `i` of `view`
/// (nobody writes concurrently here): a fast-path value is the slow path's,
/// and where the fast path hands over the slow path fails. `get` gives the
/// same as the slow path either way. Returns whether the fast path read it.
fn paths_agree(view: &ListView, i: usize) -> bool {
    // Floats by their bits: a NaN read twice is the same read.
    fn key(r: &Result<Value, ListError>) -> Result<Result<Value, u64>, ListError> {
        match r {
            Ok(Value::Float(f)) => Ok(Err(f.to_bits())),
            Ok(v) => Ok(Ok(v.clone())),
            Err(e) => Err(e.clone()),
        }
    }
    let (fast, slow) = view.read_both_paths(i);
    assert_eq!(
        key(&view.get(i)),
        key(&slow),
        "item {i}: get and the slow path differ"
    );
    match fast {
        Some(fast) => {
            assert_eq!(key(&fast), key(&slow), "item {i}: the paths differ");
            true
        }
        None => {
            assert!(slow.is_err(), "item {i}: only the slow path read {slow:?}");
            false
        }
    }
}

/// `set` against its slow path: the same result and the same bytes, on two
/// copies of the block.
fn set_paths_agree(view: &ListView, i: usize, item: ItemRef<'_>) {
    let twin = ListView::attach(RawMem::from_bytes(&view.mem().to_vec())).unwrap();
    let slow = twin.set_slow_path(i, item);
    let fast = view.set(i, item);
    assert_eq!(fast, slow, "set({i}, {item:?})");
    assert_eq!(
        view.mem().to_vec(),
        twin.mem().to_vec(),
        "set({i}, {item:?})"
    );
}

/// Everything a binding might do with a block; it may fail but must not
/// panic, and a failed `set` must leave the bytes alone. Both paths of the
/// reader and of `set` agree on every item.
/// Returns how many items the fast path read.
fn exercise(bytes: &[u8], rng: &mut Rng) -> usize {
    let Ok(view) = attach_bytes(bytes) else {
        return 0;
    };
    let _ = view.live_len();
    let mut fast = 0;
    for i in 0..=view.len().min(64) {
        fast += usize::from(paths_agree(&view, i));
        let _ = view.format_of(i);
    }
    let _ = view.format();
    let _ = view.get_all();
    let writes = [
        ItemRef::Int(-5),
        ItemRef::Str("héllo"),
        ItemRef::Bytes(b"12345678"),
        ItemRef::None,
    ];
    for i in 0..view.len().min(16) {
        let before = view.mem().to_vec();
        let item = writes[rng.below(writes.len())];
        set_paths_agree(&view, i, item);
        view.mem().write_from(0, &before).unwrap();
        match view.set(i, item) {
            Ok(()) => assert_eq!(view.get(i).map(|v| v.as_item() == item), Ok(true)),
            Err(_) => assert_eq!(view.mem().to_vec(), before),
        }
    }
    fast
}

#[test]
fn random_corruption_never_panics() {
    let items = [
        ItemRef::Int(5),
        ItemRef::Str("hello world"),
        ItemRef::Bytes(b"\x00abc"),
        ItemRef::None,
        ItemRef::Bool(true),
        ItemRef::Float(-1.5),
        ItemRef::Str(""),
        ItemRef::Int(i64::MIN),
        ItemRef::Bytes(b"0123456789abcdefg"),
        ItemRef::Str("encodés"),
    ];
    let base = bytes_of(&items);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut attached = 0;
    let mut fast = 0;
    for _ in 0..20_000 {
        let mut buf = base.clone();
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(buf.len());
            buf[pos] = match rng.below(4) {
                0 => rng.next() as u8,
                1 => buf[pos] ^ (1 << rng.below(8)),
                2 => 0xff,
                _ => rng.below(12) as u8,
            };
        }
        match rng.below(10) {
            0 => buf.truncate(rng.below(buf.len())),
            1 => buf.extend(std::iter::repeat_n(0, rng.below(64))),
            _ => {}
        }
        attached += usize::from(attach_bytes(&buf).is_ok());
        fast += exercise(&buf, &mut rng);
    }
    // Most single-byte corruptions leave the header consistent, so the loop
    // really exercises get/set/format, not just attach, and most items on
    // the fast path.
    assert!(attached > 10_000, "{attached}");
    assert!(fast > 5 * attached, "{fast} of {attached}");
}

#[test]
fn random_structured_blocks_never_panic() {
    // Small N, offsets and D drawn near valid values, formats from the
    // vocabulary plus junk, codes 0..6: reaches the deep checks of `get`.
    let formats: [&[u8]; 9] = [
        b"q",
        b"d",
        b"xxxxxxx?",
        b"xxxxxx?x",
        b"8s",
        b"16s",
        b"0s",
        b"24s",
        b"z",
    ];
    let mut rng = Rng(12345);
    let mut values = 0;
    let mut fast = 0;
    for _ in 0..20_000 {
        let n = rng.below(6);
        let mut offsets = vec![0usize];
        for _ in 0..n {
            let step = 8 * rng.below(3) + if rng.below(20) == 0 { rng.below(8) } else { 0 };
            offsets.push(offsets.last().unwrap() + step);
        }
        let data_len = offsets[n];
        let size = 8 * (n + 2) + data_len + 9 * n + rng.below(3);
        let mut buf = vec![0u8; size.max(16)];
        put_u64(&mut buf, 0, n as u64);
        for (k, off) in offsets.iter().enumerate() {
            put_u64(&mut buf, 8 + 8 * k, *off as u64);
        }
        let data_start = 8 * (n + 2);
        for b in &mut buf[data_start..data_start + data_len] {
            *b = if rng.below(2) == 0 {
                0
            } else {
                rng.next() as u8
            };
        }
        for i in 0..n {
            let at = data_start + data_len + 8 * i;
            if at + 8 <= buf.len() {
                put_fmt(&mut buf, at, formats[rng.below(formats.len())]);
            }
            let code_at = data_start + data_len + 8 * n + i;
            if code_at < buf.len() {
                buf[code_at] = rng.below(6) as u8;
            }
        }
        if let Ok(view) = attach_bytes(&buf) {
            values += view.get_all().map_or(0, |v| v.len());
        }
        fast += exercise(&buf, &mut rng);
    }
    assert!(values > 500, "{values}");
    assert!(fast > 5_000, "{fast}");
}

#[test]
fn concurrent_writer_and_reader() {
    let view = Arc::new(make(&[ItemRef::Int(0), ItemRef::Str("abcdefgh")]));
    let writer = {
        let view = Arc::clone(&view);
        std::thread::spawn(move || {
            for k in 0..20_000i64 {
                if k % 2 == 0 {
                    view.set(0, ItemRef::Int(k % 100)).unwrap();
                } else {
                    view.set(0, ItemRef::Str("xyz")).unwrap();
                }
            }
        })
    };
    for _ in 0..20_000 {
        match view.get(0) {
            Ok(Value::Int(_) | Value::Str(_))
            | Err(ListError::Corrupt(_) | ListError::Utf8 { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(view.get(1), Ok(Value::Str("abcdefgh".into())));
    }
    writer.join().unwrap();
}
