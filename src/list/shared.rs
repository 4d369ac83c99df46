//! [`SharedList`]: a `ShareableList` in a named segment, for Rust programs.
//!
//! This is the Rust counterpart of Python's
//! `multiprocessing.shared_memory.ShareableList(sequence, name=...)` and
//! `ShareableList(name=...)`: it owns the [`Segment`] and a [`ListView`] over
//! its mapping, so the view can never outlive the memory it reads. Lists made
//! here are byte-compatible with the standard library's and ferroshm's
//! Python classes, in both directions.

use std::fmt;
use std::sync::Arc;

use super::{encoded_size, ItemRef, ListError, ListSizer, ListView, ListWriter, RawMem, Value};
use crate::segment::{self, os_name, OpenOptions, Segment, SegmentError};

/// Why a [`SharedList`] operation failed: the segment could not be created,
/// opened or unlinked, or the list in it could not be read or written.
#[derive(Debug)]
pub enum SharedListError {
    /// Creating, opening or unlinking the segment failed.
    Segment {
        /// The OS name of the segment, with its leading `/`.
        name: String,
        /// What went wrong; [`SegmentError::Os`] carries the errno
        /// (`ENOENT` for a missing name, `EEXIST` for a taken one).
        source: SegmentError,
    },
    /// The list layout refused the operation (index out of range, a value
    /// too long for its slot, a segment that does not hold a valid list…).
    /// Nothing in shared memory was changed.
    List(ListError),
}

impl SharedListError {
    /// The OS error number behind a segment error, if there is one (e.g.
    /// `libc::ENOENT` when the name does not exist).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            SharedListError::Segment {
                source: SegmentError::Os(e),
                ..
            } => e.raw_os_error(),
            _ => None,
        }
    }

    fn segment(name: &str, source: impl Into<SegmentError>) -> SharedListError {
        SharedListError::Segment {
            name: name.to_owned(),
            source: source.into(),
        }
    }
}

impl fmt::Display for SharedListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedListError::Segment { name, source } => {
                write!(f, "shared memory {name:?}: {source}")
            }
            SharedListError::List(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SharedListError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SharedListError::Segment { source, .. } => Some(source),
            SharedListError::List(e) => Some(e),
        }
    }
}

impl From<ListError> for SharedListError {
    fn from(e: ListError) -> Self {
        SharedListError::List(e)
    }
}

/// A `ShareableList` in a named shared-memory segment, byte-compatible with
/// Python's `multiprocessing.shared_memory.ShareableList` (3.9+ layout).
///
/// Names are given as Python's `ShareableList.shm.name` reports them,
/// without the leading `/` (`"psm_1a2b3c4d"`); the OS object is `"/" + name`
/// (a name that already starts with `/` is used as is). A Python process
/// attaches with `ShareableList(name=list.name())`.
///
/// Like the Python class, a list has a fixed length and fixed slot sizes:
/// [`set`](SharedList::set) can change an item's value and type, but a str
/// or bytes value must fit the slot the item got when the list was created.
///
/// Dropping a `SharedList` unmaps it; the segment itself stays until someone
/// calls [`unlink`](SharedList::unlink) (here or in any other process).
/// Other processes may write the list at any time: every read is validated,
/// and a corrupt or half-written item is an error, never a panic.
///
/// This is also the owner that ferroshm's Python `ShareableList` uses: a
/// list holds its segment through an [`Arc`], so a segment opened elsewhere
/// (by a Python `SharedMemory`) can be shared with the list
/// ([`SharedList::attach`], [`SharedList::write_new`]) and stays mapped for
/// as long as either needs it.
pub struct SharedList {
    // Declared before `segment`, so it is dropped before the mapping it
    // points into can be unmapped.
    view: ListView,
    segment: Arc<Segment>,
}

impl SharedList {
    /// Create the segment `name` (failing with `EEXIST` if it is taken) and
    /// write a new list of `items` into it, exactly as Python's
    /// `ShareableList(items, name=name)` does.
    ///
    /// Items are checked before the segment exists: a str/bytes item longer
    /// than [`MAX_ITEM_BYTES`](super::MAX_ITEM_BYTES) fails with
    /// [`ListError::ItemTooLarge`] and leaves nothing behind.
    pub fn create(name: &str, items: &[ItemRef<'_>]) -> Result<SharedList, SharedListError> {
        let size = encoded_size(items)?;
        let os_name = os_name(name);
        let segment =
            Segment::create(&os_name, size).map_err(|e| SharedListError::segment(&os_name, e))?;
        let segment = Arc::new(segment);
        SharedList::in_segment(segment.clone(), |mem| super::write_new(mem, items)).map_err(|e| {
            // This call created the segment a moment ago: nobody else can
            // rely on it yet, so it goes. The list error is what the caller
            // needs to see; a failed unlink would hide it.
            let _ = segment.unlink();
            e.into()
        })
    }

    /// Write a new list of `items` into the placeholder `name`, an empty
    /// object someone else created to hold the name (see
    /// [`Segment::open_placeholder`]): it is sized for the list and filled,
    /// byte for byte as [`create`](SharedList::create) would. `EEXIST` if it
    /// is not empty any more, `ENOENT` if it is gone. The name is not this
    /// call's: a failure never unlinks it. POSIX only (Windows:
    /// unsupported).
    pub fn create_in_placeholder(
        name: &str,
        items: &[ItemRef<'_>],
    ) -> Result<SharedList, SharedListError> {
        let size = encoded_size(items)?;
        let os_name = os_name(name);
        let segment = Segment::open_placeholder(&os_name, size)
            .map_err(|e| SharedListError::segment(&os_name, e))?;
        Ok(SharedList::in_segment(Arc::new(segment), |mem| {
            super::write_new(mem, items)
        })?)
    }

    /// Create a list of `items` under a fresh random name in CPython's style
    /// (`psm_` and 8 hex digits; Windows: `wnsm_`), as Python's
    /// `ShareableList(items)` does. Read the name with
    /// [`name`](SharedList::name).
    pub fn create_unique(items: &[ItemRef<'_>]) -> Result<SharedList, SharedListError> {
        let prefix = segment::RANDOM_NAME_PREFIX;
        loop {
            let name = segment::random_name(prefix, prefix.len() + 8)
                .map_err(|e| SharedListError::segment(&os_name(prefix), e))?;
            match SharedList::create(&name, items) {
                Err(e) if e.raw_os_error() == Some(segment::ERR_EXISTS) => continue,
                other => return other,
            }
        }
    }

    /// Attach to the existing list `name` for reading and writing, as
    /// Python's `ShareableList(name=name)` does. Fails with `ENOENT` (see
    /// [`SharedListError::raw_os_error`]) when there is no such segment, and
    /// with [`ListError::Corrupt`] when its header is not a valid list.
    pub fn open(name: &str) -> Result<SharedList, SharedListError> {
        SharedList::open_with(name, &OpenOptions::attach())
    }

    /// Attach to the existing list `name` read-only (`O_RDONLY`,
    /// `PROT_READ`): reading works as with [`open`](SharedList::open), and
    /// [`set`](SharedList::set) fails with [`ListError::ReadOnly`]. Needs
    /// only read permission on the segment, and cannot change it.
    pub fn open_read_only(name: &str) -> Result<SharedList, SharedListError> {
        let opts = OpenOptions {
            flags: libc::O_RDONLY,
            mode: 0,
            size: None,
            reserve: false,
        };
        SharedList::open_with(name, &opts)
    }

    fn open_with(name: &str, opts: &OpenOptions) -> Result<SharedList, SharedListError> {
        let os_name = os_name(name);
        let segment = Segment::open_with(&os_name, opts)
            .map_err(|e| SharedListError::segment(&os_name, e))?;
        Ok(SharedList::attach(Arc::new(segment))?)
    }

    /// Attach to the list stored in `segment`, an open segment that others
    /// (a Python `SharedMemory`) may hold too. O(1): reads the header only.
    pub fn attach(segment: Arc<Segment>) -> Result<SharedList, ListError> {
        SharedList::in_segment(segment, |_| Ok(()))
    }

    /// Write a new list into `segment`, sized by `sizer`, with `fill`
    /// pushing the same items in the same order into the writer; then
    /// attach to it. For callers that make items on the fly (the Python
    /// bindings). The segment must be at least `sizer.size()` bytes.
    pub fn write_new(
        segment: Arc<Segment>,
        sizer: &ListSizer,
        fill: impl FnOnce(&mut ListWriter<'_>) -> Result<(), ListError>,
    ) -> Result<SharedList, ListError> {
        SharedList::in_segment(segment, |mem| {
            let mut writer = ListWriter::new(mem, sizer)?;
            fill(&mut writer)?;
            writer.finish()
        })
    }

    /// Run `write` over the segment's memory, then attach to the list it
    /// holds.
    fn in_segment(
        segment: Arc<Segment>,
        write: impl FnOnce(&RawMem) -> Result<(), ListError>,
    ) -> Result<SharedList, ListError> {
        let mem = raw_mem(&segment);
        write(&mem)?;
        let view = ListView::attach(mem)?;
        Ok(SharedList { view, segment })
    }

    /// The list's name without the leading `/`, as Python's
    /// `ShareableList.shm.name` gives it: pass it to another process.
    pub fn name(&self) -> &str {
        segment::reported_name(self.segment.name())
    }

    /// The number of items (read when the list was attached; a list's length
    /// never changes).
    pub fn len(&self) -> usize {
        self.view.len()
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.view.is_empty()
    }

    /// Read item `index` as an owned [`Value`]. Trailing NUL bytes of str
    /// and bytes values are dropped, as in Python.
    pub fn get(&self, index: usize) -> Result<Value, SharedListError> {
        Ok(self.view.get(index)?)
    }

    /// Read item `index` and hand it to `f` as an [`ItemRef`] borrowed from
    /// a private copy (never from the shared memory), without allocating
    /// for short values.
    pub fn get_with<R>(
        &self,
        index: usize,
        f: impl FnOnce(ItemRef<'_>) -> R,
    ) -> Result<R, SharedListError> {
        Ok(self.view.get_with(index, f)?)
    }

    /// Read every item, in order (Python's `list(sl)`).
    pub fn to_vec(&self) -> Result<Vec<Value>, SharedListError> {
        Ok(self.view.get_all()?)
    }

    /// Store `item` at `index`, as Python's `sl[index] = item` does. Fails,
    /// changing nothing, with [`ListError::IndexOutOfRange`], or with
    /// [`ListError::ExceedsStorage`] when a str/bytes value is longer (in
    /// UTF-8 bytes) than the item's slot.
    pub fn set(&self, index: usize, item: ItemRef<'_>) -> Result<(), SharedListError> {
        Ok(self.view.set(index, item)?)
    }

    /// The stored format of item `index`, as Python's
    /// `sl._get_packing_format(index)` gives it (`"q"`, `"d"`, `"16s"`…).
    pub fn format_of(&self, index: usize) -> Result<String, SharedListError> {
        Ok(self.view.format_of(index)?)
    }

    /// All formats joined, as Python's `ShareableList.format` property gives
    /// them (e.g. `"q8s8sxxxxxx?xxxxxxxx?d"`).
    pub fn format(&self) -> Result<String, SharedListError> {
        Ok(self.view.format()?)
    }

    /// The view of the list inside the mapping, for the rest of
    /// [`ListView`]'s API (e.g. [`ListView::live_len`]). It borrows `self`,
    /// so it cannot outlive the mapping.
    pub fn view(&self) -> &ListView {
        &self.view
    }

    /// The segment the list lives in.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Remove the segment's name from the system (`shm_unlink`), as Python's
    /// `sl.shm.unlink()` does: call it once, from any one process, when no
    /// one needs the list any more. The memory stays mapped here and in
    /// every process attached to it until they drop their handles.
    pub fn unlink(&self) -> Result<(), SharedListError> {
        self.segment
            .unlink()
            .map_err(|e| SharedListError::segment(self.segment.name(), e))
    }
}

impl fmt::Debug for SharedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedList")
            .field("name", &self.name())
            .field("len", &self.len())
            .finish()
    }
}

/// The block of `segment`'s mapping, read-only if the mapping is.
fn raw_mem(segment: &Segment) -> RawMem {
    // SAFETY: the mapping is `segment.len()` bytes at `segment.as_ptr()`,
    // readable (and writable when `segment.writable()`), and stays mapped as
    // long as the segment lives. Its only caller, `SharedList::in_segment`,
    // either drops the block before returning or keeps it in a view next to
    // an `Arc` of the segment, drops the view first, and never gives the
    // view (or the block) away by value, only by reference to itself. Other
    // processes may write the memory at any time, which `RawMem` allows for.
    unsafe {
        if segment.writable() {
            RawMem::new(segment.as_ptr(), segment.len())
        } else {
            RawMem::new_read_only(segment.as_ptr(), segment.len())
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A unique Python-style name, unlinked when dropped (so that a failing
    /// test leaves nothing in /dev/shm).
    pub(crate) struct Name(String);

    impl Name {
        pub(crate) fn new(tag: &str) -> Name {
            Name(
                segment::random_name(&format!("fshm_rs_{tag}_{}_", std::process::id()), 40)
                    .unwrap(),
            )
        }
    }

    impl Drop for Name {
        fn drop(&mut self) {
            let _ = segment::unlink(&os_name(&self.0));
        }
    }

    impl std::ops::Deref for Name {
        type Target = str;
        fn deref(&self) -> &str {
            &self.0
        }
    }

    fn exists(name: &str) -> bool {
        Segment::open(&os_name(name)).is_ok()
    }

    #[cfg(unix)]
    pub(crate) const ITEMS: [ItemRef<'static>; 7] = [
        ItemRef::Int(-7),
        ItemRef::Float(2.5),
        ItemRef::Bool(true),
        ItemRef::None,
        ItemRef::Str("héllo wörld"),
        ItemRef::Bytes(b"\x00\x01ab"),
        ItemRef::Int(i64::MAX),
    ];

    #[test]
    #[cfg(unix)] // POSIX: names with a leading `/`, unlink before the last handle
    fn create_open_get_set_unlink() {
        let name = Name::new("a");
        let list = SharedList::create(&name, &ITEMS).unwrap();
        assert_eq!(list.name(), &*name);
        assert_eq!(list.segment().name(), format!("/{}", &*name));
        assert_eq!(list.len(), 7);
        assert!(!list.is_empty());
        let other = SharedList::open(&name).unwrap();
        let expected: Vec<Value> = ITEMS.iter().map(|&i| Value::from(i)).collect();
        assert_eq!(other.to_vec().unwrap(), expected);
        assert_eq!(other.format().unwrap(), "qdxxxxxxx?xxxxxx?x16s8sq");
        assert_eq!(other.format_of(4).unwrap(), "16s");

        // A write through one handle is seen through the other.
        other.set(4, ItemRef::Bytes(b"0123456789abcdef")).unwrap();
        other.set(0, ItemRef::Str("eight ch")).unwrap();
        assert_eq!(
            list.get(4).unwrap(),
            Value::Bytes(b"0123456789abcdef".to_vec())
        );
        assert_eq!(list.get(0).unwrap(), Value::Str("eight ch".into()));
        assert!(list
            .get_with(1, |item| item == ItemRef::Float(2.5))
            .unwrap());

        list.unlink().unwrap();
        assert!(!exists(&name));
        // Both mappings outlive the name.
        assert_eq!(other.get(6).unwrap(), Value::Int(i64::MAX));
        // A second unlink finds nothing.
        let err = other.unlink().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn errors_change_nothing_and_say_what_went_wrong() {
        let name = Name::new("b");
        let list = SharedList::create(&name, &[ItemRef::Str("abc"), ItemRef::Int(1)]).unwrap();
        let err = list
            .set(0, ItemRef::Str("this is longer than eight"))
            .unwrap_err();
        assert!(
            matches!(err, SharedListError::List(ListError::ExceedsStorage)),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "bytes/str item exceeds available storage");
        let err = list.set(2, ItemRef::Int(5)).unwrap_err();
        assert!(
            matches!(err, SharedListError::List(ListError::IndexOutOfRange)),
            "{err:?}"
        );
        assert!(matches!(
            list.get(2),
            Err(SharedListError::List(ListError::IndexOutOfRange))
        ));
        assert_eq!(
            list.to_vec().unwrap(),
            vec![Value::Str("abc".into()), Value::Int(1)]
        );
        assert!(err.raw_os_error().is_none());
        assert!(std::error::Error::source(&err).is_some());
        list.unlink().unwrap();
    }

    #[test]
    #[cfg(unix)] // POSIX: errno values and messages
    fn missing_and_taken_names() {
        let name = Name::new("c");
        let err = SharedList::open(&name).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("\"/{}\"", &*name)) && msg.contains("No such file"),
            "{msg}"
        );

        let list = SharedList::create(&name, &[ItemRef::Int(1)]).unwrap();
        let err = SharedList::create(&name, &[ItemRef::Int(2), ItemRef::Int(3)]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        // The original is untouched.
        assert_eq!(
            SharedList::open(&name).unwrap().to_vec().unwrap(),
            vec![Value::Int(1)]
        );
        list.unlink().unwrap();
    }

    #[test]
    #[cfg(unix)] // POSIX: the leading `/`
    fn a_leading_slash_names_the_same_segment() {
        let name = Name::new("d");
        let list = SharedList::create(&format!("/{}", &*name), &[ItemRef::Bool(false)]).unwrap();
        assert_eq!(list.name(), &*name);
        assert_eq!(
            SharedList::open(&name).unwrap().get(0).unwrap(),
            Value::Bool(false)
        );
        list.unlink().unwrap();
    }

    #[test]
    fn too_large_an_item_leaves_nothing_behind() {
        let name = Name::new("e");
        let big = vec![b'x'; super::super::MAX_ITEM_BYTES + 1];
        let err = SharedList::create(&name, &[ItemRef::Int(1), ItemRef::Bytes(&big)]).unwrap_err();
        assert!(
            matches!(
                err,
                SharedListError::List(ListError::ItemTooLarge { index: 1, .. })
            ),
            "{err:?}"
        );
        assert!(!exists(&name));
    }

    #[test]
    #[cfg(unix)] // POSIX: `psm_` names
    fn empty_list_and_unique_names() {
        let list = SharedList::create_unique(&[]).unwrap();
        let _cleanup = Name(list.name().to_owned());
        assert!(
            list.name().starts_with("psm_") && list.name().len() == 12,
            "{}",
            list.name()
        );
        assert!(list.is_empty());
        assert_eq!(list.segment().len(), 16);
        assert_eq!(list.format().unwrap(), "");
        let again = SharedList::open(list.name()).unwrap();
        assert_eq!(again.to_vec().unwrap(), vec![]);
        list.unlink().unwrap();
    }

    #[test]
    fn read_only_handles_read_but_never_write() {
        let name = Name::new("f");
        let list = SharedList::create(&name, &[ItemRef::Int(10), ItemRef::Str("x")]).unwrap();
        let ro = SharedList::open_read_only(&name).unwrap();
        assert!(!ro.segment().writable());
        assert_eq!(ro.get(1).unwrap(), Value::Str("x".into()));
        let err = ro.set(0, ItemRef::Int(11)).unwrap_err();
        assert!(
            matches!(err, SharedListError::List(ListError::ReadOnly)),
            "{err:?}"
        );
        assert_eq!(list.get(0).unwrap(), Value::Int(10));
        list.unlink().unwrap();
    }

    #[test]
    fn a_segment_that_is_not_a_list_is_refused() {
        let name = Name::new("g");
        let seg = Segment::create(&os_name(&name), 64).unwrap();
        seg.write_at(0, &1000i64.to_ne_bytes()); // 1000 items cannot fit in 64 bytes
        let err = SharedList::open(&name).unwrap_err();
        assert!(
            matches!(err, SharedListError::List(ListError::Corrupt(_))),
            "{err:?}"
        );
        assert!(err.to_string().contains("1000 items do not fit"), "{err}");
        seg.unlink().unwrap();
    }

    #[test]
    #[cfg(unix)] // POSIX: on Windows the last handle does remove it
    fn dropping_a_list_does_not_unlink_it() {
        let name = Name::new("h");
        drop(SharedList::create(&name, &[ItemRef::Float(-0.0)]).unwrap());
        let list = SharedList::open(&name).unwrap();
        assert_eq!(list.get(0).unwrap(), Value::Float(-0.0));
        list.unlink().unwrap();
    }

    #[test]
    fn lists_share_a_segment_opened_elsewhere_and_keep_it_mapped() {
        let name = Name::new("arc");
        let items = [ItemRef::Int(5), ItemRef::Str("shared"), ItemRef::None];
        let mut sizer = ListSizer::new();
        for item in &items {
            sizer.push(item).unwrap();
        }
        let size = sizer.size().unwrap();
        let segment = Arc::new(Segment::create(&os_name(&name), size).unwrap());
        let written = SharedList::write_new(segment.clone(), &sizer, |writer| {
            items.iter().try_for_each(|item| writer.push(item))
        })
        .unwrap();
        // A second list over the same segment object, as the Python class
        // does for every ShareableList(name=...) on one SharedMemory.
        let attached = SharedList::attach(segment.clone()).unwrap();
        drop(segment);
        drop(written);
        // The last holder still reads: the mapping lives as long as it does.
        assert_eq!(attached.get(1).unwrap(), Value::Str("shared".into()));
        assert_eq!(attached.name(), &*name);

        // A writer that pushes fewer items than were sized is refused.
        let short = Arc::new(Segment::open(&os_name(&name)).unwrap());
        let err =
            SharedList::write_new(short, &sizer, |writer| writer.push(&items[0])).unwrap_err();
        assert!(matches!(err, ListError::Corrupt(_)), "{err:?}");
        attached.unlink().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_list_written_into_a_placeholder_is_the_same_bytes() {
        let made = Name::new("ph_made");
        let filled = Name::new("ph_filled");
        let a = SharedList::create(&made, &ITEMS).unwrap();
        segment::create_placeholder(&os_name(&filled), 0o600).unwrap();
        let b = SharedList::create_in_placeholder(&filled, &ITEMS).unwrap();
        assert!(!b.segment().created());
        let (mut x, mut y) = (vec![0; a.segment().len()], vec![0; b.segment().len()]);
        a.segment().read_at(0, &mut x);
        b.segment().read_at(0, &mut y);
        assert_eq!(x, y);
        assert_eq!(
            SharedList::open(&filled).unwrap().to_vec().unwrap(),
            a.to_vec().unwrap()
        );
        // Filled once: a second list there is EEXIST.
        let again = SharedList::create_in_placeholder(&filled, &ITEMS).unwrap_err();
        assert_eq!(again.raw_os_error(), Some(segment::ERR_EXISTS));
    }

    #[test]
    fn lists_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SharedList>();
        let name = Name::new("i");
        let list = SharedList::create(&name, &[ItemRef::Int(0), ItemRef::Int(0)]).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| list.set(0, ItemRef::Int(1)).unwrap());
            s.spawn(|| list.set(1, ItemRef::Int(2)).unwrap());
        });
        assert_eq!(list.to_vec().unwrap(), vec![Value::Int(1), Value::Int(2)]);
        list.unlink().unwrap();
    }
}
