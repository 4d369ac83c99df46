//! `_native.Segment` (an open segment handle) and `_native.Mapping` (the
//! buffer exporter behind `SharedMemory.buf`).
//!
//! Lifetime rule: the mapping is unmapped when the last `Arc<Segment>` goes.
//! The handle holds one until `close()`; every `Mapping` exporter holds one
//! for as long as it lives, and a memoryview (and any NumPy array built on
//! it) keeps its exporter alive. So `close()` can never pull memory out from
//! under a view, and the last reference, whichever it is, unmaps.

use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyMemoryView;

use super::errors::{os_error, segment_error};
use crate::segment::{self, OpenOptions, Segment};

/// The resource tracker's pipe, written from the `announce` hook. POSIX
/// only: Windows has no resource tracker, and `open` refuses `announce`
/// there before any of this could run.
#[cfg(unix)]
pub(crate) use crate::segment::{close_fd, write_to_fd};
#[cfg(windows)]
pub(crate) fn close_fd(_fd: i32) {}
#[cfg(windows)]
pub(crate) fn write_to_fd(_fd: i32, _msg: &[u8]) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// An open, mapped segment. Created by `Segment.open`; `close()` drops this
/// handle's hold on the mapping.
#[pyclass(name = "Segment", module = "ferroshm._native", frozen)]
pub(crate) struct SegmentPy {
    seg: Mutex<Option<Arc<Segment>>>,
    closed: Arc<AtomicBool>,
    name: String,
    size: usize,
    created: bool,
    identity: (u64, u64),
}

impl SegmentPy {
    fn new(seg: Segment) -> Self {
        SegmentPy {
            name: seg.name().to_owned(),
            size: seg.len(),
            created: seg.created(),
            identity: seg.identity(),
            seg: Mutex::new(Some(Arc::new(seg))),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The open segment and the flag that says when the handle is closed,
    /// for other native objects (ShareableList) that read it directly.
    pub(crate) fn share(&self) -> PyResult<(Arc<Segment>, Arc<AtomicBool>)> {
        let guard = self.seg.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(seg) => Ok((Arc::clone(seg), Arc::clone(&self.closed))),
            None => Err(closed_error()),
        }
    }
}

pub(crate) fn closed_error() -> PyErr {
    PyValueError::new_err("operation on a closed shared memory segment")
}

/// Closes a descriptor when dropped: a duplicate made for one call.
pub(crate) struct FdCloser(pub(crate) i32);

impl Drop for FdCloser {
    fn drop(&mut self) {
        close_fd(self.0);
    }
}

/// A new segment's size as Python gives it: taken as off_t, as
/// os.ftruncate takes it, so too large an int is an OverflowError (and a
/// float a TypeError) before anything exists.
pub(crate) fn new_size(size: &Bound<'_, PyAny>) -> PyResult<usize> {
    let size = size.extract::<i64>()?;
    usize::try_from(size).map_err(|_| PyValueError::new_err("'size' must be a positive integer"))
}

/// How [`open_segment`] registers a segment the moment it creates it: the
/// resource tracker's pipe (kept open by the caller for the whole call),
/// the REGISTER and UNREGISTER messages, and whether to announce even
/// before the create (`first`: fresh random names only).
pub(crate) struct Announce<'a> {
    pub(crate) fd: i32,
    pub(crate) register: &'a [u8],
    /// Makes the UNREGISTER message (only needed if the call fails).
    pub(crate) unregister: &'a (dyn Fn() -> Vec<u8> + Sync),
    pub(crate) first: bool,
    /// Whether `fd` is the caller's own (a duplicate), valid after Python
    /// code ran; otherwise it is the tracker's, trusted only while this
    /// call runs no Python code, and a late retraction goes through
    /// `tracker::send`.
    pub(crate) owned: bool,
}

/// Open or create `name` (leading '/' included) as `opts` says and map it,
/// with the GIL released when `detach` (large creates). A failure leaves
/// nothing open and removes the object only if this call created it.
///
/// With `announce`, a call that creates the object writes `register` to
/// the tracker's pipe at once, before the object is sized and its pages
/// reserved, so that a process killed during a large create leaves nothing
/// behind; `unregister` is written if the call then fails. Returns the
/// segment and whether `register` was written (if the write fails,
/// creation goes on and the caller registers the usual way).
///
/// A signal that arrived meanwhile (SIGINT during a large create) has its
/// Python handler run here, not at the return to the caller: there, a
/// KeyboardInterrupt would drop the new segment before anyone holds it,
/// and its name would stay in /dev/shm. Here, the segment is removed and
/// the error returned.
pub(crate) fn open_segment(
    py: Python<'_>,
    name: &str,
    opts: &OpenOptions,
    announce: Option<&Announce<'_>>,
    detach: bool,
) -> PyResult<(Segment, bool)> {
    let mut announced = false;
    let mut run = || {
        let mut hook = || {
            if let Some(a) = announce {
                announced = write_to_fd(a.fd, a.register).is_ok();
            }
            Ok(())
        };
        if announce.is_some_and(|a| a.first) && opts.flags & libc::O_EXCL != 0 {
            Segment::open_announced(name, opts, &mut hook)
        } else {
            Segment::open_with_hook(name, opts, &mut hook)
        }
    };
    let opened = if detach { py.detach(run) } else { run() };
    let retract = |announced: bool| {
        if let (true, Some(a)) = (announced, announce) {
            // Best effort: the tracker would only warn about a name that
            // no longer exists.
            let _ = write_to_fd(a.fd, &(a.unregister)());
        }
    };
    let seg = match opened {
        Ok(seg) => seg,
        Err(e) => {
            retract(announced);
            return Err(segment_error(&e, name));
        }
    };
    if let Err(interrupted) = py.check_signals() {
        let created = seg.created();
        drop(seg);
        if created {
            // Best effort: the interruption is the error to report.
            let _ = segment::unlink(name);
            match announce {
                Some(a) if announced && !a.owned => {
                    let _ = super::tracker::send(py, super::tracker::Cmd::Unregister, name, None);
                }
                _ => retract(announced),
            }
        }
        return Err(interrupted);
    }
    Ok((seg, announced))
}

/// Size and map the placeholder `name` (see `Segment::open_placeholder`).
pub(crate) fn open_placeholder(
    py: Python<'_>,
    name: &str,
    size: usize,
    reserve: bool,
) -> PyResult<Segment> {
    py.detach(|| Segment::open_placeholder_with(name, size, reserve))
        .map_err(|e| segment_error(&e, name))
}

#[pymethods]
impl SegmentPy {
    /// Open `name` (with its leading '/') using the `open(2)` flags and mode
    /// Python passes. `size`, when given, is what a newly created object is
    /// truncated to (and, with `reserve`, given pages for). The descriptor is
    /// closed before this returns; a failure leaves nothing open, and removes
    /// the object only if this call created it. Nothing is registered with
    /// the resource tracker (that is `SharedMemory`'s business).
    ///
    /// With `placeholder`, `name` is an existing empty object (see
    /// `create_placeholder`) that this call sizes to `size` bytes (pages
    /// reserved) and maps: `FileExistsError` if it is not empty any more,
    /// `FileNotFoundError` if it is gone. Nothing is created, and nothing
    /// removed on failure. POSIX only.
    #[staticmethod]
    #[pyo3(signature = (name, flags, mode=0o600, size=None, reserve=true, placeholder=false))]
    fn open(
        py: Python<'_>,
        name: &str,
        flags: i32,
        mode: u32,
        size: Option<&Bound<'_, PyAny>>,
        reserve: bool,
        placeholder: bool,
    ) -> PyResult<Self> {
        if placeholder {
            let size = match size {
                Some(s) => s.extract::<usize>()?,
                None => return Err(PyValueError::new_err("a placeholder needs a 'size'")),
            };
            return Ok(SegmentPy::new(open_placeholder(py, name, size, reserve)?));
        }
        let opts = OpenOptions {
            flags,
            mode,
            size: size.map(new_size).transpose()?,
            reserve,
        };
        let (seg, _) = open_segment(py, name, &opts, None, true)?;
        Ok(SegmentPy::new(seg))
    }

    /// The name the segment was opened with, leading '/' included.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Size of the mapping in bytes; still answers after `close()`.
    #[getter]
    fn size(&self) -> usize {
        self.size
    }

    /// Whether the call that opened this handle created the segment.
    #[getter]
    fn created(&self) -> bool {
        self.created
    }

    /// (device, inode) of the object: equal for handles on the same object,
    /// different for an object re-created under the same name.
    #[getter]
    fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Whether `close()` has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A new writable 1-D memoryview of format 'B' over the whole mapping.
    /// It keeps the mapping alive by itself, whatever happens to this handle.
    fn memoryview<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyMemoryView>> {
        let (seg, _) = self.share()?;
        memoryview_of(py, seg)
    }

    /// Drop this handle's hold on the mapping. Memory still used by a
    /// memoryview or array stays mapped until they are gone. Idempotent.
    fn close(&self) {
        let taken = {
            let mut guard = self.seg.lock().unwrap_or_else(|p| p.into_inner());
            self.closed.store(true, Ordering::Release);
            guard.take()
        };
        drop(taken);
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!(
            "<ferroshm._native.Segment {:?} size={} {}>",
            self.name, self.size, state
        )
    }
}

/// A new writable (if the mapping is) 1-D memoryview of format 'B' over the
/// whole of `seg`, which it keeps mapped for as long as it, or anything
/// built on it, lives.
pub(crate) fn memoryview_of(
    py: Python<'_>,
    seg: Arc<Segment>,
) -> PyResult<Bound<'_, PyMemoryView>> {
    let exporter = Bound::new(
        py,
        MappingPy {
            len: seg.len() as ffi::Py_ssize_t,
            seg,
        },
    )?;
    PyMemoryView::from(exporter.as_any())
}

/// The buffer exporter behind `SharedMemory.buf`: one mapping, shared.
#[pyclass(name = "Mapping", module = "ferroshm._native", frozen)]
pub(crate) struct MappingPy {
    seg: Arc<Segment>,
    len: ffi::Py_ssize_t,
}

#[pymethods]
impl MappingPy {
    /// # Safety
    /// Called by the interpreter with a valid `view` to fill in.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("view is null"));
        }
        let me = slf.get();
        let readonly = !me.seg.writable();
        if readonly && flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("the segment is mapped read-only"));
        }
        // SAFETY: `view` is a valid, writable Py_buffer (checked non-null; the
        // interpreter provides it). `buf` points into a mapping of `len`
        // bytes that the `Arc<Segment>` in this object keeps mapped, and
        // `obj` holds a new reference to this object for as long as the view
        // exists. `shape` points at `view.len` and `strides` at
        // `view.itemsize`, both inside the view itself, as
        // PyBuffer_FillInfo does.
        unsafe {
            (*view).obj = slf.clone().into_any().into_ptr();
            (*view).buf = me.seg.as_ptr().cast::<c_void>();
            (*view).len = me.len;
            (*view).readonly = c_int::from(readonly);
            (*view).itemsize = 1;
            (*view).format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
                c"B".as_ptr().cast_mut()
            } else {
                std::ptr::null_mut()
            };
            (*view).ndim = 1;
            (*view).shape = if flags & ffi::PyBUF_ND == ffi::PyBUF_ND {
                &mut (*view).len
            } else {
                std::ptr::null_mut()
            };
            (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
                &mut (*view).itemsize
            } else {
                std::ptr::null_mut()
            };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = std::ptr::null_mut();
        }
        Ok(())
    }

    /// # Safety
    /// Called by the interpreter; nothing to release beyond `view.obj`,
    /// which the interpreter drops itself.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.seg.len()
    }
}

/// Remove the segment `name` (leading '/' included) from the system.
#[pyfunction]
fn unlink(py: Python<'_>, name: &str) -> PyResult<()> {
    if name.as_bytes().contains(&0) {
        return Err(PyValueError::new_err("embedded null character"));
    }
    py.detach(|| segment::unlink(name))
        .map_err(|e| os_error(&e, name))
}

/// Create `name` (leading '/' included) as an empty placeholder object
/// (size 0), to be sized later by `Segment.open(..., placeholder=True)`;
/// FileExistsError if the name is taken. POSIX only.
#[pyfunction]
#[pyo3(signature = (name, mode=0o600))]
fn create_placeholder(py: Python<'_>, name: &str, mode: u32) -> PyResult<()> {
    py.detach(|| segment::create_placeholder(name, mode))
        .map_err(|e| segment_error(&e, name))
}

/// The size in bytes of the object `name` (leading '/' included) now,
/// without mapping it: 0 for a placeholder nobody sized yet. POSIX only.
#[pyfunction]
fn object_size(py: Python<'_>, name: &str) -> PyResult<u64> {
    py.detach(|| segment::object_size(name))
        .map_err(|e| segment_error(&e, name))
}

/// `prefix` followed by random hex digits, `length` characters in all.
#[pyfunction]
fn random_name(prefix: &str, length: usize) -> PyResult<String> {
    segment::random_name(prefix, length).map_err(|e| os_error(&e, prefix))
}

/// The OS name of the segment Python reports as `name` (POSIX: with a
/// leading '/'; a name that has it is returned unchanged).
#[pyfunction]
fn os_name(name: &str) -> String {
    segment::os_name(name).into_owned()
}

/// The name Python reports for the OS name `os_name` (POSIX: without the
/// leading '/').
#[pyfunction]
fn reported_name(os_name: &str) -> &str {
    segment::reported_name(os_name)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "SEGMENT_DIR",
        segment::segment_dir().and_then(|d| d.to_str()),
    )?;
    m.add_function(wrap_pyfunction!(os_name, m)?)?;
    m.add_function(wrap_pyfunction!(reported_name, m)?)?;
    m.add_class::<SegmentPy>()?;
    m.add_class::<MappingPy>()?;
    m.add_function(wrap_pyfunction!(unlink, m)?)?;
    m.add_function(wrap_pyfunction!(random_name, m)?)?;
    m.add_function(wrap_pyfunction!(create_placeholder, m)?)?;
    m.add_function(wrap_pyfunction!(object_size, m)?)?;
    Ok(())
}
