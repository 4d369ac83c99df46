//! `ferroshm.shared_memory.SharedMemory`: the standard library's class, in
//! Rust, so that creating, attaching and closing a segment run no Python
//! code at all (CPython's version runs its whole `__init__` in Python).
//!
//! It keeps the standard library's shape for code that reaches inside:
//! subclasses override the class attributes `_flags` and `_mode` (read
//! through normal attribute lookup), `_name`, `_buf`, `_size`, `_track`
//! are attributes that can be read and assigned, and `_fd` and `_mmap` are
//! a real descriptor of the segment and a real `mmap.mmap` of it, made on
//! first use (so that code that never asks pays nothing for them).
//!
//! State lives behind a mutex (the class is safe to share between threads
//! without the GIL); no Python code runs, and no Python object is freed,
//! while the mutex is held.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyInt, PyString, PyTuple};
use pyo3::{ffi, PyTraverseError, PyVisit};

use super::errors::os_error;
use super::segment::{memoryview_of, new_size, open_placeholder, open_segment, Announce, FdCloser};
use super::tracker::{self, Cmd};
use crate::segment::{self, OpenOptions, Segment};

/// As CPython's `_USE_POSIX`: POSIX names, a resource tracker, a real
/// `unlink()`; Windows has none of these.
const USE_POSIX: bool = cfg!(unix);

const O_CREX: i32 = libc::O_CREAT | libc::O_EXCL;

/// Creates of more bytes than this release the GIL while the pages are
/// reserved (the kernel zeroes them); smaller ones take a few microseconds
/// and keep it, which also lets them write to the resource tracker's pipe
/// without duplicating its descriptor.
const DETACH_ABOVE: usize = 256 << 10;

/// What this class needs from `ferroshm.shared_memory`, given once by
/// `_set_hooks` when that module is imported.
struct Hooks {
    /// The module's globals, where `_make_filename` and its constants are
    /// looked up at call time (CPython's tests patch them).
    module_dict: Py<PyDict>,
    /// The module's own `_make_filename`: while it is not patched, names
    /// are made here without calling it.
    make_filename: Py<PyAny>,
}

static HOOKS: PyOnceLock<Hooks> = PyOnceLock::new();

/// Whether new segments reserve their pages unless told otherwise
/// (`FERROSHM_RESERVE`, read when `ferroshm.shared_memory` is imported).
static RESERVE_DEFAULT: AtomicBool = AtomicBool::new(true);

/// Whether this interpreter runs without the GIL (free-threaded build with
/// the GIL off): then no descriptor read from Python is trusted beyond the
/// call that read it, and the tracker's pipe is always duplicated.
static NO_GIL: PyOnceLock<bool> = PyOnceLock::new();

fn no_gil(py: Python<'_>) -> bool {
    *NO_GIL.get_or_init(py, || {
        let sys = py.import("sys");
        match sys.and_then(|s| s.call_method0("_is_gil_enabled")) {
            Ok(enabled) => !enabled.is_truthy().unwrap_or(true),
            Err(_) => false,
        }
    })
}

fn hooks(py: Python<'_>) -> PyResult<&Hooks> {
    if let Some(hooks) = HOOKS.get(py) {
        return Ok(hooks);
    }
    // Importing the module registers them.
    py.import("ferroshm.shared_memory")?;
    HOOKS
        .get(py)
        .ok_or_else(|| PyValueError::new_err("ferroshm.shared_memory did not register its hooks"))
}

/// Called by `ferroshm.shared_memory` when it is imported.
#[pyfunction]
fn _set_hooks(
    py: Python<'_>,
    module_dict: Bound<'_, PyDict>,
    make_filename: Bound<'_, PyAny>,
    reserve_default: bool,
) {
    RESERVE_DEFAULT.store(reserve_default, Ordering::Relaxed);
    let _ = HOOKS.set(
        py,
        Hooks {
            module_dict: module_dict.unbind(),
            make_filename: make_filename.unbind(),
        },
    );
}

/// A fresh random name: the module's `_make_filename()`, made here while
/// it is the module's own (from `_SHM_NAME_PREFIX` and
/// `_SHM_SAFE_NAME_LENGTH`, as it would), called when patched.
fn make_filename<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    let hooks = hooks(py)?;
    let dict = hooks.module_dict.bind(py);
    let get = |key: &Bound<'py, PyString>| {
        dict.get_item(key)?
            .ok_or_else(|| PyValueError::new_err(format!("ferroshm.shared_memory has no {key}")))
    };
    let function = get(pyo3::intern!(py, "_make_filename"))?;
    if !function.is(&hooks.make_filename) {
        return function.call0();
    }
    let prefix = get(pyo3::intern!(py, "_SHM_NAME_PREFIX"))?;
    let length: usize = get(pyo3::intern!(py, "_SHM_SAFE_NAME_LENGTH"))?.extract()?;
    let prefix = prefix.cast::<PyString>()?.to_str()?;
    let name = segment::random_name(prefix, length).map_err(|e| os_error(&e, prefix))?;
    Ok(PyString::new(py, &name).into_any())
}

/// An attribute made on first use while the segment is open (`_buf`,
/// `_mmap`), unless assigned.
enum Slot {
    Unmade,
    Set(Py<PyAny>),
}

/// `_fd`: opened on first use while the segment is open, or assigned.
enum Fd {
    Unopened,
    /// A descriptor this object opened, and closes in `close()` if it
    /// still refers to the segment.
    Owned(i32),
    /// What the caller assigned (e.g. -1 after closing it themselves).
    Set(i64),
}

struct State {
    /// `_name`: the OS name (leading '/' on POSIX), or whatever was assigned.
    name: Option<Py<PyAny>>,
    size: usize,
    /// The mapping this handle holds (None once closed).
    seg: Option<Arc<Segment>>,
    /// Set by `close()`; ShareableLists built on this handle watch it.
    closed: Arc<AtomicBool>,
    buf: Slot,
    mmap: Slot,
    fd: Fd,
    track: bool,
    flags: i32,
    mode: u32,
}

impl State {
    fn new() -> Self {
        State {
            name: None,
            size: 0,
            seg: None,
            closed: Arc::new(AtomicBool::new(true)),
            buf: Slot::Unmade,
            mmap: Slot::Unmade,
            fd: Fd::Unopened,
            track: true,
            flags: libc::O_RDWR,
            mode: 0o600,
        }
    }
}

/// Creates a new shared memory block or attaches to an existing one.
///
/// Same arguments, attributes and errors as
/// :class:`multiprocessing.shared_memory.SharedMemory` (Python 3.13), with
/// these differences:
///
/// * ``close()`` never raises :class:`BufferError` and never unmaps memory
///   that a memoryview or NumPy array still uses: the last reference to the
///   mapping unmaps it. After ``close()``, ``buf`` is ``None``.
/// * Creating reserves the pages (Linux), so a full ``/dev/shm`` raises
///   ``OSError(ENOSPC)`` here instead of killing the process with SIGBUS on
///   first write. ``reserve=False`` (or ``FERROSHM_RESERVE=0`` in the
///   environment) creates a sparse segment as the standard library does,
///   for "allocate the maximum, use some": then a full ``/dev/shm`` is a
///   SIGBUS on first write again.
/// * Any failure after the segment exists removes it only if this call
///   created it; an attach never unlinks someone else's segment.
/// * Names the running resource tracker cannot carry are refused with
///   :class:`ValueError` before anything is created (when ``track`` is true).
/// * It is a context manager: ``with SharedMemory(...) as shm:`` closes
///   (does not unlink) on exit.
/// * ``_fd`` and ``_mmap`` are made on first use: a descriptor of the
///   segment (opened by name; -1 if the name was unlinked or re-created
///   before) and an ``mmap.mmap`` over it. ``close()`` closes them, but an
///   ``_mmap`` still exported is left to close itself when its last user
///   goes (no BufferError), and an ``_fd`` the caller closed is left alone.
/// * There is no ``__del__``: an instance that is garbage-collected is
///   closed by its native state, without running Python code (so without
///   ``close()`` of a subclass), and a Ctrl-C that arrives meanwhile is
///   never lost in a finalizer.
#[pyclass(
    name = "SharedMemory",
    module = "ferroshm.shared_memory",
    subclass,
    frozen,
    dict,
    weakref
)]
pub(crate) struct SharedMemoryPy {
    state: Mutex<State>,
}

/// Drops Python objects taken out of the state once the mutex is released
/// (freeing one may run Python code).
type Taken = (Slot, Slot, Option<Py<PyAny>>);

impl SharedMemoryPy {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open segment and the flag `close()` sets, for other native
    /// objects (ShareableList) that read the memory directly.
    pub(crate) fn share(&self) -> PyResult<(Arc<Segment>, Arc<AtomicBool>)> {
        let st = self.lock();
        match &st.seg {
            Some(seg) => Ok((Arc::clone(seg), Arc::clone(&st.closed))),
            None => Err(PyValueError::new_err(
                "operation on a closed shared memory segment",
            )),
        }
    }

    fn is_exact(slf: &Bound<'_, Self>) -> bool {
        slf.get_type().is(slf.py().get_type::<Self>())
    }

    /// `self.<attr>` for the class attributes a subclass may override
    /// (`_flags`, `_mode`, `_prepend_leading_slash`); the state's own value
    /// for the class itself.
    fn overridable<'py, T: FromPyObjectOwned<'py>>(
        slf: &Bound<'py, Self>,
        attr: &Bound<'py, PyString>,
        own: impl FnOnce(&State) -> T,
    ) -> PyResult<T> {
        if Self::is_exact(slf) {
            Ok(own(&slf.get().lock()))
        } else {
            slf.getattr(attr)?.extract().map_err(Into::into)
        }
    }

    /// Install a freshly opened segment, and return what the previous one
    /// (if `__init__` runs twice) leaves to close.
    fn install(&self, name: Py<PyAny>, seg: Segment, track: bool) -> Closing {
        let mut st = self.lock();
        let previous = Closing::take(&mut st);
        st.name = Some(name);
        st.size = seg.len();
        st.seg = Some(Arc::new(seg));
        st.closed = Arc::new(AtomicBool::new(false));
        st.track = track;
        previous
    }

    fn prepend_slash(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Self::overridable(
            slf,
            pyo3::intern!(slf.py(), "_prepend_leading_slash"),
            |_| USE_POSIX,
        )
    }
}

/// What `close()` has to release: taken out of the state under the mutex,
/// released after it.
struct Closing {
    taken: Taken,
    fd: Fd,
    seg: Option<Arc<Segment>>,
}

impl Closing {
    fn take(st: &mut State) -> Closing {
        st.closed.store(true, Ordering::Release);
        Closing {
            taken: (
                std::mem::replace(&mut st.buf, Slot::Unmade),
                std::mem::replace(&mut st.mmap, Slot::Unmade),
                None,
            ),
            fd: std::mem::replace(&mut st.fd, Fd::Unopened),
            seg: st.seg.take(),
        }
    }

    /// Release it all: the memoryview reference, the `mmap` (closed, unless
    /// exported: it then closes itself when its last user goes), the
    /// descriptor (if it still refers to the segment: the caller may have
    /// closed it already), and this handle's hold on the mapping.
    fn finish(self, py: Python<'_>) -> PyResult<()> {
        let (buf, mmap, _) = self.taken;
        drop(buf);
        let mut result = Ok(());
        if let Slot::Set(mmap) = mmap {
            let mmap = mmap.bind(py);
            if !mmap.is_none() {
                if let Err(e) = mmap.call_method0(pyo3::intern!(py, "close")) {
                    if !e.is_instance_of::<PyBufferError>(py) {
                        result = Err(e);
                    }
                }
            }
        }
        let fd = match self.fd {
            Fd::Owned(fd) => Some(fd),
            Fd::Set(v) if v >= 0 => i32::try_from(v).ok(),
            _ => None,
        };
        if let (Some(fd), Some(seg)) = (fd, &self.seg) {
            close_if_of(fd, seg);
        }
        drop(self.seg);
        result
    }
}

/// Close `fd` if it is (still) a descriptor of `seg`'s object.
#[cfg(unix)]
fn close_if_of(fd: i32, seg: &Segment) {
    // SAFETY: only fstat(2) runs on the number; a closed or reused number
    // gives EBADF or another object's identity, and is then left alone.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if segment::fd_identity(borrowed).ok() == Some(seg.identity()) {
        super::segment::close_fd(fd);
    }
}

#[cfg(not(unix))]
fn close_if_of(_fd: i32, _seg: &Segment) {}

/// `size` as the standard library checks it: `size >= 0`, and whether it
/// is zero, for any object that compares with ints.
fn check_size(size: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
    let Some(size) = size else {
        return Ok(true);
    };
    if size.is_exact_instance_of::<PyInt>() {
        if let Ok(v) = size.extract::<i64>() {
            if v < 0 {
                return Err(negative_size());
            }
            return Ok(v == 0);
        }
    }
    if !size.ge(0)? {
        return Err(negative_size());
    }
    size.eq(0)
}

fn negative_size() -> PyErr {
    PyValueError::new_err("'size' must be a positive integer")
}

/// `operator.index(size)` (a float is a TypeError, as `os.ftruncate`
/// would raise, but before anything exists), as an off_t.
fn index_size(size: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
    let Some(size) = size else { return Ok(0) };
    if size.is_exact_instance_of::<PyInt>() {
        return new_size(size);
    }
    // SAFETY: `size` is a valid object; PyNumber_Index returns a new
    // reference or NULL with an exception set, which `from_owned_ptr_or_err`
    // takes over.
    let index =
        unsafe { Bound::from_owned_ptr_or_err(size.py(), ffi::PyNumber_Index(size.as_ptr()))? };
    new_size(&index)
}

#[pymethods]
impl SharedMemoryPy {
    /// An empty, closed instance; `__init__` creates or attaches (so that
    /// subclasses' own `__init__` choose its arguments).
    #[new]
    #[pyo3(
        signature = (*_args, **_kwargs),
        text_signature = "(name=None, create=False, size=0, *, track=True, reserve=None)"
    )]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        SharedMemoryPy {
            state: Mutex::new(State::new()),
        }
    }

    #[pyo3(signature = (name=None, create=None, size=None, *extra, track=None, reserve=None))]
    fn __init__(
        slf: &Bound<'_, Self>,
        name: Option<&Bound<'_, PyAny>>,
        create: Option<&Bound<'_, PyAny>>,
        size: Option<&Bound<'_, PyAny>>,
        extra: &Bound<'_, PyTuple>,
        track: Option<&Bound<'_, PyAny>>,
        reserve: Option<bool>,
    ) -> PyResult<()> {
        let py = slf.py();
        if !extra.is_empty() {
            // Worded as the interpreter words it for a Python __init__ (the
            // standard library's is one): with the class's name from 3.10.
            let function = if py.version_info() >= (3, 10) {
                "SharedMemory.__init__()"
            } else {
                "__init__()"
            };
            return Err(PyTypeError::new_err(format!(
                "{function} takes from 1 to 4 positional arguments but {} were given",
                extra.len() + 4
            )));
        }
        let this = slf.get();
        let size_is_zero = check_size(size)?;
        let create = match create {
            Some(c) => c.is_truthy()?,
            None => false,
        };
        let exact = Self::is_exact(slf);
        if create {
            if exact {
                this.lock().flags = O_CREX | libc::O_RDWR;
            } else {
                slf.setattr(pyo3::intern!(py, "_flags"), O_CREX | libc::O_RDWR)?;
            }
            if size_is_zero {
                return Err(PyValueError::new_err(
                    "'size' must be a positive number different from zero",
                ));
            }
        }
        let flags: i32 = Self::overridable(slf, pyo3::intern!(py, "_flags"), |st| st.flags)?;
        if name.is_none_or(|n| n.is_none()) && flags & libc::O_EXCL == 0 {
            return Err(PyValueError::new_err(
                "'name' can only be None if create=True",
            ));
        }
        let track = match track {
            Some(t) => t.is_truthy()?,
            None => true,
        };
        this.lock().track = track;
        // Windows has no resource tracker: `track` is kept but ignored there.
        let tracked = track && USE_POSIX;
        // Checked before anything exists (the standard library only finds
        // out in ftruncate, after creating the segment, and leaks it).
        let new_size = if create {
            Some(index_size(size)?)
        } else {
            None
        };
        let mode: u32 = Self::overridable(slf, pyo3::intern!(py, "_mode"), |st| st.mode)?;
        let reserve = reserve.unwrap_or_else(|| RESERVE_DEFAULT.load(Ordering::Relaxed));
        let opts = OpenOptions {
            flags,
            mode,
            size: new_size,
            reserve,
        };

        let (name, seg, announced) = match name.filter(|n| !n.is_none()) {
            None => loop {
                let name = make_filename(py)?;
                let path = name.cast::<PyString>()?.to_str()?;
                if tracked {
                    tracker::check_trackable(py, path)?;
                }
                match open_tracked(py, path, &opts, tracked, true) {
                    Ok((seg, announced)) => break (name.unbind(), seg, announced),
                    Err(e)
                        if e.value(py)
                            .is_instance_of::<pyo3::exceptions::PyFileExistsError>() =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                }
            },
            Some(given) => {
                let name = if Self::prepend_slash(slf)? {
                    match given.cast::<PyString>() {
                        Ok(s) => PyString::new(py, &format!("/{}", s.to_str()?)).into_any(),
                        // "can only concatenate str (not "int") to str", as
                        // the standard library's `"/" + name` says.
                        Err(_) => PyString::new(py, "/").into_any().add(given)?,
                    }
                } else {
                    given.clone()
                };
                let path = name.cast::<PyString>()?.to_str()?;
                if tracked {
                    tracker::check_trackable(py, path)?;
                }
                let (seg, announced) = open_tracked(py, path, &opts, tracked, false)?;
                (name.unbind(), seg, announced)
            }
        };

        // Registration. Whatever stops us from here on removes what this
        // call created: the caller never gets a handle to it, so no one
        // else could.
        let bound = name.bind(py);
        let path = bound.cast::<PyString>()?.to_str()?;
        // The object's identity lets a later attach in this process skip
        // its REGISTER; a create does not look it up for that (an attach
        // after it then registers once more, which changes nothing).
        let identity = if seg.created() {
            None
        } else {
            Some(seg.identity())
        };
        let registered = if announced {
            tracker::announced(path, identity);
            Ok(())
        } else if tracked {
            tracker::send(py, Cmd::Register, path, identity)
        } else {
            Ok(())
        };
        if let Err(e) = registered {
            let created = seg.created();
            drop(seg);
            if created {
                let _ = segment::unlink(path);
            }
            return Err(e);
        }
        this.install(name, seg, track).finish(py)
    }

    /// A new untracked SharedMemory of ``size`` bytes in the placeholder
    /// ``name`` (OS name): an empty object that a SharedMemoryManager's
    /// server created and tracks, sized and mapped here (pages reserved
    /// unless ``reserve`` is false, by default as ``FERROSHM_RESERVE``
    /// says). FileExistsError if it is not empty any more,
    /// FileNotFoundError if it is gone.
    #[staticmethod]
    #[pyo3(signature = (name, size, reserve=None))]
    fn _in_placeholder(
        py: Python<'_>,
        name: Bound<'_, PyString>,
        size: &Bound<'_, PyAny>,
        reserve: Option<bool>,
    ) -> PyResult<Py<Self>> {
        if check_size(Some(size))? {
            return Err(PyValueError::new_err(
                "'size' must be a positive number different from zero",
            ));
        }
        let size = index_size(Some(size))?;
        let reserve = reserve.unwrap_or_else(|| RESERVE_DEFAULT.load(Ordering::Relaxed));
        let seg = open_placeholder(py, name.to_str()?, size, reserve)?;
        let shm = SharedMemoryPy {
            state: Mutex::new(State::new()),
        };
        // Nothing to release: the state is new.
        let _ = shm.install(name.into_any().unbind(), seg, false);
        Py::new(py, shm)
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let args = (
            slf.getattr(pyo3::intern!(py, "name"))?,
            false,
            slf.getattr(pyo3::intern!(py, "size"))?,
        );
        (slf.get_type(), args).into_pyobject(py)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        Ok(format!(
            "{}({}, size={})",
            slf.get_type().name()?,
            slf.getattr(pyo3::intern!(py, "name"))?.repr()?,
            slf.getattr(pyo3::intern!(py, "size"))?
        ))
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(slf: &Bound<'_, Self>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<()> {
        if Self::is_exact(slf) {
            slf.get().close(slf.py())
        } else {
            slf.call_method0(pyo3::intern!(slf.py(), "close"))?;
            Ok(())
        }
    }

    /// A memoryview of contents of the shared memory block.
    #[getter]
    fn buf(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.get()._buf(slf.py())
    }

    /// Unique name that identifies the shared memory block.
    #[getter]
    fn name(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let name = slf.get().lock().name.as_ref().map(|n| n.clone_ref(py));
        let Some(name) = name else {
            return Ok(py.None());
        };
        if USE_POSIX && Self::prepend_slash(slf)? {
            if let Ok(s) = name.bind(py).cast::<PyString>() {
                if let Some(bare) = s.to_str()?.strip_prefix('/') {
                    return Ok(PyString::new(py, bare).into_any().unbind());
                }
            }
        }
        Ok(name)
    }

    /// Size in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.lock().size
    }

    /// Closes access to the shared memory from this instance but does
    /// not destroy the shared memory block.
    ///
    /// Unlike the standard library, this never raises BufferError: memory
    /// that a memoryview or array still uses stays mapped until the last of
    /// them is gone.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let closing = Closing::take(&mut self.lock());
        closing.finish(py)
    }

    /// Requests that the underlying shared memory block be destroyed.
    ///
    /// Unlink should be called once (and only once) across all handles
    /// which have access to the shared memory block, even if these
    /// handles belong to different processes. Closing and unlinking may
    /// happen in any order, but trying to access data inside a shared
    /// memory block after unlinking may result in memory errors,
    /// depending on platform.
    ///
    /// This method has no effect on Windows, where the only way to
    /// delete a shared memory block is to close all handles.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        if !USE_POSIX {
            return Ok(());
        }
        let (name, track) = {
            let st = self.lock();
            (st.name.as_ref().map(|n| n.clone_ref(py)), st.track)
        };
        let Some(name) = name else { return Ok(()) };
        let name = name.bind(py);
        if !name.is_truthy()? {
            return Ok(());
        }
        let path = name.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "shm_unlink() argument 'path' must be str, not {}",
                name.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        let path = path.to_str()?;
        if path.as_bytes().contains(&0) {
            return Err(PyValueError::new_err("embedded null character"));
        }
        segment::unlink(path).map_err(|e| os_error(&e, path))?;
        if track {
            tracker::send(py, Cmd::Unregister, path, None)?;
        }
        Ok(())
    }

    // -- the standard library's private attributes ------------------------

    /// The OS name (leading '/' on POSIX), as the standard library's
    /// ``_name``.
    #[getter]
    fn _name(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.lock().name {
            Some(n) => n.clone_ref(py),
            None => py.None(),
        }
    }

    #[setter(_name)]
    fn set_name(&self, value: Py<PyAny>) {
        let old = self.lock().name.replace(value);
        drop(old);
    }

    #[getter]
    fn _size(&self) -> usize {
        self.lock().size
    }

    #[setter(_size)]
    fn set_size(&self, value: usize) {
        self.lock().size = value;
    }

    #[getter]
    fn _track(&self) -> bool {
        self.lock().track
    }

    #[setter(_track)]
    fn set_track(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = value.is_truthy()?;
        self.lock().track = value;
        Ok(())
    }

    /// ``open(2)`` flags used to open the segment (``O_CREAT | O_EXCL |
    /// O_RDWR`` after creating it); subclasses may override it as a class
    /// attribute, as the standard library's tests do.
    #[getter]
    fn _flags(&self) -> i32 {
        self.lock().flags
    }

    #[setter(_flags)]
    fn set_flags(&self, value: i32) {
        self.lock().flags = value;
    }

    /// Permission bits of a new segment (``0o600``); overridable as
    /// ``_flags``.
    #[getter]
    fn _mode(&self) -> u32 {
        self.lock().mode
    }

    #[setter(_mode)]
    fn set_mode(&self, value: u32) {
        self.lock().mode = value;
    }

    /// (device, inode) of the open segment: equal for handles on the same
    /// object, different for one re-created under the same name.
    /// ValueError after ``close()``. (ferroshm's own; not in the standard
    /// library.)
    #[getter]
    fn _identity(&self) -> PyResult<(u64, u64)> {
        Ok(self.share()?.0.identity())
    }

    #[classattr]
    fn _prepend_leading_slash() -> bool {
        USE_POSIX
    }

    /// The memoryview behind ``buf`` (made on first use); assignable, as
    /// code that "disarms" the standard library's ``close()`` does.
    #[getter]
    fn _buf(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let seg = {
            let st = self.lock();
            match &st.buf {
                Slot::Set(buf) => return Ok(buf.clone_ref(py)),
                Slot::Unmade => match &st.seg {
                    Some(seg) => Arc::clone(seg),
                    None => return Ok(py.None()),
                },
            }
        };
        let view = memoryview_of(py, seg)?.into_any().unbind();
        let mut st = self.lock();
        match &st.buf {
            // Another thread made one meanwhile: everyone gets the same.
            Slot::Set(buf) => Ok(buf.clone_ref(py)),
            Slot::Unmade if st.seg.is_some() => {
                st.buf = Slot::Set(view.clone_ref(py));
                Ok(view)
            }
            Slot::Unmade => Ok(py.None()),
        }
    }

    #[setter(_buf)]
    fn set_buf(&self, value: Py<PyAny>) {
        let old = std::mem::replace(&mut self.lock().buf, Slot::Set(value));
        drop(old);
    }

    /// A descriptor of the segment, as the standard library's ``_fd``: made
    /// on first use by opening the segment's name again (-1 if the name no
    /// longer refers to this segment, or after ``close()``); ``close()``
    /// closes it unless the caller already did. Assignable (``shm._fd =
    /// -1`` after ``os.close(shm._fd)``).
    #[getter]
    fn _fd(&self) -> i64 {
        let mut st = self.lock();
        match st.fd {
            Fd::Owned(fd) => i64::from(fd),
            Fd::Set(v) => v,
            Fd::Unopened => match reopen(st.seg.as_deref()) {
                Some(fd) => {
                    st.fd = Fd::Owned(fd);
                    i64::from(fd)
                }
                None => -1,
            },
        }
    }

    #[setter(_fd)]
    fn set_fd(&self, value: i64) {
        self.lock().fd = Fd::Set(value);
    }

    /// An ``mmap.mmap`` of the segment over ``_fd``, as the standard
    /// library's ``_mmap``: made on first use (a second mapping of the same
    /// memory), None after ``close()``. Assignable.
    #[getter]
    fn _mmap(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let (size, writable, name) = {
            let st = self.lock();
            match (&st.mmap, &st.seg) {
                (Slot::Set(m), _) => return Ok(m.clone_ref(py)),
                (Slot::Unmade, None) => return Ok(py.None()),
                (Slot::Unmade, Some(seg)) => (seg.len(), seg.writable(), seg.name().to_owned()),
            }
        };
        let mmap_module = py.import("mmap")?;
        let mmap_class = mmap_module.getattr("mmap")?;
        // The standard library's own call (`mmap.mmap(fd, size)`: shared,
        // read and write); read-only where the segment is mapped so.
        let kwargs = PyDict::new(py);
        if !writable {
            kwargs.set_item("access", mmap_module.getattr("ACCESS_READ")?)?;
        }
        let made = if USE_POSIX {
            let fd = self._fd();
            if fd < 0 {
                return Ok(py.None());
            }
            mmap_class.call((fd, size), Some(&kwargs))?
        } else {
            kwargs.set_item("tagname", name)?;
            mmap_class.call((-1, size), Some(&kwargs))?
        };
        let mut st = self.lock();
        match &st.mmap {
            Slot::Set(m) => Ok(m.clone_ref(py)),
            Slot::Unmade => {
                st.mmap = Slot::Set(made.clone().unbind());
                Ok(made.unbind())
            }
        }
    }

    #[setter(_mmap)]
    fn set_mmap(&self, value: Py<PyAny>) {
        let old = std::mem::replace(&mut self.lock().mmap, Slot::Set(value));
        drop(old);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_lock: a collection never waits for a thread that holds the
        // state (which never runs Python code meanwhile anyway).
        if let Ok(st) = self.state.try_lock() {
            for slot in [&st.buf, &st.mmap] {
                if let Slot::Set(obj) = slot {
                    visit.call(obj)?;
                }
            }
            if let Some(name) = &st.name {
                visit.call(name)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = {
            let mut st = self.lock();
            (
                std::mem::replace(&mut st.buf, Slot::Unmade),
                std::mem::replace(&mut st.mmap, Slot::Unmade),
                st.name.take(),
            )
        };
        drop(taken);
    }
}

/// A new descriptor of the open segment `seg`, if its name still refers to it.
#[cfg(unix)]
fn reopen(seg: Option<&Segment>) -> Option<i32> {
    use std::os::fd::IntoRawFd;
    seg?.reopen().ok().map(IntoRawFd::into_raw_fd)
}

#[cfg(not(unix))]
fn reopen(_seg: Option<&Segment>) -> Option<i32> {
    None
}

/// Open `path` for `SharedMemory.__init__`: a create registers the segment
/// with the resource tracker the moment it exists (a fresh random name,
/// `random`, even before it is created), writing straight to the tracker's
/// pipe; small creates and attaches keep the GIL.
fn open_tracked(
    py: Python<'_>,
    path: &str,
    opts: &OpenOptions,
    tracked: bool,
    random: bool,
) -> PyResult<(Segment, bool)> {
    let creating = opts.flags & libc::O_CREAT != 0;
    let no_gil = no_gil(py);
    let detach = no_gil || (creating && opts.size.unwrap_or(0) > DETACH_ABOVE);
    if tracked && creating {
        if let Some(ann) = tracker::announcement(py, path)? {
            // Released GIL: the tracker's descriptor may be closed and its
            // number reused meanwhile (tracker relaunched), so the call
            // writes to a duplicate of its own.
            let (fd, _closer) = if detach {
                match segment_dup(ann.fd) {
                    Some(dup) => (dup, Some(FdCloser(dup))),
                    None => return open_segment(py, path, opts, None, detach),
                }
            } else {
                (ann.fd, None)
            };
            let unregister = || ann.unregister(path);
            let announce = Announce {
                fd,
                register: &ann.register,
                unregister: &unregister,
                first: random && !tracker::has_name(path),
                owned: detach,
            };
            return open_segment(py, path, opts, Some(&announce), detach);
        }
    }
    open_segment(py, path, opts, None, detach)
}

#[cfg(unix)]
fn segment_dup(fd: i32) -> Option<i32> {
    segment::dup_fd(fd).ok()
}

#[cfg(not(unix))]
fn segment_dup(_fd: i32) -> Option<i32> {
    None
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SharedMemoryPy>()?;
    m.add_function(wrap_pyfunction!(_set_hooks, m)?)?;
    Ok(())
}
