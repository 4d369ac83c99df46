//! Windows shared memory: named file mappings backed by the paging file
//! (`CreateFileMappingW(INVALID_HANDLE_VALUE, ...)`, `OpenFileMappingW`,
//! `MapViewOfFile`, `VirtualQuery`, `UnmapViewOfFile`), called as CPython's
//! `SharedMemory` calls them, so that the two see each other's segments.
//! Every system call of the segment module on Windows lives in this file.
//!
//! What differs from POSIX, as in CPython:
//!
//! * Names carry no prefix (`wnsm_1a2b3c4d`), and there is nothing to
//!   unlink: a section lives while any process holds a handle to it or a
//!   view of it, and disappears with the last one. [`unlink`] does nothing.
//! * A new segment is as long as requested; an attached one is as long as
//!   the mapped region `VirtualQuery` reports, which is rounded up to pages
//!   (an 8-byte segment attaches as 4096 bytes).
//! * `mode` is not used: sections get the default security descriptor.
//!
//! A `Segment`'s mapping is its view together with the section's handle,
//! and both go when it is dropped: a view alone keeps the memory, but not
//! the name (Windows removes an object's name with its last handle), and
//! other processes attach by name. CPython's `mmap(-1, size, tagname=...)`
//! keeps a handle for the same reason.

use std::io;
use std::os::windows::io::{FromRawHandle, OwnedHandle, RawHandle};
use std::ptr::NonNull;

use windows_sys::Win32::Foundation::{GetLastError, ERROR_ALREADY_EXISTS, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
    PAGE_READWRITE,
};

use super::{Mapping, OpenOptions, SegmentError};

/// Sections do not appear as files anywhere.
pub(super) const SEGMENT_DIR: Option<&str> = None;

/// No limit of ferroshm's own (Windows allows names up to `MAX_PATH`).
pub(super) const NAME_MAX: Option<usize> = None;

/// What a view keeps: the section's handle, which keeps the name alive
/// (closed after the view is unmapped). The section goes with the last view
/// or handle of any process.
pub(super) type Keep = OwnedHandle;

/// Unmap the view at `ptr`.
///
/// # Safety
/// `ptr` must be the base address `MapViewOfFile` returned, unmapped only
/// here and with no user of the memory left.
pub(super) unsafe fn unmap(ptr: NonNull<u8>, _len: usize) {
    // SAFETY: the caller's contract. Unmapping a valid view cannot fail;
    // were it to, a destructor could do nothing about it, so the result is
    // ignored.
    unsafe {
        UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
            Value: ptr.as_ptr().cast(),
        });
    }
}

/// `name` as a NUL-terminated UTF-16 string (mod.rs has refused embedded
/// NULs already).
fn wide(name: &str) -> Vec<u16> {
    name.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Take ownership of a handle a Win32 call returned, or its error.
fn owned(handle: *mut core::ffi::c_void) -> io::Result<OwnedHandle> {
    if handle.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-null handle that the call just returned and nobody else
    // holds; the OwnedHandle closes it once.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
}

/// What a segment's identity is on Windows: sections have no inode, and a
/// name refers to one section for as long as any handle or view of it
/// exists, so two live segments with the same name share their memory.
/// The identity is therefore a hash of the name (FNV-1a), with 0 for the
/// device. A section re-created after every view of it was closed has the
/// same identity; nothing on Windows needs to tell the two apart (there is
/// no resource tracker, which is what uses identities on POSIX).
/// (The identity of a Windows segment is always known from its open.)
pub(super) fn mapping_identity(_ptr: NonNull<u8>, name: &str, _trust_name: bool) -> (u64, u64) {
    identity_of(name)
}

fn identity_of(name: &str) -> (u64, u64) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (0, hash)
}

/// Open `name` as `opts` says and map it. Returns the mapping and whether
/// this call created the section; `hook` runs right after creating it (or
/// before, with `hook_first`). After a failure nothing is left open, and a
/// section this call created is gone with its handle.
pub(super) fn open_and_map(
    name: &str,
    opts: &OpenOptions,
    hook: &mut dyn FnMut() -> io::Result<()>,
    hook_first: bool,
) -> Result<(Mapping, bool), SegmentError> {
    let wname = wide(name);
    let writable = opts.writable();
    let access = if writable {
        FILE_MAP_WRITE // read and write
    } else {
        FILE_MAP_READ
    };
    let creating = opts.flags & libc::O_CREAT != 0;
    let exclusive = opts.flags & libc::O_EXCL != 0;
    let size = opts.size.filter(|&s| s > 0);
    if hook_first {
        hook()?;
    }
    let (handle, created) = match (creating, size) {
        (true, Some(size)) => {
            let size =
                u64::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: `wname` is NUL-terminated and outlives the call; a null
            // security descriptor asks for the default one.
            let raw = unsafe {
                CreateFileMappingW(
                    INVALID_HANDLE_VALUE,
                    std::ptr::null(),
                    PAGE_READWRITE,
                    (size >> 32) as u32,
                    size as u32,
                    wname.as_ptr(),
                )
            };
            // SAFETY: plain call; read at once, before anything else can
            // change the thread's last error.
            let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
            let handle = owned(raw)?;
            if existed && exclusive {
                // As CPython: FileExistsError. Dropping our handle leaves
                // the other owner's section as it was.
                return Err(io::Error::from_raw_os_error(ERROR_ALREADY_EXISTS as i32).into());
            }
            (handle, !existed)
        }
        // Nothing to create a section of: a size-0 section cannot exist.
        // Open-or-create may still find an existing one.
        (true, None) if exclusive => return Err(SegmentError::Empty),
        (true, None) => match open_existing(&wname, access) {
            Ok(handle) => (handle, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SegmentError::Empty),
            Err(e) => return Err(e.into()),
        },
        (false, _) => (open_existing(&wname, access)?, false),
    };
    if created && !hook_first {
        // On failure our handle, the only one, goes and takes the section.
        hook()?;
    }
    let mut map = map_view(handle, access, writable, name)?;
    if let (true, Some(size)) = (created, size) {
        // A new segment is as long as asked for, as CPython reports it
        // (the view, whole pages, is at least that long).
        map.len = map.len.min(size);
    }
    Ok((map, created))
}

fn open_existing(wname: &[u16], access: u32) -> io::Result<OwnedHandle> {
    // SAFETY: `wname` is NUL-terminated and outlives the call.
    owned(unsafe { OpenFileMappingW(access, 0, wname.as_ptr()) })
}

/// Map all of the section behind `handle`; the length is the region's, as
/// `VirtualQuery` gives it (whole pages).
fn map_view(
    handle: OwnedHandle,
    access: u32,
    writable: bool,
    name: &str,
) -> Result<Mapping, SegmentError> {
    use std::os::windows::io::AsRawHandle;
    // SAFETY: `handle` is an open section handle; offset 0 and length 0 map
    // the whole section at an address the system chooses, replacing no
    // memory. The view is reached only through raw pointers.
    let view = unsafe { MapViewOfFile(handle.as_raw_handle(), access, 0, 0, 0) };
    let ptr = NonNull::new(view.Value.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
    // Owned from here on: an error below unmaps it.
    let mut map = Mapping {
        ptr,
        len: 0,
        writable,
        identity: std::sync::OnceLock::from(identity_of(name)),
        _keep: handle,
    };
    let mut info = std::mem::MaybeUninit::<MEMORY_BASIC_INFORMATION>::zeroed();
    // SAFETY: `info` is a writable buffer of the size passed; the address is
    // the start of our view.
    let got = unsafe {
        VirtualQuery(
            map.ptr.as_ptr().cast(),
            info.as_mut_ptr(),
            std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
        )
    };
    if got == 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: VirtualQuery filled in the structure (it returned its size),
    // and all-zero was a valid value of this plain C struct to begin with.
    let info = unsafe { info.assume_init() };
    if info.RegionSize == 0 {
        return Err(SegmentError::Empty);
    }
    map.len = info.RegionSize;
    Ok(map)
}

/// Placeholders (empty objects sized later) are POSIX objects: a section
/// gets its size when it is created.
fn no_placeholders() -> SegmentError {
    SegmentError::Os(io::ErrorKind::Unsupported.into())
}

pub(super) fn create_placeholder(_name: &str, _mode: u32) -> Result<(), SegmentError> {
    Err(no_placeholders())
}

pub(super) fn object_size(_name: &str) -> Result<u64, SegmentError> {
    Err(no_placeholders())
}

pub(super) fn open_placeholder(_name: &str, _opts: &OpenOptions) -> Result<Mapping, SegmentError> {
    Err(no_placeholders())
}

/// Sections cannot be removed by name: they go with their last handle, as
/// CPython's `SharedMemory.unlink()` documents. Succeeds and does nothing.
pub(super) fn unlink(_name: &str) -> io::Result<()> {
    Ok(())
}
