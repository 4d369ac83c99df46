//! Named shared-memory segments: create, open, map, unmap and unlink.
//!
//! A [`Segment`] is one mapping of a named OS shared-memory object: POSIX
//! `shm_open` on Unix (`unix.rs`, through rustix), a named file mapping on
//! Windows (`windows.rs`, through windows-sys), the objects CPython's
//! `SharedMemory` uses on each. The descriptor or handle is closed as soon
//! as the mapping exists, so a `Segment` owns exactly one resource: the
//! mapping, which [`Drop`] unmaps. The name is kept for `unlink`.
//!
//! Names are given the way Python's `multiprocessing.shared_memory` stores
//! them in `_name`: on POSIX with the leading `/` it wants
//! (`"/psm_1a2b3c4d"`), on Windows as they are (`"wnsm_1a2b3c4d"`);
//! [`os_name`] turns a name as Python reports it into that form.
//!
//! Platform differences that show through this API, all as in CPython:
//! on Windows [`unlink`] does nothing (a segment goes with its last
//! handle), an attached segment's [`Segment::len`] is rounded up to whole
//! pages, and errors carry Win32 codes ([`ERR_EXISTS`], [`ERR_NOT_FOUND`]);
//! on macOS names are at most 31 bytes ([`SegmentError::NameTooLong`]) and
//! the size of an attached segment is rounded up to pages as well.
//!
//! The memory behind a segment may be written at any moment by other
//! processes, so this module never hands out `&[u8]` views of it: callers
//! get a raw pointer ([`Segment::as_ptr`]) or copy with
//! [`Segment::read_at`] / [`Segment::write_at`].

use std::fmt;
use std::io;
use std::ptr::NonNull;

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
mod os;

/// The `raw_os_error()` of an open that failed because the name is taken:
/// `EEXIST` on POSIX, `ERROR_ALREADY_EXISTS` on Windows. (`io::ErrorKind::
/// AlreadyExists` says the same on both.)
#[cfg(unix)]
pub const ERR_EXISTS: i32 = libc::EEXIST;
/// The `raw_os_error()` of an open that failed because the name is taken:
/// `EEXIST` on POSIX, `ERROR_ALREADY_EXISTS` on Windows. (`io::ErrorKind::
/// AlreadyExists` says the same on both.)
#[cfg(windows)]
pub const ERR_EXISTS: i32 = windows_sys::Win32::Foundation::ERROR_ALREADY_EXISTS as i32;

/// The `raw_os_error()` of an attach to a name that does not exist:
/// `ENOENT` on POSIX, `ERROR_FILE_NOT_FOUND` on Windows (both 2).
#[cfg(unix)]
pub const ERR_NOT_FOUND: i32 = libc::ENOENT;
/// The `raw_os_error()` of an attach to a name that does not exist:
/// `ENOENT` on POSIX, `ERROR_FILE_NOT_FOUND` on Windows (both 2).
#[cfg(windows)]
pub const ERR_NOT_FOUND: i32 = windows_sys::Win32::Foundation::ERROR_FILE_NOT_FOUND as i32;

/// The prefix of CPython's random segment names, as Python reports them:
/// `psm_` on POSIX, `wnsm_` on Windows.
#[cfg(unix)]
pub const RANDOM_NAME_PREFIX: &str = "psm_";
/// The prefix of CPython's random segment names, as Python reports them:
/// `psm_` on POSIX, `wnsm_` on Windows.
#[cfg(windows)]
pub const RANDOM_NAME_PREFIX: &str = "wnsm_";

/// The longest segment name the platform takes, when ferroshm checks it
/// itself (macOS: 31 bytes, leading `/` included); `None` elsewhere.
pub const NAME_MAX: Option<usize> = os::NAME_MAX;

/// `O_ACCMODE`: the access-mode bits of the flags (Windows' C runtime has
/// the same values, `O_RDONLY` 0 and `O_RDWR` 2, but no constant for them).
#[cfg(unix)]
const ACCMODE: i32 = libc::O_ACCMODE;
#[cfg(windows)]
const ACCMODE: i32 = 3;

/// How to open a segment: the `open(2)`-style flags that Python passes
/// (`O_CREAT`, `O_EXCL`, `O_RDWR`/`O_RDONLY`), the permission bits for a new
/// object, and the size to give it when this call is the one that creates it.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// `open(2)` flags, as in `os.O_CREAT | os.O_EXCL | os.O_RDWR`.
    pub flags: i32,
    /// Permission bits of a newly created object (`0o600` by default).
    pub mode: u32,
    /// Size to give the object when this call creates it; `None` leaves
    /// the size alone (and an object that exists already is never resized).
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
        self.flags & ACCMODE != libc::O_RDONLY
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
    /// The name is longer than the platform allows (macOS: 31 bytes,
    /// leading `/` included); nothing was opened.
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The platform's limit in bytes.
        max: usize,
    },
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::Os(e) => e.fmt(f),
            SegmentError::EmbeddedNul => f.write_str("embedded null character"),
            SegmentError::Empty => f.write_str("cannot mmap an empty file"),
            SegmentError::NameTooLong { len, max } => write!(
                f,
                "shared memory name is {len} bytes long; this platform allows at most {max}, \
                 leading '/' included"
            ),
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
    map: Mapping,
    created: bool,
    /// [`UNLINKS`] when this segment was opened: while it has not changed,
    /// the segment's name still refers to the object this process created
    /// under it (only another process could have unlinked it).
    unlinks_at_open: u64,
}

/// How many names this process has unlinked (through [`unlink`]).
static UNLINKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One mapping of a segment's memory, with what the platform keeps beside
/// it ([`os::Keep`]: Windows, the section's handle). Unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    /// (device, inode): known from the `fstat` of an open, or (Linux, a
    /// segment this call created and sized, which needs no `fstat`) found
    /// on first use, from the mapping itself ([`os::mapping_identity`]).
    identity: std::sync::OnceLock<(u64, u64)>,
    /// Dropped after the memory is unmapped (fields drop after `drop`).
    _keep: os::Keep,
}

// SAFETY: the mapping is plain shared memory, not tied to the thread that
// made it; every access goes through raw pointers whose users already cope
// with concurrent writers (other processes), so sharing across threads adds
// nothing new.
unsafe impl Send for Mapping {}
// SAFETY: as above; `Mapping` has no interior state besides the memory.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are what the platform's map call returned, and
        // nothing else unmaps them. Every user of the memory holds this
        // `Mapping` (through `Segment` and its owners), so none is left.
        unsafe { os::unmap(self.ptr, self.len) }
    }
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
        check_nul(name)?;
        let unlinks_at_open = UNLINKS.load(std::sync::atomic::Ordering::Relaxed);
        let (map, created) = os::open_and_map(name, opts, hook, hook_first)?;
        Ok(Segment {
            name: name.to_owned(),
            map,
            created,
            unlinks_at_open,
        })
    }

    /// Give the placeholder `name` (an empty object made by
    /// [`create_placeholder`]) `size` bytes, its pages reserved as
    /// [`Segment::create`] reserves them, and map it. Fails with `EEXIST` if
    /// the object is not empty any more (someone else sized it), `ENOENT`
    /// if it is gone; on failure nothing is removed, the name belongs to
    /// whoever made the placeholder. [`Segment::created`] is false.
    ///
    /// This is how a `SharedMemoryManager` client allocates without a round
    /// trip: its server creates, owns and tracks the names, the client only
    /// sizes them. POSIX only: on Windows, whose sections are sized when
    /// created, it fails with [`io::ErrorKind::Unsupported`].
    pub fn open_placeholder(name: &str, size: usize) -> Result<Segment, SegmentError> {
        Segment::open_placeholder_with(name, size, true)
    }

    /// As [`Segment::open_placeholder`], reserving the pages only with
    /// `reserve` (without, the segment is sparse: see
    /// [`OpenOptions::reserve`]).
    pub fn open_placeholder_with(
        name: &str,
        size: usize,
        reserve: bool,
    ) -> Result<Segment, SegmentError> {
        check_nul(name)?;
        if size == 0 {
            return Err(SegmentError::Empty);
        }
        let opts = OpenOptions {
            reserve,
            ..OpenOptions::create(size)
        };
        let unlinks_at_open = UNLINKS.load(std::sync::atomic::Ordering::Relaxed);
        let map = os::open_placeholder(name, &opts)?;
        Ok(Segment {
            name: name.to_owned(),
            map,
            created: false,
            unlinks_at_open,
        })
    }

    /// The name as passed to the OS (POSIX: with its leading `/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this handle's open call created the object.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The size of the mapping in bytes (the object's size when it was opened).
    pub fn len(&self) -> usize {
        self.map.len
    }

    /// Never true: empty objects are refused when opened.
    pub fn is_empty(&self) -> bool {
        self.map.len == 0
    }

    /// Device and inode of the object this segment maps: two handles with
    /// the same identity map the same object, and an object re-created
    /// under the same name has a different one. On Windows, where sections
    /// have no inode, `(0, hash of the name)`: a name refers to one section
    /// while any handle to it lives, so live handles compare correctly, but
    /// a section re-created after all handles closed looks the same.
    ///
    /// A segment this handle created on Linux learns it on the first call
    /// (so that creating costs no `fstat`): from its name, which refers to
    /// the object this handle created exclusively, or, once this process
    /// has unlinked a name since (or the name is gone), from the kernel's
    /// record of this mapping (`/proc/self/maps`). Limit: another process
    /// that unlinks the name and creates another object under it before
    /// the first call makes the name give that object's identity.
    pub fn identity(&self) -> (u64, u64) {
        *self
            .map
            .identity
            .get_or_init(|| os::mapping_identity(self.map.ptr, &self.name, self.name_is_ours()))
    }

    /// Whether this segment's name can be trusted to refer to its object
    /// (see `unlinks_at_open`), for finding an identity not looked up yet.
    fn name_is_ours(&self) -> bool {
        UNLINKS.load(std::sync::atomic::Ordering::Relaxed) == self.unlinks_at_open
    }

    /// Whether the mapping may be written.
    pub fn writable(&self) -> bool {
        self.map.writable
    }

    /// Start of the mapping. Valid for `len()` bytes while `self` lives; other
    /// processes may change the bytes at any time.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.ptr.as_ptr()
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

    /// A new descriptor of this segment's object, opened by name, if the
    /// name still refers to the object this segment maps: `ENOENT` if the
    /// name is gone, `ESTALE` if it names another object now. (The
    /// descriptor the segment was opened with is closed once it is mapped;
    /// this gives one to code that needs it, as Python's
    /// `SharedMemory._fd`.) Unix only.
    #[cfg(unix)]
    pub fn reopen(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        let fd = os::open_existing(&self.name, self.writable())?;
        let found = os::fd_identity(fd.as_fd())?;
        // A segment created without its identity looked up (see
        // `identity`) takes the one its name gives, while that is its own.
        let mine = if self.name_is_ours() {
            *self.map.identity.get_or_init(|| found)
        } else {
            self.identity()
        };
        if mine != found {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(fd)
    }

    /// Remove this segment's name from the system (`shm_unlink`). The memory
    /// stays mapped here and in every other process until they unmap it.
    /// On Windows this does nothing, as in CPython: the segment disappears
    /// when its last handle, in any process, is closed.
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

/// Remove the segment called `name` (with its leading `/`). A no-op on
/// Windows (see [`Segment::unlink`]).
pub fn unlink(name: &str) -> io::Result<()> {
    if name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "embedded null character",
        ));
    }
    UNLINKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    os::unlink(name)
}

/// Names reach the OS as C strings: an embedded NUL is refused, never cut.
fn check_nul(name: &str) -> Result<(), SegmentError> {
    if name.as_bytes().contains(&0) {
        return Err(SegmentError::EmbeddedNul);
    }
    Ok(())
}

/// Create `name` (with its leading `/`) as an empty placeholder object, of
/// size 0 and permissions `mode`, failing with `EEXIST` if it exists: it
/// holds the name until [`Segment::open_placeholder`] sizes it. POSIX only
/// (Windows: [`io::ErrorKind::Unsupported`]).
pub fn create_placeholder(name: &str, mode: u32) -> Result<(), SegmentError> {
    check_nul(name)?;
    os::create_placeholder(name, mode)
}

/// The size in bytes of the object `name` now, without mapping it (0 for
/// an unused placeholder). POSIX only (Windows:
/// [`io::ErrorKind::Unsupported`]).
pub fn object_size(name: &str) -> Result<u64, SegmentError> {
    check_nul(name)?;
    os::object_size(name)
}

/// Write all of `msg` to the open file descriptor `fd` (retrying on EINTR),
/// e.g. a line to a resource tracker's pipe from a [`Segment::open_with_hook`]
/// hook, while no Python lock is held.
#[cfg(unix)]
pub fn write_to_fd(fd: i32, msg: &[u8]) -> io::Result<()> {
    os::write_all_fd(fd, msg)
}

/// (device, inode) of the object open on `fd`: equal to a
/// [`Segment::identity`] when `fd` is a descriptor of that segment.
#[cfg(unix)]
pub fn fd_identity(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    os::fd_identity(fd)
}

/// A close-on-exec duplicate of the open descriptor `fd`, which the caller
/// keeps open meanwhile (e.g. a resource tracker's pipe).
#[cfg(unix)]
pub fn dup_fd(fd: i32) -> io::Result<i32> {
    os::dup_fd(fd)
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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let nbytes = len.saturating_sub(prefix.len()) / 2;
    let mut name = String::with_capacity(prefix.len() + 2 * nbytes);
    name.push_str(prefix);
    let mut chunk = [0u8; 32];
    let mut left = nbytes;
    while left > 0 {
        let n = left.min(chunk.len());
        random_bytes(&mut chunk[..n])?;
        for &b in &chunk[..n] {
            name.push(char::from(HEX[usize::from(b >> 4)]));
            name.push(char::from(HEX[usize::from(b & 15)]));
        }
        left -= n;
    }
    Ok(name)
}

/// Fill `out` with bytes from the OS random source (getrandom(2),
/// getentropy, ProcessPrng), drawn a few hundred at a time: a name takes
/// 4 of them, and one system call per name would be a good part of the
/// cost of creating a small segment. The bytes are each thread's own and
/// are never used twice; a child process after `fork` never uses bytes its
/// parent drew (see [`fork_generation`]).
pub fn random_bytes(out: &mut [u8]) -> io::Result<()> {
    const POOL: usize = 256;
    struct Pool {
        bytes: [u8; POOL],
        used: usize,
        generation: u64,
    }
    thread_local! {
        static RANDOM: std::cell::RefCell<Pool> = const {
            std::cell::RefCell::new(Pool { bytes: [0; POOL], used: POOL, generation: 0 })
        };
    }
    if out.len() > POOL {
        return getrandom::fill(out).map_err(io::Error::from);
    }
    RANDOM.with(|pool| {
        let mut pool = pool.borrow_mut();
        let generation = fork_generation();
        if pool.generation != generation || pool.used + out.len() > POOL {
            getrandom::fill(&mut pool.bytes).map_err(io::Error::from)?;
            pool.used = 0;
            pool.generation = generation;
        }
        let start = pool.used;
        out.copy_from_slice(&pool.bytes[start..start + out.len()]);
        // Used bytes are wiped, so that nothing drawn stays in memory.
        pool.bytes[start..start + out.len()].fill(0);
        pool.used += out.len();
        Ok(())
    })
}

/// How many times this process's ancestry has forked since ferroshm first
/// drew random bytes: a `pthread_atfork` child handler (registered once)
/// counts up, so that a child discards the random bytes its parent drew
/// but had not used (both would otherwise make the same names).
#[cfg(unix)]
fn fork_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Once;
    static GENERATION: AtomicU64 = AtomicU64::new(1);
    static REGISTER: Once = Once::new();
    extern "C" fn forked() {
        GENERATION.fetch_add(1, Ordering::Relaxed);
    }
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only increments an atomic (async-
        // signal-safe, as a fork handler must be); no other handler is set.
        // A failure (ENOMEM) leaves no handler: then a child may reuse its
        // parent's pool, whose names are still random to everyone else, and
        // a clash between the two is an EEXIST that callers retry.
        unsafe { libc::pthread_atfork(None, None, Some(forked)) };
    });
    GENERATION.load(Ordering::Relaxed)
}

/// No `fork` on this platform.
#[cfg(not(unix))]
fn fork_generation() -> u64 {
    1
}

/// The OS name of the segment that Python reports as `name`
/// (`SharedMemory.name`, `ShareableList.shm.name`): POSIX names carry a
/// leading `/` that Python hides. A name that has it already is kept.
/// On Windows names carry no prefix, and this is the identity.
/// This and [`reported_name`] are the one place the rule is written.
pub fn os_name(name: &str) -> std::borrow::Cow<'_, str> {
    if cfg!(windows) || name.starts_with('/') {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(format!("/{name}"))
    }
}

/// The name Python reports for the OS name `os_name`: without the leading
/// `/` (Windows: unchanged). The inverse of [`os_name`].
pub fn reported_name(os_name: &str) -> &str {
    if cfg!(windows) {
        return os_name;
    }
    os_name.strip_prefix('/').unwrap_or(os_name)
}

/// Whether `name` is a full OS name (POSIX: it starts with `/`), as opposed
/// to one given the way Python reports it. Always true on Windows, where
/// the two are the same.
pub fn is_os_name(name: &str) -> bool {
    cfg!(windows) || name.starts_with('/')
}

/// Where named segments appear as files, when the platform has such a place.
pub fn segment_dir() -> Option<&'static std::path::Path> {
    os::SEGMENT_DIR.map(std::path::Path::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh OS name for a test (POSIX: with its leading `/`).
    fn unique(tag: &str) -> String {
        random_name(&os_name(&format!("fshm_t{tag}_")), 24).unwrap()
    }

    /// What an attached segment of `size` bytes reports as its length:
    /// the size itself on POSIX (Linux; macOS rounds fstat to pages too,
    /// but is not run here), whole pages on Windows.
    fn attached_len(size: usize) -> usize {
        if cfg!(windows) {
            size.div_ceil(4096) * 4096
        } else {
            size
        }
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
        assert_eq!(other.len(), attached_len(4097));
        assert_eq!(other.identity(), seg.identity());
        let mut got = [0u8; 7];
        other.read_at(4090, &mut got);
        assert_eq!(&got, b"abcdefg");
        seg.unlink().unwrap();
        if cfg!(unix) {
            assert_eq!(
                unlink(&name).unwrap_err().raw_os_error(),
                Some(ERR_NOT_FOUND)
            );
        }
        // The mapping outlives the name.
        other.read_at(4090, &mut got);
        assert_eq!(&got, b"abcdefg");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_created_segment_knows_its_identity_without_fstat() {
        use std::os::unix::fs::MetadataExt;
        let name = unique("id");
        let seg = Segment::create(&name, 5000).unwrap();
        let meta = std::fs::metadata(format!("/dev/shm/{}", reported_name(&name))).unwrap();
        // Found from the mapping (this create made no fstat), and equal to
        // what an attach's fstat gives.
        assert_eq!(seg.identity(), (meta.dev(), meta.ino()));
        assert_eq!(Segment::open(&name).unwrap().identity(), seg.identity());
        // Still the mapped object's once the name is gone or re-created.
        seg.unlink().unwrap();
        let other = Segment::create(&name, 64).unwrap();
        assert_eq!(seg.identity(), (meta.dev(), meta.ino()));
        assert_ne!(other.identity(), seg.identity());
        other.unlink().unwrap();
        // First asked once the name is gone: from /proc/self/maps.
        let third = Segment::create(&name, 64).unwrap();
        let meta = std::fs::metadata(format!("/dev/shm/{}", reported_name(&name))).unwrap();
        third.unlink().unwrap();
        assert_eq!(third.identity(), (meta.dev(), meta.ino()));
    }

    #[test]
    fn create_existing_is_eexist_and_keeps_the_original() {
        let name = unique("b");
        let seg = Segment::create(&name, 64).unwrap();
        seg.write_at(0, b"first");
        match Segment::create(&name, 128) {
            Err(SegmentError::Os(e)) => {
                assert_eq!(e.raw_os_error(), Some(ERR_EXISTS));
                assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            }
            other => panic!("expected EEXIST, got {other:?}"),
        }
        let again = Segment::open(&name).unwrap();
        assert_eq!(again.len(), attached_len(64));
        let mut got = [0u8; 5];
        again.read_at(0, &mut got);
        assert_eq!(&got, b"first");
        seg.unlink().unwrap();
    }

    #[test]
    fn open_missing_is_enoent() {
        match Segment::open(&unique("c")) {
            Err(SegmentError::Os(e)) => {
                assert_eq!(e.raw_os_error(), Some(ERR_NOT_FOUND));
                assert_eq!(e.kind(), io::ErrorKind::NotFound);
            }
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
    fn open_or_create_reports_who_created_and_never_resizes() {
        let name = unique("d");
        let opts = |size| OpenOptions {
            flags: libc::O_CREAT | libc::O_RDWR,
            mode: 0o600,
            size: Some(size),
            reserve: true,
        };
        let first = Segment::open_with(&name, &opts(32)).unwrap();
        assert!(first.created());
        // A second open-or-create finds the object and leaves its size
        // alone (macOS would refuse a second ftruncate anyway).
        let second = Segment::open_with(&name, &opts(8192)).unwrap();
        assert!(!second.created());
        assert_eq!(second.len(), attached_len(32));
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
        // Nothing is left: POSIX removed what it created, Windows could
        // not create a section of size 0 at all.
        assert!(matches!(Segment::open(&name), Err(SegmentError::Os(_))));
    }

    #[test]
    fn hook_runs_after_creation_and_its_failure_removes_the_object() {
        let name = unique("h");
        let mut seen = None;
        let seg = Segment::open_with_hook(&name, &OpenOptions::create(4096), &mut || {
            seen = Some(
                Segment::open(&name)
                    .map(|s| s.len())
                    .map_err(|e| e.to_string()),
            );
            Ok(())
        })
        .unwrap();
        // The object exists when the hook runs: on POSIX not yet sized, on
        // Windows sized at creation.
        let expected = if cfg!(windows) {
            Ok(4096)
        } else {
            Err("cannot mmap an empty file".to_owned())
        };
        assert_eq!(seen, Some(expected));
        // Attaching does not call it.
        let mut calls = 0;
        Segment::open_with_hook(&name, &OpenOptions::attach(), &mut || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 0);
        seg.unlink().unwrap();
        drop(seg);
        let failed = Segment::open_with_hook(&name, &OpenOptions::create(64), &mut || {
            Err(io::Error::from_raw_os_error(libc::EPIPE))
        });
        assert!(
            matches!(failed, Err(SegmentError::Os(ref e)) if e.raw_os_error() == Some(libc::EPIPE))
        );
        assert!(matches!(Segment::open(&name), Err(SegmentError::Os(_))));
    }

    #[test]
    fn announced_hook_failure_creates_nothing() {
        let name = unique("f");
        let failed = Segment::open_announced(&name, &OpenOptions::create(64), &mut || {
            Err(io::Error::from_raw_os_error(libc::EPIPE))
        });
        assert!(matches!(failed, Err(SegmentError::Os(_))));
        assert!(matches!(Segment::open(&name), Err(SegmentError::Os(_))));
    }

    #[cfg(unix)]
    #[test]
    fn placeholder_is_sized_once_by_whoever_opens_it() {
        let name = unique("p");
        create_placeholder(&name, 0o600).unwrap();
        assert_eq!(object_size(&name).unwrap(), 0);
        match create_placeholder(&name, 0o600) {
            Err(SegmentError::Os(e)) => assert_eq!(e.raw_os_error(), Some(ERR_EXISTS)),
            other => panic!("expected EEXIST, got {other:?}"),
        }
        // An empty object cannot be attached to, only filled.
        assert!(matches!(Segment::open(&name), Err(SegmentError::Empty)));
        let seg = Segment::open_placeholder(&name, 5000).unwrap();
        assert!(!seg.created());
        assert_eq!(seg.len(), 5000);
        assert_eq!(object_size(&name).unwrap(), 5000);
        seg.write_at(4990, b"filled");
        // Sized once: a second fill is EEXIST and changes nothing.
        match Segment::open_placeholder(&name, 64) {
            Err(SegmentError::Os(e)) => assert_eq!(e.raw_os_error(), Some(ERR_EXISTS)),
            other => panic!("expected EEXIST, got {other:?}"),
        }
        let other = Segment::open(&name).unwrap();
        assert_eq!(other.identity(), seg.identity());
        let mut got = [0u8; 6];
        other.read_at(4990, &mut got);
        assert_eq!(&got, b"filled");
        seg.unlink().unwrap();
        // Gone: ENOENT, and nothing is created.
        for failed in [
            Segment::open_placeholder(&name, 64).map(|_| ()),
            object_size(&name).map(|_| ()),
        ] {
            match failed {
                Err(SegmentError::Os(e)) => assert_eq!(e.raw_os_error(), Some(ERR_NOT_FOUND)),
                other => panic!("expected ENOENT, got {other:?}"),
            }
        }
        assert!(matches!(
            Segment::open_placeholder(&name, 0),
            Err(SegmentError::Empty)
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_forked_child_draws_other_random_bytes_than_its_parent() {
        let mut first = [0u8; 4];
        random_bytes(&mut first).unwrap(); // the pool is filled now
        let mut fds = [0; 2];
        // SAFETY: a plain pipe; both ends are closed below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only draws bytes (no lock is taken: the pool is
        // thread-local), writes them and exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut mine = [0u8; 4];
            let ok = random_bytes(&mut mine).is_ok();
            // SAFETY: writes 4 bytes from a local buffer, then leaves at once.
            unsafe {
                libc::write(fds[1], mine.as_ptr().cast(), if ok { 4 } else { 0 });
                libc::_exit(0);
            }
        }
        let mut parents = [0u8; 4];
        random_bytes(&mut parents).unwrap();
        let mut childs = [0u8; 4];
        // SAFETY: reads into a local buffer from our pipe, then reaps the
        // child and closes both ends.
        unsafe {
            assert_eq!(libc::read(fds[0], childs.as_mut_ptr().cast(), 4), 4);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        // The same 4 bytes would mean the child reused the parent's pool
        // (chance otherwise: 1 in 2^32).
        assert_ne!(parents, childs);
    }

    #[test]
    fn random_names_have_cpython_shape() {
        let n = random_name("/psm_", 14).unwrap();
        assert_eq!(n.len(), 13);
        assert!(n.starts_with("/psm_"));
        assert!(n[5..].chars().all(|c| c.is_ascii_hexdigit()));
        // The platform's own prefix: wnsm_ + 8 hex on Windows.
        let n = random_name(RANDOM_NAME_PREFIX, 13).unwrap();
        assert_eq!(n.len(), RANDOM_NAME_PREFIX.len() + 8);
    }

    #[test]
    fn name_rules_round_trip() {
        let os = os_name("psm_12345678");
        assert!(is_os_name(&os));
        assert_eq!(reported_name(&os), "psm_12345678");
        if cfg!(windows) {
            assert_eq!(os, "psm_12345678");
        } else {
            assert_eq!(os, "/psm_12345678");
            assert!(!is_os_name("psm_12345678"));
            assert_eq!(os_name("/x"), "/x");
        }
    }

    /// Linux refuses what glibc's shm_open refuses, with glibc's EINVAL.
    #[cfg(target_os = "linux")]
    #[test]
    fn linux_name_rules_are_glibcs() {
        for bad in ["/", "//", "/a/b", &format!("/{}", "x".repeat(300))] {
            match Segment::open(bad) {
                Err(SegmentError::Os(e)) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{bad}")
                }
                other => panic!("{bad}: expected EINVAL, got {other:?}"),
            }
        }
    }

    /// As glibc's shm_open: a symlink in /dev/shm is not followed (ELOOP).
    #[cfg(target_os = "linux")]
    #[test]
    fn linux_attach_never_follows_a_symlink() {
        let name = unique("s");
        let target = std::env::temp_dir().join(format!("{}-target", &name[1..]));
        std::fs::write(&target, [b'x'; 4096]).unwrap();
        let link = std::path::Path::new("/dev/shm").join(&name[1..]);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let got = Segment::open(&name);
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_file(&target).unwrap();
        match got {
            Err(SegmentError::Os(e)) => assert_eq!(e.raw_os_error(), Some(libc::ELOOP)),
            other => panic!("expected ELOOP, got {other:?}"),
        }
    }

    /// The descriptor helpers for the tracker's pipe: the write arrives
    /// whole, and a closed descriptor is EBADF, not a crash.
    #[cfg(unix)]
    #[test]
    fn pipe_helpers_write_and_close() {
        use std::io::Read;
        use std::os::fd::IntoRawFd;
        let (mut reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = writer.into_raw_fd();
        write_to_fd(fd, b"REGISTER:/x:shared_memory\n").unwrap();
        close_fd(fd);
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "REGISTER:/x:shared_memory\n");
        assert_eq!(
            write_to_fd(-1, b"x").unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }

    /// On Windows a section goes with its last view: unlink changes
    /// nothing, and dropping the last handle removes the segment.
    #[cfg(windows)]
    #[test]
    fn windows_section_lives_with_its_handles() {
        let name = unique("w");
        let seg = Segment::create(&name, 100).unwrap();
        seg.unlink().unwrap();
        let other = Segment::open(&name).unwrap();
        assert_eq!(other.len(), 4096);
        drop(seg);
        drop(other);
        match Segment::open(&name) {
            Err(SegmentError::Os(e)) => assert_eq!(e.raw_os_error(), Some(ERR_NOT_FOUND)),
            other => panic!("expected the section to be gone, got {other:?}"),
        }
    }

    /// The environment variable that makes this test binary the child of
    /// [`two_processes_share_a_segment_and_a_list`].
    const CHILD_ENV: &str = "FERROSHM_TEST_CHILD";

    /// The child's half of [`two_processes_share_a_segment_and_a_list`]:
    /// a no-op unless started by it.
    #[test]
    fn child_process_role() {
        let Ok(names) = std::env::var(CHILD_ENV) else {
            return;
        };
        let (seg_name, list_name) = names.split_once(',').unwrap();
        let seg = Segment::open(seg_name).unwrap();
        let mut got = [0u8; 6];
        seg.read_at(1000, &mut got);
        assert_eq!(&got, b"parent");
        seg.write_at(2000, b"child!");
        let list = crate::SharedList::open(list_name).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(
            list.get(1).unwrap(),
            crate::Value::Str("from parent".into())
        );
        list.set(0, crate::ItemRef::Int(-7)).unwrap();
        list.set(2, crate::ItemRef::Bytes(b"child")).unwrap();
    }

    /// Two processes: this one creates a segment and a ShareableList, a
    /// child (this test binary again, running [`child_process_role`])
    /// attaches to both by name, checks what the parent wrote and writes
    /// back, and the parent sees the child's writes. Under wine this is the
    /// Windows backend across processes.
    #[test]
    fn two_processes_share_a_segment_and_a_list() {
        use crate::{ItemRef, SharedList, Value};
        let seg_name = unique("x");
        let seg = Segment::create(&seg_name, 3000).unwrap();
        seg.write_at(1000, b"parent");
        let list = SharedList::create_unique(&[
            ItemRef::Int(1),
            ItemRef::Str("from parent"),
            ItemRef::Bytes(b"........"),
        ])
        .unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "segment::tests::child_process_role",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{seg_name},{}", list.name()))
            .output()
            .unwrap();
        let cleanup = || {
            let _ = seg.unlink();
            let _ = list.unlink();
        };
        if !out.status.success() {
            cleanup();
            panic!(
                "child failed: {}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("1 passed"),
            "the child ran no test:\n{stdout}"
        );
        let mut got = [0u8; 6];
        seg.read_at(2000, &mut got);
        assert_eq!(list.get(0).unwrap(), Value::Int(-7));
        assert_eq!(list.get(2).unwrap(), Value::Bytes(b"child".to_vec()));
        cleanup();
        assert_eq!(&got, b"child!");
    }
}
