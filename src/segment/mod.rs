//! Named shared-memory segments: create, open, map, unmap and unlink.
//!
//! A [`Segment`] is one mapping of a named OS shared-memory object (POSIX
//! `shm_open` on Unix). The descriptor is closed as soon as the mapping
//! exists, so a `Segment` owns exactly one resource: the mapping, which
//! [`Drop`] unmaps. The name is kept for `unlink`.
//!
//! Names are given the way Python's `multiprocessing.shared_memory` stores
//! them in `_name`: with the leading `/` that POSIX wants (`"/psm_1a2b3c4d"`).
//!
//! The memory behind a segment may be written at any moment by other
//! processes, so this module never hands out `&[u8]` views of it: callers
//! get a raw pointer ([`Segment::as_ptr`]) or copy with
//! [`Segment::read_at`] / [`Segment::write_at`].

use std::fmt;
use std::io;

#[cfg_attr(unix, path = "unix.rs")]
mod os;

/// How to open a segment: the `open(2)`-style flags that Python passes
/// (`O_CREAT`, `O_EXCL`, `O_RDWR`/`O_RDONLY`), the permission bits for a new
/// object, and the size to give it when this call is the one that creates it.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// `open(2)` flags, as in `os.O_CREAT | os.O_EXCL | os.O_RDWR`.
    pub flags: i32,
    /// Permission bits of a newly created object (`0o600` by default).
    pub mode: u32,
    /// Size to truncate to when creating; `None` leaves the size alone.
    pub size: Option<usize>,
    /// Reserve the pages of a new segment (Linux: `posix_fallocate`), so that
    /// a full `/dev/shm` fails here with `ENOSPC` instead of SIGBUS later.
    pub reserve: bool,
}

impl OpenOptions {
    /// Create a new segment of `size` bytes; fail if the name exists.
    pub fn create(size: usize) -> Self {
        OpenOptions {
            flags: libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            mode: 0o600,
            size: Some(size),
            reserve: true,
        }
    }

    /// Open an existing segment for reading and writing.
    pub fn attach() -> Self {
        OpenOptions {
            flags: libc::O_RDWR,
            mode: 0o600,
            size: None,
            reserve: false,
        }
    }

    fn writable(&self) -> bool {
        self.flags & libc::O_ACCMODE != libc::O_RDONLY
    }
}

/// Why a segment could not be opened or created.
#[derive(Debug)]
pub enum SegmentError {
    /// A system call failed; the error carries its errno.
    Os(io::Error),
    /// The name cannot name a segment (embedded NUL).
    EmbeddedNul,
    /// The existing object has size zero, so there is nothing to map.
    Empty,
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::Os(e) => e.fmt(f),
            SegmentError::EmbeddedNul => f.write_str("embedded null character"),
            SegmentError::Empty => f.write_str("cannot mmap an empty file"),
        }
    }
}

impl std::error::Error for SegmentError {}

impl From<io::Error> for SegmentError {
    fn from(e: io::Error) -> Self {
        SegmentError::Os(e)
    }
}

/// A mapped, named shared-memory segment. Dropping it unmaps the memory; the
/// named object stays until someone calls [`unlink`].
pub struct Segment {
    name: String,
    map: os::Mapping,
    created: bool,
}

impl Segment {
    /// Create a new segment of `size` bytes (which must be non-zero) under
    /// `name`, failing with `EEXIST` if the name is taken.
    pub fn create(name: &str, size: usize) -> Result<Segment, SegmentError> {
        Segment::open_with(name, &OpenOptions::create(size))
    }

    /// Open the existing segment `name` for reading and writing.
    pub fn open(name: &str) -> Result<Segment, SegmentError> {
        Segment::open_with(name, &OpenOptions::attach())
    }

    /// Open or create `name` as `opts` says. Whatever fails after the object
    /// exists closes the descriptor, and unlinks the object only when this
    /// call created it; an object someone else made is never removed.
    pub fn open_with(name: &str, opts: &OpenOptions) -> Result<Segment, SegmentError> {
        Segment::open_with_hook(name, opts, &mut || Ok(()))
    }

    /// As [`Segment::open_with`], calling `created` as soon as this call
    /// has created the object: before it is sized, which for a large
    /// segment (pages reserved) is the slow part. A caller that must record
    /// the new name somewhere before it can be lost (a resource tracker, in
    /// case this process is killed) does it there. If `created` fails, the
    /// object is removed and its error returned.
    pub fn open_with_hook(
        name: &str,
        opts: &OpenOptions,
        created: &mut dyn FnMut() -> io::Result<()>,
    ) -> Result<Segment, SegmentError> {
        Segment::open_hooked(name, opts, created, false)
    }

    /// As [`Segment::open_with_hook`], but `announce` runs before the
    /// object is created, so that no moment exists at which the object
    /// exists unannounced (a SIGKILL during `shm_open` itself). For names
    /// that cannot belong to anyone else (fresh random ones): if the name is
    /// taken after all, the call fails with `EEXIST` after `announce` ran,
    /// and the caller takes its announcement back. If `announce` fails,
    /// nothing is created.
    pub fn open_announced(
        name: &str,
        opts: &OpenOptions,
        announce: &mut dyn FnMut() -> io::Result<()>,
    ) -> Result<Segment, SegmentError> {
        Segment::open_hooked(name, opts, announce, true)
    }

    fn open_hooked(
        name: &str,
        opts: &OpenOptions,
        hook: &mut dyn FnMut() -> io::Result<()>,
        hook_first: bool,
    ) -> Result<Segment, SegmentError> {
        if name.as_bytes().contains(&0) {
            return Err(SegmentError::EmbeddedNul);
        }
        let (map, created) = os::open_and_map(name, opts, hook, hook_first)?;
        Ok(Segment {
            name: name.to_owned(),
            map,
            created,
        })
    }

    /// The name as passed to `shm_open`, with its leading `/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this handle's open call created the object.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The size of the mapping in bytes (the object's size when it was opened).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: empty objects are refused when opened.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Device and inode of the object when it was opened: two handles with
    /// the same identity map the same object, and an object re-created
    /// under the same name has a different one.
    pub fn identity(&self) -> (u64, u64) {
        self.map.identity()
    }

    /// Whether the mapping may be written.
    pub fn writable(&self) -> bool {
        self.map.writable()
    }

    /// Start of the mapping. Valid for `len()` bytes while `self` lives; other
    /// processes may change the bytes at any time.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Copy `dst.len()` bytes from `offset` into `dst`.
    ///
    /// # Panics
    /// When the range is not inside the segment.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) {
        let end = offset.checked_add(dst.len()).expect("range overflows");
        assert!(end <= self.len(), "read past the end of the segment");
        // SAFETY: the range was checked to lie inside the mapping, which lives
        // as long as `self`; `dst` is a distinct local buffer, so the regions
        // cannot overlap. A byte copy tolerates concurrent writers.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), dst.as_mut_ptr(), dst.len())
        }
    }

    /// Copy `src` into the segment at `offset`.
    ///
    /// # Panics
    /// When the range is not inside the segment or the mapping is read-only.
    pub fn write_at(&self, offset: usize, src: &[u8]) {
        let end = offset.checked_add(src.len()).expect("range overflows");
        assert!(end <= self.len(), "write past the end of the segment");
        assert!(self.writable(), "segment is mapped read-only");
        // SAFETY: the range lies inside a writable mapping that lives as long
        // as `self`; `src` is caller memory outside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.as_ptr().add(offset), src.len()) }
    }

    /// Remove this segment's name from the system (`shm_unlink`). The memory
    /// stays mapped here and in every other process until they unmap it.
    pub fn unlink(&self) -> io::Result<()> {
        unlink(&self.name)
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("len", &self.len())
            .finish()
    }
}

/// Remove the segment called `name` (with its leading `/`).
pub fn unlink(name: &str) -> io::Result<()> {
    if name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "embedded null character",
        ));
    }
    os::unlink(name)
}

/// Write all of `msg` to the open file descriptor `fd` (retrying on EINTR),
/// e.g. a line to a resource tracker's pipe from a [`Segment::open_with_hook`]
/// hook, while no Python lock is held.
#[cfg(unix)]
pub fn write_to_fd(fd: i32, msg: &[u8]) -> io::Result<()> {
    os::write_all_fd(fd, msg)
}

/// Close a descriptor handed over by a caller (e.g. a duplicate of a
/// resource tracker's pipe), ignoring errors as nothing can be done.
#[cfg(unix)]
pub fn close_fd(fd: i32) {
    os::close_fd(fd)
}

/// A fresh random name in CPython's style: `prefix` followed by hex digits
/// from the OS random source, `len` characters in all (CPython: `/psm_` and
/// 14, giving `/psm_` + 8 hex digits).
pub fn random_name(prefix: &str, len: usize) -> io::Result<String> {
    let nbytes = len.saturating_sub(prefix.len()) / 2;
    let mut bytes = vec![0u8; nbytes];
    os::fill_random(&mut bytes)?;
    let mut name = String::with_capacity(prefix.len() + 2 * nbytes);
    name.push_str(prefix);
    for b in bytes {
        name.push_str(&format!("{b:02x}"));
    }
    Ok(name)
}

/// The OS name of the segment that Python reports as `name`
/// (`SharedMemory.name`, `ShareableList.shm.name`): POSIX names carry a
/// leading `/` that Python hides. A name that has it already is kept.
/// This and [`reported_name`] are the one place the rule is written.
pub fn os_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.starts_with('/') {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(format!("/{name}"))
    }
}

/// The name Python reports for the OS name `os_name`: without the leading
/// `/`. The inverse of [`os_name`].
pub fn reported_name(os_name: &str) -> &str {
    os_name.strip_prefix('/').unwrap_or(os_name)
}

/// Whether `name` is a full OS name (POSIX: it starts with `/`), as opposed
/// to one given the way Python reports it.
pub fn is_os_name(name: &str) -> bool {
    name.starts_with('/')
}

/// Where named segments appear as files, when the platform has such a place.
pub fn segment_dir() -> Option<&'static std::path::Path> {
    os::SEGMENT_DIR.map(std::path::Path::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(tag: &str) -> String {
        random_name(&format!("/fshm_t{tag}_"), 24).unwrap()
    }

    #[test]
    fn create_write_attach_read_unlink() {
        let name = unique("a");
        let seg = Segment::create(&name, 4097).unwrap();
        assert!(seg.created());
        assert_eq!(seg.len(), 4097);
        seg.write_at(4090, b"abcdefg");
        let other = Segment::open(&name).unwrap();
        assert!(!other.created());
        assert_eq!(other.len(), 4097);
        let mut got = [0u8; 7];
        other.read_at(4090, &mut got);
        assert_eq!(&got, b"abcdefg");
        seg.unlink().unwrap();
        assert_eq!(
            unlink(&name).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        // The mapping outlives the name.
        other.read_at(4090, &mut got);
        assert_eq!(&got, b"abcdefg");
    }

    #[test]
    fn create_existing_is_eexist_and_keeps_the_original() {
        let name = unique("b");
        let seg = Segment::create(&name, 64).unwrap();
        match Segment::create(&name, 128) {
            Err(SegmentError::Os(e)) => assert_eq!(e.raw_os_error(), Some(libc::EEXIST)),
            other => panic!("expected EEXIST, got {other:?}"),
        }
        assert_eq!(Segment::open(&name).unwrap().len(), 64);
        seg.unlink().unwrap();
    }

    #[test]
    fn open_missing_is_enoent() {
        match Segment::open(&unique("c")) {
            Err(SegmentError::Os(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
            other => panic!("expected ENOENT, got {other:?}"),
        }
    }

    #[test]
    fn embedded_nul_is_refused_before_any_call() {
        assert!(matches!(
            Segment::open("/a\0b"),
            Err(SegmentError::EmbeddedNul)
        ));
        assert!(unlink("/a\0b").is_err());
    }

    #[test]
    fn open_or_create_reports_who_created() {
        let name = unique("d");
        let opts = OpenOptions {
            flags: libc::O_CREAT | libc::O_RDWR,
            mode: 0o600,
            size: Some(32),
            reserve: true,
        };
        let first = Segment::open_with(&name, &opts).unwrap();
        assert!(first.created());
        let second = Segment::open_with(&name, &opts).unwrap();
        assert!(!second.created());
        assert_eq!(second.len(), 32);
        first.unlink().unwrap();
    }

    #[test]
    fn empty_object_is_refused_and_left_alone() {
        let name = unique("e");
        let opts = OpenOptions {
            flags: libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            mode: 0o600,
            size: None,
            reserve: false,
        };
        assert!(matches!(
            Segment::open_with(&name, &opts),
            Err(SegmentError::Empty)
        ));
        // We created it, so the failed call removed it again.
        assert!(matches!(Segment::open(&name), Err(SegmentError::Os(_))));
    }

    #[test]
    fn hook_runs_after_creation_and_its_failure_removes_the_object() {
        let name = unique("h");
        let mut seen = None;
        let seg = Segment::open_with_hook(&name, &OpenOptions::create(4096), &mut || {
            // The object exists (not yet sized) when the hook runs.
            seen = Some(
                Segment::open(&name)
                    .map(|s| s.len())
                    .map_err(|e| e.to_string()),
            );
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, Some(Err("cannot mmap an empty file".to_owned())));
        // Attaching does not call it.
        let mut calls = 0;
        Segment::open_with_hook(&name, &OpenOptions::attach(), &mut || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 0);
        seg.unlink().unwrap();
        let failed = Segment::open_with_hook(&name, &OpenOptions::create(64), &mut || {
            Err(io::Error::from_raw_os_error(libc::EPIPE))
        });
        assert!(
            matches!(failed, Err(SegmentError::Os(ref e)) if e.raw_os_error() == Some(libc::EPIPE))
        );
        assert!(matches!(Segment::open(&name), Err(SegmentError::Os(_))));
    }

    #[test]
    fn random_names_have_cpython_shape() {
        let n = random_name("/psm_", 14).unwrap();
        assert_eq!(n.len(), 13);
        assert!(n.starts_with("/psm_"));
        assert!(n[5..].chars().all(|c| c.is_ascii_hexdigit()));
    }
}
