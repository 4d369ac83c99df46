//! Threads of one process sharing lists and segments: what free-threaded
//! Python (and any Rust program) does. `make test-tsan` runs these under
//! ThreadSanitizer, which reports any access to the same bytes from two
//! threads that is not ordered or atomic: the list layout touches shared
//! memory only through atomics, so there must be none.
//!
//! What must hold besides: no panic, no error but the documented ones, and
//! every value read is one some thread wrote, each 8-byte word whole (a
//! longer value may mix words of different writes).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use super::shared::tests::Name;
use super::{ItemRef, ListError, SharedList, SharedListError, Value};
use crate::segment::{os_name, Segment};

/// Items of the shared list: what each slot may hold.
const INITIAL: [ItemRef<'static>; 4] = [
    ItemRef::Int(0),
    ItemRef::Float(0.0),
    ItemRef::Str("init"),                        // an 8-byte slot: one word
    ItemRef::Bytes(b"AAAAAAAABBBBBBBBCCCCCCCC"), // a 32-byte slot, 24 used
];

/// Words a writer puts in the bytes item: each 8-byte word one letter.
const LETTERS: &[u8] = b"ABCDEFGH";

/// Strings written to the str item (one word each).
const STRS: [&str; 4] = ["init", "abc", "12345678", "é"];

const WRITERS: u64 = 3;

fn write_one(list: &SharedList, writer: u64, k: u64) {
    let i = (k % 4) as usize;
    let result = match i {
        0 => list.set(0, ItemRef::Int(((writer << 32) | k) as i64)),
        1 => list.set(
            1,
            ItemRef::Float(writer as f64 + (k % 1024) as f64 / 1024.0),
        ),
        2 => list.set(2, ItemRef::Str(STRS[(k % 4) as usize])),
        _ => {
            let mut value = [0u8; 24];
            for (w, word) in value.chunks_mut(8).enumerate() {
                word.fill(LETTERS[((k + w as u64 * writer) % 8) as usize]);
            }
            list.set(3, ItemRef::Bytes(&value))
        }
    };
    result.unwrap();
}

/// Whether `value`, read at `i`, is one some writer wrote there.
fn legal(i: usize, value: &Value) -> bool {
    match (i, value) {
        (0, Value::Int(v)) => *v == 0 || ((*v as u64) >> 32) < WRITERS,
        (1, Value::Float(v)) => (0.0..WRITERS as f64).contains(v),
        (2, Value::Str(s)) => STRS.contains(&s.as_str()),
        (3, Value::Bytes(b)) => {
            b.len() == 24
                && b.chunks(8)
                    .all(|w| w.iter().all(|&c| c == w[0]) && LETTERS.contains(&w[0]))
        }
        _ => false,
    }
}

#[test]
fn threads_read_and_write_the_same_items() {
    let name = Name::new("thr_rw");
    let list = SharedList::create(&name, &INITIAL).unwrap();
    let reads = AtomicUsize::new(0);
    let barrier = Barrier::new(8);
    thread::scope(|s| {
        for writer in 0..WRITERS {
            let (list, barrier) = (&list, &barrier);
            s.spawn(move || {
                barrier.wait();
                for k in 0..4_000 {
                    write_one(list, writer, k);
                }
            });
        }
        for reader in 0..5 {
            let (list, reads, barrier, name) = (&list, &reads, &barrier, &*name);
            s.spawn(move || {
                // Two readers share the creator's handle, three open their own.
                let own = (reader >= 2).then(|| SharedList::open(name).unwrap());
                let list = own.as_ref().unwrap_or(list);
                barrier.wait();
                for k in 0..4_000 {
                    let i = k % 4;
                    let value = list.get(i).unwrap();
                    assert!(legal(i, &value), "item {i}: {value:?}");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                for value in list.to_vec().unwrap().iter().enumerate() {
                    assert!(legal(value.0, value.1), "{value:?}");
                }
            });
        }
    });
    assert_eq!(reads.load(Ordering::Relaxed), 5 * 4_000);
    list.unlink().unwrap();
}

#[test]
fn a_segment_shared_by_threads_outlives_every_handle_but_the_last() {
    // One mapping, many lists over it (as Python's ShareableList objects on
    // one SharedMemory): threads attach, use and drop their lists while the
    // creator drops its own; the last holder unmaps.
    let name = Name::new("thr_arc");
    let created = SharedList::create(&name, &INITIAL).unwrap();
    let segment = Arc::new(Segment::open(&os_name(&name)).unwrap());
    let barrier = Barrier::new(5);
    thread::scope(|s| {
        for t in 0..4u64 {
            let (segment, barrier) = (Arc::clone(&segment), &barrier);
            s.spawn(move || {
                barrier.wait();
                for k in 0..500u64 {
                    let list = SharedList::attach(Arc::clone(&segment)).unwrap();
                    write_one(&list, t % WRITERS, k);
                    let i = (k % 4) as usize;
                    assert!(legal(i, &list.get(i).unwrap()));
                    drop(list);
                }
                // The last reference to the segment may be this one.
                drop(segment);
            });
        }
        barrier.wait();
        drop(created);
    });
    drop(segment);
    if cfg!(windows) {
        // A section goes with its last handle.
        let gone = SharedList::open(&name).unwrap_err();
        assert_eq!(gone.raw_os_error(), Some(crate::segment::ERR_NOT_FOUND));
        return;
    }
    // Every handle is gone; the segment itself stays until unlinked.
    let again = SharedList::open(&name).unwrap();
    for i in 0..4 {
        assert!(legal(i, &again.get(i).unwrap()));
    }
    again.unlink().unwrap();
}

#[test]
fn threads_create_attach_and_unlink_lists_while_others_use_them() {
    let stop = AtomicBool::new(false);
    let shared_name = Name::new("thr_churn");
    let shared = SharedList::create(&shared_name, &INITIAL).unwrap();
    thread::scope(|s| {
        // Creators: their own lists, made, attached twice, unlinked.
        let creators: Vec<_> = (0..3)
            .map(|t| {
                s.spawn(move || {
                    for k in 0..60 {
                        let name = Name::new(&format!("thr_new{t}_{k}"));
                        let items = [ItemRef::Int(k), ItemRef::Str("fresh")];
                        let list = SharedList::create(&name, &items).unwrap();
                        let other = SharedList::open(&name).unwrap();
                        other.set(0, ItemRef::Int(-k)).unwrap();
                        assert_eq!(list.get(0).unwrap(), Value::Int(-k));
                        list.unlink().unwrap();
                        if cfg!(unix) {
                            // Unlinked: gone for new attaches (on Windows the
                            // section lives while a handle does).
                            let gone = SharedList::open(&name).unwrap_err();
                            assert_eq!(gone.raw_os_error(), Some(crate::segment::ERR_NOT_FOUND));
                        }
                        // Still mapped here.
                        assert_eq!(other.get(1).unwrap(), Value::Str("fresh".into()));
                    }
                })
            })
            .collect();
        // Meanwhile others attach to and write the shared list.
        for t in 0..3 {
            let (stop, name) = (&stop, &*shared_name);
            s.spawn(move || {
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    let list = SharedList::open(name).unwrap();
                    write_one(&list, t, k);
                    let values = list.to_vec().unwrap();
                    for (i, v) in values.iter().enumerate() {
                        assert!(legal(i, v), "{i}: {v:?}");
                    }
                    k += 1;
                }
            });
        }
        // The readers stop when the creators are done, or one failed (its
        // panic is raised here, not left to keep the readers going).
        let results: Vec<_> = creators.into_iter().map(|c| c.join()).collect();
        stop.store(true, Ordering::Relaxed);
        for result in results {
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        }
    });
    shared.unlink().unwrap();
}

#[test]
fn segment_bytes_written_by_threads_at_disjoint_offsets() {
    // The segment's own byte copies (read_at/write_at) are plain copies:
    // threads use disjoint ranges of one mapping, and see each other's
    // writes once joined.
    let name = Name::new("thr_seg");
    let segment = Arc::new(Segment::create(&os_name(&name), 8 * 4096).unwrap());
    thread::scope(|s| {
        for t in 0..8 {
            let segment = &segment;
            s.spawn(move || {
                let mine = t * 4096;
                for k in 0..200u32 {
                    segment.write_at(mine, &k.to_ne_bytes());
                    let mut back = [0u8; 4];
                    segment.read_at(mine, &mut back);
                    assert_eq!(u32::from_ne_bytes(back), k);
                }
                // A second handle on the same object, opened and dropped here.
                let other = Segment::open(segment.name()).unwrap();
                let mut back = [0u8; 4];
                other.read_at(mine, &mut back);
                assert_eq!(u32::from_ne_bytes(back), 199);
            });
        }
    });
    for t in 0..8 {
        let mut back = [0u8; 4];
        segment.read_at(t * 4096, &mut back);
        assert_eq!(u32::from_ne_bytes(back), 199);
    }
    segment.unlink().unwrap();
}

#[test]
fn a_write_that_does_not_fit_changes_nothing_under_concurrent_readers() {
    let name = Name::new("thr_err");
    let list = SharedList::create(&name, &INITIAL).unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..2_000 {
                let err = list.set(2, ItemRef::Str("longer than eight")).unwrap_err();
                assert!(matches!(
                    err,
                    SharedListError::List(ListError::ExceedsStorage)
                ));
            }
        });
        for _ in 0..2_000 {
            assert_eq!(list.get(2).unwrap(), Value::Str("init".into()));
        }
    });
    list.unlink().unwrap();
}
