//! Fuzz the ShareableList reader (`ferroshm::list::ListView`) against
//! corrupt, truncated and hostile blocks, with guard pages.
//!
//! Every input is copied into an anonymous mapping so that it ends right at
//! a `PROT_NONE` page (within the 0-7 bytes that keep its start 8-aligned),
//! with another `PROT_NONE` page below the mapped area: any read or write
//! past either end of the block is a SIGSEGV, reported with the input that
//! caused it. Bytes between the block and the guards are a canary that must
//! not change.
//!
//! Checked for every input: `attach` either fails or describes a layout that
//! fits; every read either fails or returns a value no longer than the
//! block; reading changes no byte; a successful `set` reads back; writing
//! changes nothing past the layout the header described; a panic or fault
//! is a failure. After reading, the header is rewritten under the attached
//! view (a hostile peer) and everything is read again.
//!
//! The reader's fast path (loads at header positions `attach` validated,
//! without re-checking their range) is checked against its slow path (every
//! access range-checked) on every item, before and after the hostile
//! rewrites: the same value, or the slow path fails where the fast path
//! hands over to it. Every `set` is checked the same way against a twin
//! block written by the slow path alone: the same result, the same bytes.
//! Debug assertions are on (see Cargo.toml), so the fast path's accessors
//! also assert their contract.
//!
//! Usage: `list_reader [ITERATIONS] [SEED]` (defaults: 200000, from the
//! clock). Prints one JSON line of figures; exits non-zero on a failure.

use std::cell::RefCell;
use std::io::Write;

use ferroshm::list::{encoded_size, write_new, ItemRef, ListError, ListView, RawMem, Value};

const PAGE: usize = 4096;
const CANARY: u8 = 0xA5;

// --- a small deterministic random source (xorshift64*) ----------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// --- guarded blocks -----------------------------------------------------------

struct Guarded {
    base: *mut u8,
    total: usize,
    body_start: *mut u8,
    body_end: *mut u8,
    block: *mut u8,
    len: usize,
}

impl Guarded {
    fn new(bytes: &[u8]) -> Guarded {
        let len = bytes.len();
        let rounded = len.div_ceil(8) * 8;
        let body_pages = rounded.div_ceil(PAGE).max(1);
        let total = (body_pages + 2) * PAGE;
        // SAFETY: a fresh private anonymous mapping; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(base != libc::MAP_FAILED, "mmap failed");
        let base = base.cast::<u8>();
        // SAFETY: both ranges are whole pages inside the mapping just made.
        unsafe {
            assert_eq!(libc::mprotect(base.cast(), PAGE, libc::PROT_NONE), 0);
            assert_eq!(
                libc::mprotect(
                    base.add((body_pages + 1) * PAGE).cast(),
                    PAGE,
                    libc::PROT_NONE
                ),
                0
            );
        }
        // SAFETY: offsets inside the mapping.
        let (body_start, body_end) = unsafe { (base.add(PAGE), base.add((body_pages + 1) * PAGE)) };
        // SAFETY: `rounded <= body_pages * PAGE`, so the block is inside the body.
        let block = unsafe { body_end.sub(rounded) };
        // SAFETY: the body is writable and `block..block+len` lies inside it.
        unsafe {
            std::ptr::write_bytes(body_start, CANARY, body_pages * PAGE);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), block, len);
        }
        Guarded {
            base,
            total,
            body_start,
            body_end,
            block,
            len,
        }
    }

    fn mem(&self) -> RawMem {
        // SAFETY: `block` is valid for `len` bytes of reads and writes for as
        // long as `self` lives, and every RawMem made here is dropped before
        // `self` (they live inside `exercise`, which owns `self`).
        unsafe { RawMem::new(self.block, self.len) }
    }

    fn contents(&self) -> Vec<u8> {
        // SAFETY: `block..block+len` is mapped and readable.
        unsafe { std::slice::from_raw_parts(self.block, self.len).to_vec() }
    }

    fn canary_intact(&self) -> bool {
        // SAFETY: both ranges lie inside the readable body.
        unsafe {
            let below = self.block.offset_from(self.body_start) as usize;
            let above_start = self.block.add(self.len);
            let above = self.body_end.offset_from(above_start) as usize;
            std::slice::from_raw_parts(self.body_start, below)
                .iter()
                .all(|&b| b == CANARY)
                && std::slice::from_raw_parts(above_start, above)
                    .iter()
                    .all(|&b| b == CANARY)
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`, no longer used.
        unsafe {
            libc::munmap(self.base.cast(), self.total);
        }
    }
}

// --- reporting the input behind a crash ---------------------------------------

const MAX_INPUT: usize = 1 << 14;
static mut CURRENT: [u8; MAX_INPUT] = [0; MAX_INPUT];
static mut CURRENT_LEN: usize = 0;

fn remember(input: &[u8]) {
    let n = input.len().min(MAX_INPUT);
    // SAFETY: single-threaded program; the signal handler only reads these.
    unsafe {
        let dst = std::ptr::addr_of_mut!(CURRENT).cast::<u8>();
        std::ptr::copy_nonoverlapping(input.as_ptr(), dst, n);
        *std::ptr::addr_of_mut!(CURRENT_LEN) = n;
    }
}

extern "C" fn on_fault(sig: libc::c_int) {
    // Async-signal-safe: only write(2) of static data, then die by the signal.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let msg = b"\nlist_reader: fault (SIGSEGV/SIGBUS) outside the block; input hex:\n";
    // SAFETY: write(2) of valid buffers; the statics are not being written
    // (the main thread is stopped in the faulting access).
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        let n = *std::ptr::addr_of!(CURRENT_LEN);
        let src = std::ptr::addr_of!(CURRENT).cast::<u8>();
        for i in 0..n {
            let b = *src.add(i);
            let pair = [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]];
            libc::write(2, pair.as_ptr().cast(), 2);
        }
        libc::write(2, b"\n".as_ptr().cast(), 1);
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// --- inputs -----------------------------------------------------------------------

const WORDS: &[i64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    15,
    16,
    17,
    255,
    256,
    4095,
    4096,
    4097,
    0x7fff_ffff,
    0x8000_0000,
    1 << 32,
    1 << 40,
    1 << 48,
    1 << 56,
    1 << 62,
    i64::MAX,
    -1,
    -2,
    -8,
    i32::MIN as i64,
    i64::MIN,
];
const FORMATS: &[&[u8]] = &[
    b"q",
    b"d",
    b"xxxxxxx?",
    b"xxxxxx?x",
    b"8s",
    b"16s",
    b"0s",
    b"1s",
    b"7s",
    b"9s",
    b"-8s",
    b"9999999s",
    b"99999999",
    b"s",
    b"8",
    b"8S",
    b"8p",
    b"Q",
    b"i",
    b"?",
    b"q\0\0\0x",
    b" 8s",
    b"+8s",
    b"08s",
    b"1e3s",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
];

fn word(rng: &mut Rng) -> [u8; 8] {
    match rng.below(4) {
        0 => WORDS[rng.below(WORDS.len())].to_ne_bytes(),
        1 => rng.next().to_ne_bytes(),
        2 => {
            let f = FORMATS[rng.below(FORMATS.len())];
            let mut w = [0u8; 8];
            w[..f.len().min(8)].copy_from_slice(&f[..f.len().min(8)]);
            w
        }
        _ => (rng.below(64) as i64 * 8).to_ne_bytes(),
    }
}

fn random_item(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Int(if rng.chance(50) {
            WORDS[rng.below(WORDS.len())]
        } else {
            rng.next() as i64
        }),
        1 => Value::Float(f64::from_bits(rng.next())),
        2 => Value::Bool(rng.chance(50)),
        3 => Value::None,
        4 => {
            let n = rng.below(30);
            let s: String = (0..n)
                .map(|_| match rng.below(4) {
                    0 => 'é',
                    1 => '\u{10000}',
                    2 => '\0',
                    _ => char::from(b'a' + rng.below(26) as u8),
                })
                .collect();
            Value::Str(s)
        }
        _ => {
            let n = rng.below(30);
            Value::Bytes(rng.bytes(n))
        }
    }
}

/// What reading `item` back gives (trailing NULs dropped, as CPython does).
fn read_back(item: &ItemRef<'_>) -> Value {
    match *item {
        ItemRef::Int(v) => Value::Int(v),
        ItemRef::Float(v) => Value::Float(v),
        ItemRef::Bool(v) => Value::Bool(v),
        ItemRef::None => Value::None,
        ItemRef::Str(s) => Value::Str(s.trim_end_matches('\0').to_owned()),
        ItemRef::Bytes(b) => {
            let end = b.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
            Value::Bytes(b[..end].to_vec())
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn encode(items: &[Value]) -> Vec<u8> {
    let refs: Vec<ItemRef<'_>> = items.iter().map(Value::as_item).collect();
    let size = encoded_size(&refs).expect("small lists fit");
    let mem = RawMem::zeroed(size);
    write_new(&mem, &refs).expect("valid list");
    mem.to_vec()
}

fn mutate(rng: &mut Rng, mut buf: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 | 1 if buf.len() >= 8 => {
                // Header words most of the time, anywhere otherwise.
                let words = buf.len() / 8;
                let k = if rng.chance(60) {
                    rng.below(words.min(4))
                } else {
                    rng.below(words)
                };
                buf[8 * k..8 * k + 8].copy_from_slice(&word(rng));
            }
            2 if !buf.is_empty() => {
                let i = rng.below(buf.len());
                buf[i] = rng.next() as u8;
            }
            3 if !buf.is_empty() => {
                let cut = rng.below(buf.len());
                buf.truncate(cut);
            }
            4 => {
                let n = 1 + rng.below(64);
                buf.extend(rng.bytes(n));
            }
            _ => {
                // A whole format word of an item.
                if buf.len() >= 8 {
                    let words = buf.len() / 8;
                    let k = words - 1 - rng.below(words.min(12));
                    let f = FORMATS[rng.below(FORMATS.len())];
                    let mut w = [0u8; 8];
                    w[..f.len().min(8)].copy_from_slice(&f[..f.len().min(8)]);
                    buf[8 * k..8 * k + 8].copy_from_slice(&w);
                }
            }
        }
    }
    buf
}

// --- exercising one input -------------------------------------------------------

#[derive(Default)]
struct Stats {
    inputs: u64,
    attached: u64,
    rejected_at_attach: u64,
    items_read: u64,
    item_errors: u64,
    fast_reads: u64,
    writes: u64,
    hostile_rewrites: u64,
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Str(s) => s.len(),
        Value::Bytes(b) => b.len(),
        _ => 0,
    }
}

fn same_result(a: &Result<Value, ListError>, b: &Result<Value, ListError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => same(x, y),
        (Err(x), Err(y)) => x == y,
        _ => false,
    }
}

fn read_all(view: &ListView, len: usize, stats: &mut Stats) {
    let n = view.len();
    for i in 0..n {
        stats.items_read += 1;
        let got = view.get(i);
        match &got {
            Ok(v) => assert!(value_len(v) <= len, "item {i} longer than the block"),
            Err(_) => stats.item_errors += 1,
        }
        let (fast, slow) = view.read_both_paths(i);
        assert!(
            same_result(&got, &slow),
            "item {i}: get gave {got:?}, the slow path {slow:?}"
        );
        match fast {
            Some(fast) => {
                stats.fast_reads += 1;
                assert!(
                    same_result(&fast, &slow),
                    "item {i}: the fast path read {fast:?}, the slow path {slow:?}"
                );
            }
            None => assert!(slow.is_err(), "item {i}: only the slow path read {slow:?}"),
        }
        let _ = view.format_of(i);
    }
    assert!(
        view.get(n).is_err(),
        "index {n} of a {n}-item list was accepted"
    );
    let _ = view.live_len();
    let _ = view.format();
    let _ = view.get_all();
}

fn exercise(input: &[u8], valid: Option<&[Value]>, rng: &mut Rng, stats: &mut Stats) {
    stats.inputs += 1;
    remember(input);
    let guarded = Guarded::new(input);
    let len = input.len();
    match ListView::attach(guarded.mem()) {
        Err(e) => {
            assert!(valid.is_none(), "a valid list was refused: {e}");
            stats.rejected_at_attach += 1;
        }
        Ok(view) => {
            stats.attached += 1;
            let n = view.len();
            assert!(16 + 17 * n <= len, "{n} items attached in {len} bytes");
            let end = view.byte_len();
            assert!(end <= len, "layout of {end} bytes attached in {len}");
            let before = guarded.contents();
            let errors = stats.item_errors;
            read_all(&view, len, stats);
            assert_eq!(guarded.contents(), before, "reading changed the block");
            if let Some(items) = valid {
                assert_eq!(
                    stats.item_errors, errors,
                    "an item of a valid list was refused"
                );
                for (i, item) in items.iter().enumerate() {
                    let got = view.get(i).unwrap();
                    assert!(same(&got, &read_back(&item.as_item())), "item {i}: {got:?}");
                }
            }
            for _ in 0..=n.min(6) {
                let i = rng.below(n + 1);
                let item = random_item(rng);
                stats.writes += 1;
                // The slow path alone, on a twin of the block as it is now.
                let twin = RawMem::from_bytes(&guarded.contents());
                let twin = ListView::attach(twin).expect("the same bytes attach again");
                let slow = twin.set_slow_path(i, item.as_item());
                let fast = view.set(i, item.as_item());
                assert_eq!(fast, slow, "set({i}, {item:?})");
                assert_eq!(
                    guarded.contents(),
                    twin.mem().to_vec(),
                    "set({i}, {item:?}) wrote different bytes on the two paths"
                );
                if fast.is_ok() {
                    let got = view.get(i).expect("a written item reads back");
                    assert!(
                        same(&got, &read_back(&item.as_item())),
                        "item {i} wrote {got:?}"
                    );
                }
            }
            assert_eq!(
                guarded.contents()[end..],
                before[end..],
                "a write landed past the layout"
            );
            // A hostile peer rewrites header words under the attached view.
            for _ in 0..rng.below(4) {
                let k = rng.below(n + 2);
                if 8 * k + 8 <= len {
                    view.mem().write_from(8 * k, &word(rng)).unwrap();
                    stats.hostile_rewrites += 1;
                }
            }
            let before = guarded.contents();
            read_all(&view, len, stats);
            assert_eq!(guarded.contents(), before, "reading changed the block");
        }
    }
    assert!(guarded.canary_intact(), "bytes outside the block changed");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args
        .next()
        .map_or(200_000, |a| a.parse().expect("ITERATIONS"));
    let seed: u64 = args.next().map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        },
        |a| a.parse().expect("SEED"),
    );
    // SAFETY: installing a handler that only calls async-signal-safe functions.
    unsafe {
        libc::signal(
            libc::SIGSEGV,
            on_fault as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGBUS,
            on_fault as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    thread_local!(static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) });
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        INPUT.with(|i| {
            eprintln!(
                "list_reader: panic on input (seed {seed}): {}",
                hex(&i.borrow())
            )
        });
        default_hook(info);
    }));

    let mut rng = Rng(seed);
    let mut stats = Stats::default();
    for _ in 0..iterations {
        let mode = rng.below(10);
        let items: Vec<Value> = (0..rng.below(11)).map(|_| random_item(&mut rng)).collect();
        let (input, valid) = match mode {
            0..=2 => {
                let n = rng.below(600);
                (rng.bytes(n), false)
            }
            3..=7 => (mutate(&mut rng, encode(&items)), false),
            _ => (encode(&items), true),
        };
        INPUT.with(|i| *i.borrow_mut() = input.clone());
        exercise(&input, valid.then_some(&items[..]), &mut rng, &mut stats);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{{\"seed\": {seed}, \"inputs\": {}, \"attached\": {}, \"rejected_at_attach\": {}, \
         \"items_read\": {}, \"item_errors\": {}, \"fast_reads\": {}, \"writes\": {}, \
         \"hostile_rewrites\": {}}}",
        stats.inputs,
        stats.attached,
        stats.rejected_at_attach,
        stats.items_read,
        stats.item_errors,
        stats.fast_reads,
        stats.writes,
        stats.hostile_rewrites
    )
    .unwrap();
}
