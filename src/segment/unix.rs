//! POSIX shared memory: `shm_open`, `ftruncate`, `posix_fallocate`, `fstat`,
//! `mmap`, `munmap`, `shm_unlink`. Every system call of the segment module
//! lives in this file.

use std::ffi::CString;
use std::io;
use std::ptr::NonNull;

use super::{OpenOptions, SegmentError};

/// Where `shm_open` names appear as files.
#[cfg(target_os = "linux")]
pub(super) const SEGMENT_DIR: Option<&str> = Some("/dev/shm");
#[cfg(not(target_os = "linux"))]
pub(super) const SEGMENT_DIR: Option<&str> = None;

/// One `mmap` of a shared-memory object. Unmapped on drop.
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    identity: (u64, u64),
}

// SAFETY: the mapping is plain shared memory, not tied to the thread that
// made it; every access goes through raw pointers whose users already cope
// with concurrent writers (other processes), so sharing across threads adds
// nothing new.
unsafe impl Send for Mapping {}
// SAFETY: as above; `Mapping` has no interior state besides the memory.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(super) fn len(&self) -> usize {
        self.len
    }
    pub(super) fn writable(&self) -> bool {
        self.writable
    }
    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    pub(super) fn identity(&self) -> (u64, u64) {
        self.identity
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned and nothing
        // else unmaps them. Every user of the memory holds this `Mapping`
        // (through `Segment` and its owners), so none is left. munmap of a
        // valid mapping cannot fail; were it to, there is nothing a destructor
        // could do about it, so the result is ignored.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Closes a descriptor when dropped.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a descriptor this module opened and owns; it is
        // closed once, here. close(2) errors leave nothing to recover.
        unsafe {
            libc::close(self.0);
        }
    }
}

fn cstring(name: &str) -> Result<CString, SegmentError> {
    CString::new(name).map_err(|_| SegmentError::EmbeddedNul)
}

fn retry<T: PartialEq + Copy>(fail: T, mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let r = f();
        if r != fail {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn shm_open(name: &CString, flags: i32, mode: u32) -> io::Result<Fd> {
    // SAFETY: `name` is a valid NUL-terminated string for the whole call.
    let fd = retry(-1, || unsafe {
        libc::shm_open(name.as_ptr(), flags, mode as libc::mode_t)
    })?;
    Ok(Fd(fd))
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
    let cname = cstring(name)?;
    if hook_first {
        hook()?;
    }
    let (fd, created) = if opts.flags & libc::O_CREAT != 0 && opts.flags & libc::O_EXCL == 0 {
        // Open-or-create: try to create first, so that we know whether a
        // later failure may remove the object.
        match shm_open(&cname, opts.flags | libc::O_EXCL, opts.mode) {
            Ok(fd) => (fd, true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => (
                shm_open(&cname, opts.flags & !libc::O_CREAT, opts.mode)?,
                false,
            ),
            Err(e) => return Err(e.into()),
        }
    } else {
        (
            shm_open(&cname, opts.flags, opts.mode)?,
            opts.flags & libc::O_CREAT != 0,
        )
    };
    let hooked = if created && !hook_first {
        hook().map_err(SegmentError::from)
    } else {
        Ok(())
    };
    match hooked.and_then(|()| size_and_map(&fd, opts)) {
        Ok(map) => Ok((map, created)),
        Err(e) => {
            if created {
                // SAFETY: valid NUL-terminated name. The object is ours: this
                // call created it exclusively a moment ago.
                unsafe {
                    libc::shm_unlink(cname.as_ptr());
                }
            }
            Err(e)
        }
    }
}

fn size_and_map(fd: &Fd, opts: &OpenOptions) -> Result<Mapping, SegmentError> {
    if let Some(size) = opts.size.filter(|&s| s > 0) {
        let len =
            libc::off_t::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // Reserving the pages also sets the size (fallocate extends the
        // file); only where nothing can be reserved is ftruncate needed.
        if !(opts.reserve && reserve(fd, len)?) {
            // SAFETY: plain system call on a descriptor we own.
            retry(-1, || unsafe { libc::ftruncate(fd.0, len) })?;
        }
    }
    // SAFETY: `st` is plain old data that fstat fills in; zeroed is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is a valid out-pointer.
    retry(-1, || unsafe { libc::fstat(fd.0, &mut st) })?;
    let len =
        usize::try_from(st.st_size).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    if len == 0 {
        return Err(SegmentError::Empty);
    }
    let writable = opts.writable();
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: a fresh shared mapping chosen by the kernel (null hint) of an
    // open descriptor; the result is checked before use.
    let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.0, 0) };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error().into());
    }
    let ptr =
        NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    #[allow(clippy::unnecessary_cast)] // dev_t/ino_t widths differ by platform
    let identity = (st.st_dev as u64, st.st_ino as u64);
    Ok(Mapping {
        ptr,
        len,
        writable,
        identity,
    })
}

/// Give the object real pages now, and with them its size, so that running
/// out of room in the tmpfs is an `ENOSPC` here and not a SIGBUS on first
/// touch. Returns whether the pages were reserved (false where the
/// filesystem cannot reserve; the caller then only sets the size).
#[cfg(target_os = "linux")]
fn reserve(fd: &Fd, len: libc::off_t) -> io::Result<bool> {
    loop {
        // SAFETY: plain system call on a descriptor we own. The kernel call
        // (not glibc's posix_fallocate, which would emulate it by writing
        // every block) so that an unsupported filesystem says so.
        let rc = unsafe { libc::fallocate(fd.0, 0, 0, len) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Filesystems without fallocate: nothing can be reserved; carry
            // on as the standard library does.
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => return Ok(false),
            _ => return Err(err),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn reserve(_fd: &Fd, _len: libc::off_t) -> io::Result<bool> {
    Ok(false)
}

pub(super) fn close_fd(fd: i32) {
    drop(Fd(fd));
}

pub(super) fn unlink(name: &str) -> io::Result<()> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated string for the whole call.
    retry(-1, || unsafe { libc::shm_unlink(cname.as_ptr()) })?;
    Ok(())
}

/// Write all of `msg` to the open descriptor `fd` (a pipe, usually), retrying
/// on EINTR. A message of at most `PIPE_BUF` bytes reaches a pipe in one
/// piece, whatever other writers do.
pub(super) fn write_all_fd(fd: libc::c_int, msg: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < msg.len() {
        let rest = &msg[done..];
        // SAFETY: `rest` is valid for `rest.len()` bytes of reads; a bad `fd`
        // makes write(2) fail with EBADF, which is returned.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        done += n as usize;
    }
    Ok(())
}

pub(super) fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}
