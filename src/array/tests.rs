use std::sync::Arc;

use super::*;
use crate::segment::{self, OpenOptions, Segment};

/// A fresh name, as Python reports names (no leading `/`).
fn unique(tag: &str) -> String {
    let os = segment::random_name(&segment::os_name(&format!("fshm_tarr{tag}_")), 28).unwrap();
    segment::reported_name(&os).to_owned()
}

/// Descriptions as NumPy 2.4 writes them (`repr(dtype_to_descr(dtype))`),
/// with the item sizes NumPy gives.
const NUMPY_DESCRS: &[(&str, usize)] = &[
    ("'<f8'", 8),
    ("'>i4'", 4),
    ("'|b1'", 1),
    ("'|u1'", 1),
    ("'<f2'", 2),
    ("'<f16'", 16),
    ("'<c16'", 16),
    ("'|S5'", 5),
    ("'|S0'", 0),
    ("'<U3'", 12),
    ("'|V7'", 7),
    ("'<M8'", 8),
    ("'<M8[ns]'", 8),
    ("'<m8[3D]'", 8),
    ("'<M8[10ns]'", 8),
    ("[]", 0),
    (
        "[(('title A', 'a'), '<f8'), ('s', '|S5'), ('u', '<U3'), ('m', '<M8[10ns]'), \
         ('n', [('x', '<i2', (2, 3))]), ('v', '|V7'), ('b', '|b1'), ('c', '<c16'), \
         ('h', '<f2'), ('g', '<f16')]",
        87,
    ),
    (
        "[('a', '|u1'), ('', '|V3'), ('n', [('x', '|u1'), ('', '|V3'), ('y', '<i4')])]",
        12,
    ),
    ("[('x', '<f4', (4,))]", 16),
    ("[('it\\'s', '<i8'), ('caf\u{e9}\\n', '|u1')]", 9),
];

#[test]
fn numpy_descriptions_parse_with_their_item_sizes_and_print_back() {
    for &(text, itemsize) in NUMPY_DESCRS {
        let descr = Descr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(descr.itemsize(), Some(itemsize), "{text}");
        assert_eq!(descr.to_text(), text, "printed back");
        assert_eq!(Descr::parse(&descr.to_text()).unwrap(), descr);
    }
}

#[test]
fn python_literal_variants_parse_to_the_same_description() {
    let canonical = Descr::parse("[('x', '<f4', (2,)), (('t', 'y'), '<i8')]").unwrap();
    for variant in [
        "[ ( 'x' , \"<f4\" , ( 2 , ) ) , ( ( 't' , 'y' ) , '<i8' , ) , ]",
        "[('x', '<f4', 2), (('t', 'y'), '<i8')]",
        "[('x', '<f4', (2)), (('t', 'y',), '<i8')]",
        "\n[('\\x78', '<f4', (2,)), (('\\u0074', '\\U00000079'), '<i8')]\n",
    ] {
        assert_eq!(Descr::parse(variant).unwrap(), canonical, "{variant}");
    }
    let Descr::Struct(fields) = Descr::parse("[('a\\tb\\\\\\'\\x00', '|u1')]").unwrap() else {
        panic!("not a struct")
    };
    assert_eq!(fields[0].name, "a\tb\\'\0");
    // Control characters are escaped when printed, so the text stays one
    // line of Python.
    assert_eq!(
        Descr::Struct(fields).to_text(),
        "[('a\\tb\\\\\\'\\x00', '|u1')]"
    );
}

#[test]
fn bad_descriptions_are_errors() {
    let deep = format!("{}'<f8'{}", "[('a', ".repeat(40), ")]".repeat(40));
    for bad in [
        "",
        "'<f8",
        "'<f8' x",
        "<f8",
        "'<O'",
        "'|O8'",
        "'=f8'",
        "'|i4'",
        "'<i3'",
        "'<f9'",
        "'<U'",
        "'<U-1'",
        "'<U01'",
        "'<S99999999999999999999'",
        "'<U4611686018427387904'",
        "'<M8[xs]'",
        "'<M8[0ns]'",
        "'<M8[ns'",
        "'<f8[ns]'",
        "'<Q8'",
        "[('a', '<f8'), ('a', '<i4')]",
        "[(('a', 'b'), '<f8'), ('a', '<i4')]",
        "[('', '<f8')]",
        "[('a')]",
        "[('a', '<f8', (2, -1))]",
        "[('a', '<f8', (2,) 3)]",
        "[('a', '<f8' (2,))]",
        "[('a', '<f8'),,]",
        "[('a', '<f8')",
        "[('a\n', '<f8')]",
        "[('a', '<f8', (9223372036854775807, 2))]",
        "[('\\q', '<f8')]",
        "[('\\ud800', '<f8')]",
        "b'<f8'",
        "{'descr': '<f8'}",
        &deep,
    ] {
        match Descr::parse(bad) {
            Err(ArrayError::Descr(_)) => {}
            Ok(d) if d.itemsize().is_none() => {}
            other => panic!("{bad:?}: expected a description error, got {other:?}"),
        }
    }
    let object = Descr::parse("[('a', '|O')]").unwrap_err().to_string();
    assert!(object.contains("object dtype"), "{object}");
}

fn header(text: &str, shape: &[usize], order: Order) -> ArrayHeader {
    ArrayHeader::new(Descr::parse(text).unwrap(), shape, order).unwrap()
}

#[test]
fn header_layout_is_as_documented() {
    let h = header("'<f8'", &[1000], Order::C);
    assert_eq!(h.header_len(), 48 + 8 + 5);
    assert_eq!(h.data_offset(), 64);
    assert_eq!(h.nbytes(), 8000);
    assert_eq!(h.segment_len(), 8064);
    let bytes = h.encode();
    assert_eq!(&bytes[..8], b"\x93FSHMARR");
    assert_eq!(&bytes[8..12], &[1, 0, 0, 0]); // version 1, flags 0
    assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 61);
    assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 64);
    assert_eq!(u64::from_le_bytes(bytes[24..32].try_into().unwrap()), 8000);
    assert_eq!(u64::from_le_bytes(bytes[32..40].try_into().unwrap()), 8);
    assert_eq!(&bytes[40..48], &[1, 0, 0, 0, 5, 0, 0, 0]); // ndim 1, reserved, descr 5
    assert_eq!(u64::from_le_bytes(bytes[48..56].try_into().unwrap()), 1000);
    assert_eq!(&bytes[56..], b"'<f8'");

    let f = header(
        "[('a', '|u1'), ('', '|V3'), ('b', '<i4')]",
        &[2, 3, 4],
        Order::Fortran,
    )
    .with_aligned_struct(true)
    .unwrap();
    let bytes = f.encode();
    assert_eq!(u16::from_le_bytes([bytes[10], bytes[11]]), 3);
    assert_eq!(f.data_offset() % DATA_ALIGN, 0);
    assert!(f.data_offset() >= f.header_len());
    assert_eq!(ArrayHeader::decode(&bytes, f.segment_len()).unwrap(), f);
    assert!(header("'<f8'", &[], Order::C)
        .with_aligned_struct(true)
        .is_err());
}

#[test]
fn headers_round_trip_for_every_description() {
    for &(text, itemsize) in NUMPY_DESCRS {
        for (shape, order) in [
            (vec![], Order::C),
            (vec![0], Order::C),
            (vec![3, 0, 5], Order::Fortran),
            (vec![7, 2], Order::Fortran),
        ] {
            let h = header(text, &shape, order);
            assert_eq!(h.itemsize(), itemsize);
            let decoded = ArrayHeader::decode(&h.encode(), h.segment_len()).unwrap();
            assert_eq!(decoded, h, "{text} {shape:?}");
        }
    }
}

#[test]
fn impossible_shapes_are_refused() {
    let d = || Descr::parse("'<f8'").unwrap();
    assert!(ArrayHeader::new(d(), &[1; 65], Order::C).is_err());
    assert!(ArrayHeader::new(d(), &[1; 64], Order::C).is_ok());
    assert!(ArrayHeader::new(d(), &[1 << 61], Order::C).is_err());
    assert!(ArrayHeader::new(d(), &[1 << 30, 1 << 30, 16], Order::C).is_err());
    // An empty array's other dimensions must still multiply (as in NumPy).
    assert!(ArrayHeader::new(d(), &[0, 1 << 40, 1 << 40], Order::C).is_err());
    assert_eq!(
        ArrayHeader::new(d(), &[0, 1 << 40], Order::C)
            .unwrap()
            .nbytes(),
        0
    );
}

/// Decoding `bytes` claimed to start a segment of `len` bytes: an error, or
/// a header whose data lies inside the segment, with consistent sizes.
fn decode_is_safe(bytes: &[u8], len: usize) {
    if let Ok(h) = ArrayHeader::decode(bytes, len) {
        assert!(h.data_offset() + h.nbytes() <= len);
        assert!(h.header_len() <= h.data_offset());
        assert_eq!(h.data_offset() % DATA_ALIGN, 0);
        assert_eq!(Some(h.itemsize()), h.descr().itemsize());
        let count = h.shape().iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        assert_eq!(count.map(|c| c * h.itemsize()), Some(h.nbytes()));
    }
}

#[test]
fn corrupt_headers_are_errors() {
    let h = header("[('x', '<f4', (2,)), ('y', '<M8[ns]')]", &[4, 5], Order::C);
    let good = h.encode();
    let len = h.segment_len();
    ArrayHeader::decode(&good, len).unwrap();
    // Every truncation, every segment size below what the data needs.
    for cut in 0..good.len() {
        assert!(ArrayHeader::decode(&good[..cut], len).is_err(), "cut {cut}");
    }
    for small in [0, 47, 48, good.len(), h.data_offset(), len - 1] {
        assert!(ArrayHeader::decode(&good, small).is_err(), "len {small}");
    }
    // Every byte changed to a few values: never a panic, never a header
    // whose data leaves the segment.
    for at in 0..good.len() {
        for value in [0u8, 1, 0x7f, 0x80, 0xff, good[at] ^ 1] {
            let mut bad = good.clone();
            bad[at] = value;
            decode_is_safe(&bad, len);
        }
    }
    let with = |at: usize, bytes: &[u8]| {
        let mut bad = good.clone();
        bad[at..at + bytes.len()].copy_from_slice(bytes);
        ArrayHeader::decode(&bad, len).unwrap_err()
    };
    let plain = header("'<f8'", &[3], Order::C).encode();
    let mut aligned_plain = plain.clone();
    aligned_plain[10] = FLAG_ALIGNED_STRUCT as u8;
    assert!(ArrayHeader::decode(&plain, 4096).is_ok());
    assert!(matches!(
        ArrayHeader::decode(&aligned_plain, 4096),
        Err(ArrayError::Corrupt(_))
    ));
    assert!(matches!(
        with(0, b"\x93FSHMARX"),
        ArrayError::NotAnArray { .. }
    ));
    assert!(matches!(
        with(8, &2u16.to_le_bytes()),
        ArrayError::UnsupportedVersion(2)
    ));
    for (at, bytes) in [
        (10, &4u16.to_le_bytes()[..]),                         // unknown flag
        (16, &(h.data_offset() as u64 + 1).to_le_bytes()[..]), // misaligned data
        (16, &0u64.to_le_bytes()[..]),                         // data over the header
        (16, &u64::MAX.to_le_bytes()[..]),
        (24, &(h.nbytes() as u64 + 1).to_le_bytes()[..]),
        (32, &9u64.to_le_bytes()[..]),
        (42, &1u16.to_le_bytes()[..]),
        (48, &5u64.to_le_bytes()[..]), // shape 5x5: more data than nbytes says
        (48, &(1u64 << 62).to_le_bytes()[..]),
    ] {
        let err = with(at, bytes);
        assert!(
            matches!(err, ArrayError::Corrupt(_)),
            "at {at}: expected Corrupt, got {err:?}"
        );
    }
}

/// A small deterministic generator (xorshift), so the test needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_headers_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let h = header("[('a', '<i8'), ('b', '|S3', (2,))]", &[3, 2], Order::C);
    let good = h.encode();
    for _ in 0..20_000 {
        let mut bytes = good.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() as usize) % bytes.len();
            bytes[at] = rng.next() as u8;
        }
        let len = (rng.next() as usize) % (2 * h.segment_len());
        decode_is_safe(&bytes, len);
        // Pure noise after a good magic.
        let mut noise: Vec<u8> = (0..(rng.next() % 200) as usize)
            .map(|_| rng.next() as u8)
            .collect();
        if noise.len() >= 8 {
            noise[..8].copy_from_slice(&MAGIC);
        }
        decode_is_safe(&noise, len);
    }
}

#[test]
fn create_attach_and_typed_access() {
    let name = unique("a");
    let made = SharedArray::create_of::<i32>(&name, &[3, 4]).unwrap();
    assert_eq!(made.name(), name);
    assert_eq!(made.data_ptr() as usize % DATA_ALIGN, 0);
    let view = made.typed::<i32>().unwrap();
    assert_eq!(view.len(), 12);
    assert_eq!(view.to_vec(), vec![0; 12]);
    view.copy_from(&(0..12).collect::<Vec<i32>>()).unwrap();

    let other = SharedArray::open(&name).unwrap();
    assert_eq!(other.header(), made.header());
    let v = other.typed::<i32>().unwrap();
    assert_eq!(v.get_at(&[2, 1]).unwrap(), 9); // C order: 2 * 4 + 1
    v.set_at(&[1, 3], -7).unwrap();
    assert_eq!(view.get(7).unwrap(), -7);
    let mut out = [0i32; 12];
    v.copy_to(&mut out).unwrap();
    assert_eq!(out[7], -7);
    assert!(matches!(
        v.get(12),
        Err(ArrayError::OutOfBounds { index: 12, len: 12 })
    ));
    assert!(v.get_at(&[3, 0]).is_err());
    assert!(v.get_at(&[0]).is_err());
    assert!(v.copy_from(&[1, 2]).is_err());
    let err = other.typed::<f32>().unwrap_err();
    assert_eq!(err.to_string(), "the array's items are '<i4', not <f4");

    let mut bytes = [0u8; 4];
    other.read_bytes(28, &mut bytes).unwrap();
    assert_eq!(i32::from_ne_bytes(bytes), -7);
    assert!(other.read_bytes(46, &mut bytes).is_err());
    other.write_bytes(0, &5i32.to_ne_bytes()).unwrap();
    assert_eq!(view.get(0).unwrap(), 5);

    let read_only = SharedArray::open_read_only(&name).unwrap();
    let r = read_only.typed::<i32>().unwrap();
    assert_eq!(r.get(0).unwrap(), 5);
    assert!(matches!(r.set(0, 1), Err(ArrayError::ReadOnly)));
    assert!(matches!(
        read_only.write_bytes(0, &[0]),
        Err(ArrayError::ReadOnly)
    ));
    // SAFETY: nothing writes the array while the slice is used.
    let slice = unsafe { r.as_slice() };
    assert_eq!(slice[1..4], [1, 2, 3]);

    made.unlink().unwrap();
    if cfg!(unix) {
        // Gone for new attaches (on Windows a section lives while any handle
        // does, and unlink does nothing).
        let gone = SharedArray::open(&name).unwrap_err();
        assert_eq!(gone.raw_os_error(), Some(segment::ERR_NOT_FOUND));
    }
    // Mappings outlive the name.
    assert_eq!(v.get(7).unwrap(), -7);
}

#[test]
fn fortran_order_indexes_column_major() {
    let name = unique("f");
    let h = header("'<f8'", &[2, 3], Order::Fortran);
    let a = SharedArray::create(&name, h).unwrap();
    let v = a.typed::<f64>().unwrap();
    v.copy_from(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    // Column-major: element [i, j] is at i + 2 * j.
    assert_eq!(v.get_at(&[1, 2]).unwrap(), 5.0);
    assert_eq!(v.get_at(&[0, 1]).unwrap(), 2.0);
    assert_eq!(v.flat_index(&[1, 0]).unwrap(), 1);
    a.unlink().unwrap();
}

#[test]
fn segments_without_a_valid_header_are_refused() {
    let name = unique("n");
    let os = segment::os_name(&name);
    // Too small for a header, then big enough but zero-filled.
    for size in [16, 4096] {
        let seg = Segment::create(&os, size).unwrap();
        let err = SharedArray::open(&name).unwrap_err();
        // The size an attach sees (Windows rounds it up to whole pages).
        let seen = if cfg!(windows) {
            size.next_multiple_of(4096)
        } else {
            size
        };
        assert!(
            matches!(err, ArrayError::NotAnArray { len } if len == seen),
            "{err:?}"
        );
        seg.unlink().unwrap();
    }
    // A header claiming a huge description and shape in a small segment:
    // refused without copying more than the segment holds.
    let seg = Arc::new(Segment::create(&os, 4096).unwrap());
    let mut bytes = header("'<f8'", &[10], Order::C).encode();
    bytes[40..42].copy_from_slice(&u16::MAX.to_le_bytes());
    bytes[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
    seg.write_at(0, &bytes);
    assert!(matches!(
        SharedArray::attach(seg.clone()),
        Err(ArrayError::Corrupt(_))
    ));
    // A header whose data would end beyond the segment.
    let big = header("'<f8'", &[1000], Order::C);
    seg.write_at(0, &big.encode());
    assert!(matches!(
        SharedArray::attach(seg.clone()),
        Err(ArrayError::Corrupt(_))
    ));
    // Writing it there fails the same way, before anything is written.
    assert!(matches!(
        SharedArray::write_new(seg.clone(), big),
        Err(ArrayError::Shape(_))
    ));
    seg.unlink().unwrap();
}

#[test]
fn create_under_a_taken_name_is_eexist_and_keeps_the_original() {
    let name = unique("e");
    let first = SharedArray::create_of::<u8>(&name, &[8]).unwrap();
    first.typed::<u8>().unwrap().set(0, 9).unwrap();
    let err = SharedArray::create_of::<u8>(&name, &[8]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(segment::ERR_EXISTS));
    let again = SharedArray::open(&name).unwrap();
    assert_eq!(again.typed::<u8>().unwrap().get(0).unwrap(), 9);
    first.unlink().unwrap();
}

#[test]
fn a_header_is_written_magic_last_into_an_opened_segment() {
    let name = unique("w");
    let os = segment::os_name(&name);
    let seg = Arc::new(Segment::open_with(&os, &OpenOptions::create(4096)).unwrap());
    let h = header("'|u1'", &[100], Order::C);
    let a = SharedArray::write_new(seg.clone(), h).unwrap();
    assert_eq!(a.header().data_offset(), 64);
    let mut magic = [0u8; 8];
    seg.read_at(0, &mut magic);
    assert_eq!(magic, MAGIC);
    assert_eq!(SharedArray::attach(seg.clone()).unwrap().shape(), &[100]);
    seg.unlink().unwrap();
}
