//! POSIX shared memory through rustix: `shm_open`, `ftruncate`,
//! `fallocate` (Linux), `fstat`, `mmap`, `munmap`, `shm_unlink`. Every
//! system call of the segment module on Unix lives in this file.
//!
//! rustix hands out [`OwnedFd`]s, so a descriptor is closed exactly once
//! whatever path a call takes, and reports failures as `Errno`s, which
//! become `io::Error`s carrying the same errno. Interrupted calls are
//! retried with [`retry_on_intr`]. `unsafe` is left only where memory is
//! mapped or unmapped, and where a descriptor number comes from the caller.
//!
//! Platform rules: Linux reserves a new object's pages with `fallocate`;
//! macOS has no `fallocate` for shared-memory objects, lets `ftruncate` size
//! an object only once (so it is called only by the call that created it)
//! and limits names to 31 bytes, leading `/` included (`PSHMNAMLEN`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::Mode;
use rustix::io::{retry_on_intr, Errno};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

use super::{Mapping, OpenOptions, SegmentError};

/// Where `shm_open` names appear as files.
#[cfg(target_os = "linux")]
pub(super) const SEGMENT_DIR: Option<&str> = Some("/dev/shm");
#[cfg(not(target_os = "linux"))]
pub(super) const SEGMENT_DIR: Option<&str> = None;

/// The longest name `shm_open` takes on macOS, leading `/` included
/// (`PSHMNAMLEN` in XNU's `bsd/kern/posix_shm.c`).
#[cfg(target_vendor = "apple")]
pub(super) const NAME_MAX: Option<usize> = Some(31);
/// No limit of ferroshm's own: the C library's rules apply.
#[cfg(not(target_vendor = "apple"))]
pub(super) const NAME_MAX: Option<usize> = None;

/// Nothing to keep beside a mapping: the descriptor can close once mapped.
pub(super) type Keep = ();

/// Unmap `len` bytes at `ptr`.
///
/// # Safety
/// `ptr`/`len` must be exactly what `mmap` returned, unmapped only here and
/// with no user of the memory left.
pub(super) unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the caller's contract. munmap of a valid mapping cannot fail;
    // were it to, a destructor could do nothing about it, so the result is
    // ignored.
    let _ = unsafe { rustix::mm::munmap(ptr.as_ptr().cast(), len) };
}

/// Linux's name rule, checked here as glibc's `shm_open` checks it (rustix
/// opens `/dev/shm/NAME` itself, with a slightly different rule): leading
/// slashes are dropped, and what is left must be non-empty, free of `/`
/// and fit glibc's buffer, or the call fails with `EINVAL` as the standard
/// library's does.
#[cfg(target_os = "linux")]
fn check_name(name: &str) -> Result<(), SegmentError> {
    let bare = name.trim_start_matches('/');
    // glibc: "/dev/shm/" + "sem." + NAME_MAX (255) bytes, NUL included.
    if bare.is_empty() || bare.contains('/') || bare.len() > 260 {
        return Err(io::Error::from(Errno::INVAL).into());
    }
    Ok(())
}

/// macOS's name rule: at most [`NAME_MAX`] bytes, with an error that says
/// so (the kernel only says `ENAMETOOLONG`).
#[cfg(not(target_os = "linux"))]
fn check_name(name: &str) -> Result<(), SegmentError> {
    match NAME_MAX {
        Some(max) if name.len() > max => Err(SegmentError::NameTooLong {
            len: name.len(),
            max,
        }),
        _ => Ok(()),
    }
}

fn shm_open(name: &str, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // The flags are Python's os.O_* values, the C library's own: passed on
    // bit for bit (ShmOFlags keeps unknown bits), as `_posixshmem` does.
    // On Linux rustix opens /dev/shm/NAME itself and adds only O_CLOEXEC:
    // O_NOFOLLOW is added here, as glibc's shm_open adds it, so that a
    // symlink planted in /dev/shm is ELOOP and never followed.
    #[cfg(target_os = "linux")]
    let flags = flags | libc::O_NOFOLLOW;
    let flags = shm::OFlags::from_bits_retain(flags as u32);
    let mode = Mode::from_bits_retain(mode as _);
    Ok(retry_on_intr(|| shm::open(name, flags, mode))?)
}

/// Open `name` as `opts` says and map it. Returns the mapping and whether
/// this call created the object; `hook` runs right after creating it,
/// before it is sized. After a failure nothing is left open, and the object
/// is removed only if this call created it.
pub(super) fn open_and_map(
    name: &str,
    opts: &OpenOptions,
    hook: &mut dyn FnMut() -> io::Result<()>,
    hook_first: bool,
) -> Result<(Mapping, bool), SegmentError> {
    check_name(name)?;
    if hook_first {
        hook()?;
    }
    let creating = opts.flags & libc::O_CREAT != 0;
    let (fd, created) = if creating && opts.flags & libc::O_EXCL == 0 {
        // Open-or-create: try to create first, so that we know whether a
        // later failure may remove the object.
        match shm_open(name, opts.flags | libc::O_EXCL, opts.mode) {
            Ok(fd) => (fd, true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => (
                shm_open(name, opts.flags & !libc::O_CREAT, opts.mode)?,
                false,
            ),
            Err(e) => return Err(e.into()),
        }
    } else {
        (shm_open(name, opts.flags, opts.mode)?, creating)
    };
    let hooked = if created && !hook_first {
        hook().map_err(SegmentError::from)
    } else {
        Ok(())
    };
    let size = if created { opts.size } else { None };
    match hooked.and_then(|()| size_and_map(fd.as_fd(), size, opts)) {
        Ok(map) => Ok((map, created)),
        Err(e) => {
            if created {
                // The object is ours: this call created it exclusively a
                // moment ago. Its error is the one to report.
                let _ = retry_on_intr(|| shm::unlink(name));
            }
            Err(e)
        }
    }
}

/// Create `name` as an empty object (size 0), failing with `EEXIST` if
/// the name is taken: a placeholder that reserves the name until
/// [`open_placeholder`] sizes it (or someone unlinks it).
pub(super) fn create_placeholder(name: &str, mode: u32) -> Result<(), SegmentError> {
    check_name(name)?;
    shm_open(name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, mode)?;
    Ok(())
}

/// The size of the object `name` now, without mapping it.
pub(super) fn object_size(name: &str) -> Result<u64, SegmentError> {
    check_name(name)?;
    let fd = shm_open(name, libc::O_RDONLY, 0)?;
    let st = retry_on_intr(|| rustix::fs::fstat(&fd)).map_err(io::Error::from)?;
    Ok(st.st_size as u64)
}

/// Open the existing object `name`, which must still be empty (a
/// placeholder; `EEXIST` otherwise, `ENOENT` if it is gone), give it
/// `opts.size` bytes as a create would (pages reserved with `opts.reserve`)
/// and map it. Nothing is removed on failure: the name is not this call's.
pub(super) fn open_placeholder(name: &str, opts: &OpenOptions) -> Result<Mapping, SegmentError> {
    check_name(name)?;
    let fd = shm_open(
        name,
        opts.flags & !(libc::O_CREAT | libc::O_EXCL),
        opts.mode,
    )?;
    let st = retry_on_intr(|| rustix::fs::fstat(&fd)).map_err(io::Error::from)?;
    if st.st_size != 0 {
        return Err(io::Error::from(Errno::EXIST).into());
    }
    let map = size_and_map(fd.as_fd(), opts.size, opts)?;
    // Known from the fstat above (the name is the server's, not ours).
    #[allow(clippy::unnecessary_cast)] // dev_t/ino_t widths differ by platform
    let _ = map.identity.set((st.st_dev as u64, st.st_ino as u64));
    Ok(map)
}

/// Size a new object (`size`: only the call that created it sizes it;
/// macOS allows a single `ftruncate`), then map all of it.
fn size_and_map(
    fd: BorrowedFd<'_>,
    size: Option<usize>,
    opts: &OpenOptions,
) -> Result<Mapping, SegmentError> {
    if let Some(size) = size.filter(|&s| s > 0) {
        // off_t is signed: larger sizes are EFBIG, as for ftruncate itself.
        let len = i64::try_from(size).map_err(|_| io::Error::from(Errno::FBIG))? as u64;
        // Reserving the pages also sets the size (fallocate extends the
        // file); only where nothing can be reserved is ftruncate needed.
        if !(opts.reserve && reserve(fd, len)?) {
            retry_on_intr(|| rustix::fs::ftruncate(fd, len)).map_err(io::Error::from)?;
        }
    }
    // The size: the one just given, on Linux, where an object's size is
    // exactly what it was given; otherwise (attaching, or macOS, which
    // rounds sizes up to pages) the object's, from fstat, which also gives
    // the identity. (Skipping the fstat of a create is a measurable part of
    // its cost; the identity is then found when first asked for.)
    let (len, identity) = match size.filter(|&s| s > 0 && cfg!(target_os = "linux")) {
        Some(size) => (size, std::sync::OnceLock::new()),
        None => {
            let st = retry_on_intr(|| rustix::fs::fstat(fd)).map_err(io::Error::from)?;
            let len = usize::try_from(st.st_size).map_err(|_| io::Error::from(Errno::OVERFLOW))?;
            #[allow(clippy::unnecessary_cast)] // dev_t/ino_t widths differ by platform
            let identity = std::sync::OnceLock::from((st.st_dev as u64, st.st_ino as u64));
            (len, identity)
        }
    };
    if len == 0 {
        return Err(SegmentError::Empty);
    }
    let writable = opts.writable();
    let prot = if writable {
        ProtFlags::READ | ProtFlags::WRITE
    } else {
        ProtFlags::READ
    };
    // SAFETY: a fresh shared mapping at an address the kernel chooses (null
    // hint, no MAP_FIXED), so no existing memory is replaced; `fd` is open
    // for the call. The memory is only ever reached through raw pointers
    // (see the module docs of `segment`), so other processes writing it,
    // or the object shrinking, cannot break Rust's aliasing rules.
    let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0) }
        .map_err(io::Error::from)?;
    let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::from(Errno::NOMEM))?;
    Ok(Mapping {
        ptr,
        len,
        writable,
        identity,
        _keep: (),
    })
}

/// Give the object real pages now, and with them its size, so that running
/// out of room in the tmpfs is an `ENOSPC` here and not a SIGBUS on first
/// touch. Returns whether the pages were reserved (false where the
/// filesystem cannot reserve; the caller then only sets the size).
#[cfg(target_os = "linux")]
fn reserve(fd: BorrowedFd<'_>, len: u64) -> io::Result<bool> {
    // The system call (rustix calls the kernel directly; glibc's
    // posix_fallocate would emulate it by writing every block), so that an
    // unsupported filesystem says so.
    match retry_on_intr(|| rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, len)) {
        Ok(()) => Ok(true),
        // Filesystems without fallocate: nothing can be reserved; carry on
        // as the standard library does.
        Err(Errno::OPNOTSUPP) | Err(Errno::NOSYS) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// No `fallocate` for shared-memory objects here (macOS, the BSDs): the
/// size is set with `ftruncate` alone.
#[cfg(not(target_os = "linux"))]
fn reserve(_fd: BorrowedFd<'_>, _len: u64) -> io::Result<bool> {
    Ok(false)
}

/// A new descriptor of the object `name`, opened for reading and writing
/// if `writable` (close-on-exec, no symlink followed).
pub(super) fn open_existing(name: &str, writable: bool) -> io::Result<OwnedFd> {
    check_name(name).map_err(|e| match e {
        SegmentError::Os(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
    })?;
    shm_open(
        name,
        if writable {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        },
        0,
    )
}

/// (device, inode) of the object mapped at `ptr`, a mapping of the segment
/// `name` that this process created (its open did not `fstat` it): with
/// `trust_name`, the object `name` refers to (the one this process created
/// exclusively); otherwise, or if the name is gone, the line of
/// `/proc/self/maps` that starts at `ptr` (device as major:minor in hex,
/// inode in decimal; slower, exact). (0, 0) if neither can be read.
pub(super) fn mapping_identity(ptr: NonNull<u8>, name: &str, trust_name: bool) -> (u64, u64) {
    if trust_name {
        if let Ok(identity) =
            shm_open(name, libc::O_RDONLY, 0).and_then(|fd| fd_identity(fd.as_fd()))
        {
            return identity;
        }
    }
    #[cfg(target_os = "linux")]
    if let Some(identity) = proc_maps_identity(ptr.as_ptr() as usize) {
        return identity;
    }
    let _ = ptr;
    (0, 0)
}

/// The (device, inode) `/proc/self/maps` gives for the mapping at `start`.
#[cfg(target_os = "linux")]
fn proc_maps_identity(start: usize) -> Option<(u64, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let prefix = format!("{start:x}-");
    let line = maps.lines().find(|line| line.starts_with(&prefix))?;
    // address perms offset dev inode [path]
    let mut fields = line.split_ascii_whitespace().skip(3);
    let (major, minor) = fields.next()?.split_once(':')?;
    let major = u32::from_str_radix(major, 16).ok()?;
    let minor = u32::from_str_radix(minor, 16).ok()?;
    let inode = fields.next()?.parse::<u64>().ok()?;
    #[allow(clippy::unnecessary_cast)] // dev_t is u64 on Linux
    Some((libc::makedev(major, minor) as u64, inode))
}

/// (device, inode) of the object open on `fd`.
pub(super) fn fd_identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = retry_on_intr(|| rustix::fs::fstat(fd))?;
    #[allow(clippy::unnecessary_cast)] // dev_t/ino_t widths differ by platform
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// A close-on-exec duplicate of the open descriptor `fd`.
pub(super) fn dup_fd(fd: i32) -> io::Result<i32> {
    if fd < 0 {
        return Err(Errno::BADF.into());
    }
    // SAFETY: the caller holds `fd` open for the duration of the call (see
    // `write_all_fd`); duplicating touches no memory.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
    Ok(std::os::fd::IntoRawFd::into_raw_fd(dup))
}

/// Close a descriptor the caller hands over (it is not used afterwards).
pub(super) fn close_fd(fd: i32) {
    if fd < 0 {
        return;
    }
    // SAFETY: the caller gives up `fd`, an open descriptor it owns (a
    // duplicate made for this purpose), and never uses it again; the
    // OwnedFd closes it once, here.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

pub(super) fn unlink(name: &str) -> io::Result<()> {
    check_name(name).map_err(|e| match e {
        SegmentError::Os(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
    })?;
    Ok(retry_on_intr(|| shm::unlink(name))?)
}

/// Write all of `msg` to the open descriptor `fd` (a pipe, usually), retrying
/// on EINTR. A message of at most `PIPE_BUF` bytes reaches a pipe in one
/// piece, whatever other writers do.
pub(super) fn write_all_fd(fd: i32, msg: &[u8]) -> io::Result<()> {
    if fd < 0 {
        return Err(Errno::BADF.into());
    }
    // SAFETY: the caller keeps `fd` open until it hands it to `close_fd`,
    // after this call. Were the number stale after all, write(2) would
    // fail with EBADF or write to whatever has that number; no memory is
    // touched through the descriptor either way.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut done = 0;
    while done < msg.len() {
        match retry_on_intr(|| rustix::io::write(fd, &msg[done..]))? {
            0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            n => done += n,
        }
    }
    Ok(())
}
