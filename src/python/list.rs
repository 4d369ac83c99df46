//! `ferroshm.ShareableList`: the standard library's class, with item access
//! going from Python straight into the Rust layout code of `crate::list`.

use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::{Arc, OnceLock};

use pyo3::exceptions::{
    PyAttributeError, PyIndexError, PyOSError, PyOverflowError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PySlice, PyString, PyTuple, PyType,
};

use super::errors::list_error;
use super::shared_memory::SharedMemoryPy;
use crate::list::{ItemRef, ListError, ListSizer, ListView, RawItem, SharedList};
use crate::segment::Segment;

/// Python objects this module needs from the pure-Python half of the
/// package, looked up once.
struct PyHelpers {
    shared_memory: Py<PyAny>,
    item_type_error: Py<PyAny>,
    struct_pack: Py<PyAny>,
    partial: Py<PyAny>,
    generic_alias: Py<PyAny>,
}

static HELPERS: PyOnceLock<PyHelpers> = PyOnceLock::new();

fn helpers(py: Python<'_>) -> PyResult<&PyHelpers> {
    HELPERS.get_or_try_init(py, || {
        let module = py.import("ferroshm.shared_memory")?;
        Ok(PyHelpers {
            shared_memory: module.getattr("SharedMemory")?.unbind(),
            item_type_error: module.getattr("ItemTypeError")?.unbind(),
            struct_pack: py.import("struct")?.getattr("pack")?.unbind(),
            partial: py.import("functools")?.getattr("partial")?.unbind(),
            generic_alias: py.import("types")?.getattr("GenericAlias")?.unbind(),
        })
    })
}

fn closed_error() -> PyErr {
    PyValueError::new_err("operation on a closed ShareableList (its shared memory was closed)")
}

/// A Python value as a list item: int, float, bool, None, str, bytes, and
/// their subclasses (stored as the base type; the standard library raises
/// KeyError for subclasses such as IntEnum or numpy.float64).
#[inline(always)]
fn to_item<'a>(py: Python<'_>, obj: &'a Bound<'_, PyAny>) -> PyResult<ItemRef<'a>> {
    // Exact types first: they are what lists hold almost always.
    if obj.is_exact_instance_of::<PyInt>() {
        return int_item(py, obj);
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return Ok(ItemRef::Float(f.value()));
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Ok(ItemRef::Str(s.to_str()?));
    }
    if obj.is_none() {
        return Ok(ItemRef::None);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(ItemRef::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return int_item(py, obj);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(ItemRef::Float(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(ItemRef::Str(s.to_str()?));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(ItemRef::Bytes(b.as_bytes()));
    }
    Err(PyErr::from_value(
        helpers(py)?
            .item_type_error
            .bind(py)
            .call1((obj.get_type(),))?,
    ))
}

/// An int as a 64-bit item; too large an int is the standard library's
/// `struct.error`, raised before anything is written.
#[inline(always)]
fn int_item<'a>(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<ItemRef<'a>> {
    match obj.extract::<i64>() {
        Ok(v) => Ok(ItemRef::Int(v)),
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => Err(int_overflow(py, obj, e)),
        Err(e) => Err(e),
    }
}

/// The `struct.error` the standard library raises for an int that does
/// not fit in `'q'`, message included (it differs between Python versions:
/// "argument out of range" up to 3.11, "'q' format requires ..." since),
/// obtained from `struct.pack` itself. Error path only.
#[cold]
fn int_overflow(py: Python<'_>, obj: &Bound<'_, PyAny>, overflow: PyErr) -> PyErr {
    let pack = match helpers(py) {
        Ok(h) => h.struct_pack.bind(py),
        Err(e) => return e,
    };
    match pack.call1(("q", obj)) {
        Err(e) => e,
        Ok(_) => overflow,
    }
}

/// A converted item kept between the sizing and the writing pass of a new
/// list: fixed-size values as their word, str and bytes by reference to
/// their object (`Obj`).
#[derive(Clone, Copy)]
enum Compact {
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    Obj,
}

impl Compact {
    #[inline(always)]
    fn of(item: &ItemRef<'_>) -> Compact {
        match *item {
            ItemRef::Int(v) => Compact::Int(v),
            ItemRef::Float(v) => Compact::Float(v),
            ItemRef::Bool(v) => Compact::Bool(v),
            ItemRef::None => Compact::None,
            ItemRef::Str(_) | ItemRef::Bytes(_) => Compact::Obj,
        }
    }

    #[inline(always)]
    fn item(self) -> Option<ItemRef<'static>> {
        match self {
            Compact::Int(v) => Some(ItemRef::Int(v)),
            Compact::Float(v) => Some(ItemRef::Float(v)),
            Compact::Bool(v) => Some(ItemRef::Bool(v)),
            Compact::None => Some(ItemRef::None),
            Compact::Obj => None,
        }
    }
}

/// Largest scratch buffer kept for the next list creation on this thread
/// (16 MiB); larger ones are freed after use.
const SCRATCH_KEEP: usize = 1 << 20;

thread_local! {
    /// Reused between creations so that its pages are not faulted in anew
    /// every time.
    static SCRATCH: std::cell::RefCell<Vec<Compact>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A list item as the Python object the standard library would return.
pub(crate) fn to_py(py: Python<'_>, item: ItemRef<'_>) -> PyResult<Py<PyAny>> {
    Ok(match item {
        ItemRef::Int(v) => v.into_pyobject(py)?.into_any().unbind(),
        ItemRef::Float(v) => PyFloat::new(py, v).into_any().unbind(),
        ItemRef::Bool(v) => PyBool::new(py, v).to_owned().into_any().unbind(),
        ItemRef::None => py.None(),
        ItemRef::Str(s) => PyString::new(py, s).into_any().unbind(),
        ItemRef::Bytes(b) => PyBytes::new(py, b).into_any().unbind(),
    })
}

/// A list item as the Python object the standard library would return, a
/// str decoded by Python's own UTF-8 codec: bytes that are not UTF-8 raise
/// the `UnicodeDecodeError` (message included) that the standard library's
/// `value.rstrip(b'\x00').decode('utf8')` raises.
#[inline(always)]
fn raw_to_py(py: Python<'_>, item: RawItem<'_>) -> PyResult<Py<PyAny>> {
    Ok(match item {
        RawItem::Int(v) => v.into_pyobject(py)?.into_any().unbind(),
        RawItem::Float(v) => PyFloat::new(py, v).into_any().unbind(),
        RawItem::Bool(v) => PyBool::new(py, v).to_owned().into_any().unbind(),
        RawItem::None => py.None(),
        RawItem::Str(b) => PyString::from_bytes(py, b)?.into_any().unbind(),
        RawItem::Bytes(b) => PyBytes::new(py, b).into_any().unbind(),
    })
}

/// Item `i` of `view` (which must be below its length) as a Python object.
#[inline(always)]
fn read_item(py: Python<'_>, view: &ListView, i: usize) -> PyResult<Py<PyAny>> {
    match view.get_raw_with(i, |item| raw_to_py(py, item)) {
        Ok(object) => object,
        Err(e) => Err(list_error(py, e, false)),
    }
}

/// Where an index points.
enum Position<'py> {
    At(usize),
    Slice(Bound<'py, PySlice>),
}

/// Resolve a Python index into a list of `n` items the way list does: ints
/// (and objects with __index__) in [-n, n), or a slice.
#[inline(always)]
fn position<'py>(
    py: Python<'_>,
    n: usize,
    index: &Bound<'py, PyAny>,
    setting: bool,
) -> PyResult<Position<'py>> {
    match index.cast::<PyInt>() {
        Ok(i) => match i.extract::<isize>() {
            Ok(i) => at(py, n, i, setting),
            Err(_) => Err(index_too_large("int")),
        },
        Err(_) => other_position(py, n, index, setting),
    }
}

/// The position of index `i` (negative: from the end) in a list of `n`
/// items, or the IndexError list raises.
#[inline(always)]
fn at<'py>(py: Python<'_>, n: usize, i: isize, setting: bool) -> PyResult<Position<'py>> {
    let n = n as isize;
    let j = if i < 0 { i + n } else { i };
    if j < 0 || j >= n {
        return Err(list_error(py, ListError::IndexOutOfRange, setting));
    }
    Ok(Position::At(j as usize))
}

fn index_too_large(type_name: &str) -> PyErr {
    PyIndexError::new_err(format!(
        "cannot fit '{type_name}' into an index-sized integer"
    ))
}

/// [`position`] for an index that is not an int: a slice, or an object
/// with __index__ (resolved as an int would be).
#[cold]
#[inline(never)]
fn other_position<'py>(
    py: Python<'_>,
    n: usize,
    index: &Bound<'py, PyAny>,
    setting: bool,
) -> PyResult<Position<'py>> {
    if let Ok(s) = index.cast::<PySlice>() {
        return Ok(Position::Slice(s.clone()));
    }
    if index.hasattr("__index__")? {
        return match index.call_method0("__index__")?.extract::<isize>() {
            Ok(i) => at(py, n, i, setting),
            Err(e) if e.is_instance_of::<PyOverflowError>(py) => {
                Err(index_too_large(&index.get_type().name()?.to_string()))
            }
            Err(e) => Err(e),
        };
    }
    Err(PyTypeError::new_err(format!(
        "ShareableList indices must be integers or slices, not {}",
        index.get_type().name()?
    )))
}

/// A list whose items live in shared memory, byte-compatible with
/// :class:`multiprocessing.shared_memory.ShareableList` (Python 3.9+ layout).
///
/// ``ShareableList(sequence=None, *, name=None)`` creates a new list from any
/// iterable (consumed before any segment exists), or attaches to the list
/// ``name`` when ``sequence`` is None. Items are int (64-bit), float, bool,
/// None, str and bytes; subclasses of these are stored as the base type.
/// ``track`` (keyword-only, an addition) is passed to the list's
/// SharedMemory: ``track=False`` leaves the resource tracker out, as for
/// SharedMemory since Python 3.13.
///
/// Differences from the standard library: str slots are sized in UTF-8
/// bytes, so non-ASCII strings round-trip; indices outside [-len, len) raise
/// IndexError and non-integer indices TypeError, as for list; a failed
/// assignment changes nothing; slices read as lists; attaching reads only
/// the header (O(1)) and a corrupt or hostile segment raises ValueError;
/// numeric values are written and read as single 8-byte accesses, and our
/// writers store the value before its format. Like the standard library,
/// trailing NUL bytes of str and bytes items are dropped on reading.
/// ``close()``, ``unlink()`` and ``with`` work on the list itself.
///
/// Subclasses work as with the standard library's pure-Python class: their
/// instances take attributes, and a subclass's own ``__init__`` creates or
/// attaches the list by calling ``super().__init__(sequence, name=name)``.
#[pyclass(
    name = "ShareableList",
    module = "ferroshm.shared_memory",
    subclass,
    frozen,
    dict,
    weakref
)]
pub(crate) struct ShareableListPy {
    /// Set exactly once: by `__new__` for the class itself and for
    /// subclasses that keep its `__init__`; by `__init__` for subclasses
    /// with their own (which choose the arguments it gets).
    list: OnceLock<Attached>,
}

/// A `SharedMemory` opened for a list: its segment, the flag its `close()`
/// sets, and the object itself.
type Opened = (Arc<Segment>, Arc<AtomicBool>, Py<PyAny>);

/// An attached list (which keeps its memory mapped), the flag its
/// SharedMemory's `close()` sets, and that SharedMemory.
struct Attached {
    list: SharedList,
    closed: Arc<AtomicBool>,
    shm: Py<PyAny>,
}

/// Close `shm` and, with `unlink`, remove its segment, on the way out of a
/// create that failed or was interrupted: the caller reports its own error.
/// Both are Python calls, in which Python runs pending signal handlers; an
/// exception a second signal raises there is dropped and the call made
/// again (a handler runs once per signal), so that it cannot cut the
/// cleanup short and leave the new segment behind. An `OSError` (the
/// segment is gone already) ends the attempts.
fn discard(shm: &Bound<'_, PyAny>, unlink: bool) {
    let py = shm.py();
    let methods: &[&str] = if unlink {
        &["close", "unlink"]
    } else {
        &["close"]
    };
    for method in methods {
        for _ in 0..3 {
            match shm.call_method0(*method) {
                Err(e) if !e.is_instance_of::<PyOSError>(py) => continue,
                _ => break,
            }
        }
    }
}

fn uninitialized_error() -> PyErr {
    PyValueError::new_err("ShareableList.__init__() was not called on this object")
}

/// Whether `cls` initialises through `ShareableList.__init__` (the class
/// itself, or a subclass that does not define its own).
fn inherits_init(cls: &Bound<'_, PyType>) -> PyResult<bool> {
    let base = cls.py().get_type::<ShareableListPy>();
    Ok(cls.is(&base) || cls.getattr("__init__")?.is(&base.getattr("__init__")?))
}

/// The TypeError the standard library's `ShareableList.__init__` raises for
/// arguments it does not take.
fn unexpected_arguments(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyErr {
    if !args.is_empty() {
        return PyTypeError::new_err(format!(
            "ShareableList.__init__() takes from 1 to 2 positional arguments but {} were given",
            args.len() + 2
        ));
    }
    let key = kwargs
        .and_then(|k| k.keys().iter().next())
        .and_then(|k| k.str().ok().map(|s| s.to_string()))
        .unwrap_or_default();
    PyTypeError::new_err(format!(
        "ShareableList.__init__() got an unexpected keyword argument '{key}'"
    ))
}

impl ShareableListPy {
    #[inline(always)]
    fn attached(&self) -> PyResult<&Attached> {
        self.list.get().ok_or_else(uninitialized_error)
    }

    #[inline(always)]
    fn view(&self) -> PyResult<&ListView> {
        let attached = self.attached()?;
        if attached.closed.load(Ordering::Relaxed) {
            return Err(closed_error());
        }
        Ok(attached.list.view())
    }

    /// Item `i` (below the length) as a Python object.
    #[inline(always)]
    fn get(&self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>> {
        read_item(py, self.view()?, i)
    }

    fn open(shm: Bound<'_, PyAny>) -> PyResult<Opened> {
        let (segment, closed) = shm.cast::<SharedMemoryPy>()?.get().share()?;
        Ok((segment, closed, shm.unbind()))
    }

    /// Create a list from `sequence`, or attach to the list `name`: what the
    /// standard library's `__init__` does. With `make_shm`, a new list goes
    /// into the SharedMemory that `make_shm(size)` returns instead of one
    /// created under `name`.
    fn build(
        py: Python<'_>,
        sequence: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
        track: bool,
        make_shm: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Attached> {
        let h = helpers(py)?;
        let shm_class = h.shared_memory.bind(py);
        let name_arg = match name {
            Some(n) => n.clone(),
            None => py.None().into_bound(py),
        };
        let kwargs = PyDict::new(py);
        if !track {
            kwargs.set_item("track", false)?;
        }
        match sequence {
            None if name.is_some() => {
                let shm = shm_class.call((name_arg,), Some(&kwargs))?;
                let (segment, closed, shm) = Self::open(shm)?;
                match SharedList::attach(segment) {
                    Ok(list) => Ok(Attached { list, closed, shm }),
                    Err(e) => {
                        shm.bind(py).call_method0("close")?;
                        Err(list_error(py, e, false))
                    }
                }
            }
            _ => {
                // Materialise the sequence (any iterable, generators too) and
                // check every item before anything is created.
                // A tuple is an immutable snapshot: nothing can change it
                // while Python code (the segment's creation) runs.
                let snapshot = match sequence {
                    Some(seq) => {
                        if let Ok(tuple) = seq.cast_exact::<PyTuple>() {
                            tuple.clone()
                        } else if let Ok(list) = seq.cast_exact::<PyList>() {
                            list.to_tuple()
                        } else {
                            PyTuple::new(py, seq.try_iter()?.collect::<PyResult<Vec<_>>>()?)?
                        }
                    }
                    None => PyTuple::empty(py),
                };
                let objects = snapshot.as_slice();
                // Convert and size every item, which finds every bad one
                // before anything exists. Fixed-size items are kept in a
                // compact scratch buffer for the writing pass; str and bytes
                // are converted again from their (immutable) objects.
                let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
                scratch.clear();
                scratch.reserve(objects.len());
                let mut sizer = ListSizer::new();
                for o in objects {
                    let item = to_item(py, o)?;
                    sizer.push(&item).map_err(|e| list_error(py, e, false))?;
                    scratch.push(Compact::of(&item));
                }
                let size = sizer.size().map_err(|e| list_error(py, e, false))?;
                let shm = match make_shm {
                    Some(make_shm) => make_shm.call1((size,))?,
                    None => {
                        kwargs.set_item("create", true)?;
                        kwargs.set_item("size", size)?;
                        shm_class.call((name_arg,), Some(&kwargs))?
                    }
                };
                let (segment, closed, shm) = Self::open(shm)?;
                let written = SharedList::write_new(segment, &sizer, |writer| {
                    for (compact, o) in scratch.iter().zip(objects) {
                        match compact.item() {
                            Some(item) => writer.push(&item)?,
                            None => match to_item(py, o) {
                                Ok(item) => writer.push(&item)?,
                                Err(_) => {
                                    return Err(ListError::Corrupt(
                                        "an item changed while the list was created".into(),
                                    ))
                                }
                            },
                        }
                    }
                    Ok(())
                });
                if scratch.capacity() <= SCRATCH_KEEP {
                    SCRATCH.with(|s| *s.borrow_mut() = scratch);
                }
                // Freed now, so that a signal arriving while the snapshot
                // of a long sequence is released is still seen below.
                drop(snapshot);
                match written {
                    Ok(list) => {
                        // A signal that arrived while the list was written
                        // (SIGINT) has its handler run here: raised at the
                        // return to the caller instead, its KeyboardInterrupt
                        // would drop the new list with its segment still
                        // linked.
                        if let Err(interrupted) = py.check_signals() {
                            discard(shm.bind(py), true);
                            return Err(interrupted);
                        }
                        Ok(Attached { list, closed, shm })
                    }
                    Err(e) => {
                        discard(shm.bind(py), true);
                        Err(list_error(py, e, false))
                    }
                }
            }
        }
    }
}

#[pymethods]
impl ShareableListPy {
    /// The class itself creates or attaches here. Arguments a subclass adds
    /// are left to that subclass's `__init__`, as `object.__new__` leaves
    /// them for the standard library's class.
    #[new]
    #[classmethod]
    #[pyo3(
        signature = (sequence=None, *args, name=None, track=true, **kwargs),
        text_signature = "(sequence=None, *, name=None, track=True)"
    )]
    fn new(
        cls: &Bound<'_, PyType>,
        sequence: Option<&Bound<'_, PyAny>>,
        args: &Bound<'_, PyTuple>,
        name: Option<&Bound<'_, PyAny>>,
        track: bool,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let list = OnceLock::new();
        if inherits_init(cls)? {
            if !args.is_empty() || kwargs.is_some_and(|k| !k.is_empty()) {
                return Err(unexpected_arguments(args, kwargs));
            }
            // Cannot fail: the cell is new.
            let _ = list.set(Self::build(cls.py(), sequence, name, track, None)?);
        }
        Ok(ShareableListPy { list })
    }

    /// Create a list from ``sequence`` or attach to the list ``name``, for
    /// a subclass's ``__init__`` (``super().__init__(sequence, name=name)``).
    /// Does nothing on a list that already is.
    #[pyo3(signature = (sequence=None, *, name=None, track=true))]
    fn __init__(
        &self,
        py: Python<'_>,
        sequence: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
        track: bool,
    ) -> PyResult<()> {
        if self.list.get().is_some() {
            return Ok(());
        }
        let created = name.is_none() || sequence.is_some();
        if let Err(extra) = self.list.set(Self::build(py, sequence, name, track, None)?) {
            // Another thread initialised this object meanwhile: keep its
            // list, and remove the one made here.
            discard(extra.shm.bind(py), created);
        }
        Ok(())
    }

    /// A new list of the items of ``sequence`` in the SharedMemory that
    /// ``make_shm(size)`` returns, ``size`` bytes or more: for
    /// ``SharedMemoryManager``, whose clients write lists into placeholders
    /// its server made. If writing fails or is interrupted, that
    /// SharedMemory is closed and unlinked.
    #[staticmethod]
    fn _create_in(
        py: Python<'_>,
        sequence: &Bound<'_, PyAny>,
        make_shm: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let list = OnceLock::new();
        let _ = list.set(Self::build(
            py,
            Some(sequence),
            None,
            false,
            Some(make_shm),
        )?);
        Ok(ShareableListPy { list })
    }

    fn __getitem__(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let view = self.view()?;
        match position(py, view.len(), index, false)? {
            Position::At(i) => read_item(py, view, i),
            Position::Slice(slice) => {
                let ind = slice.indices(view.len() as isize)?;
                let out = PyList::empty(py);
                let mut i = ind.start;
                for _ in 0..ind.slicelength {
                    out.append(self.get(py, i as usize)?)?;
                    i += ind.step;
                }
                Ok(out.into_any().unbind())
            }
        }
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        index: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let view = self.view()?;
        let i = match position(py, view.len(), index, true)? {
            Position::At(i) => i,
            Position::Slice(_) => return Err(PyTypeError::new_err(
                "ShareableList does not support slice assignment (its length and slots are fixed)",
            )),
        };
        let item = to_item(py, value)?;
        view.set(i, item).map_err(|e| list_error(py, e, true))
    }

    /// The number of items, read from shared memory on every call as the
    /// standard library does.
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.view()?
            .live_len()
            .map_err(|e| list_error(py, e, false))
    }

    fn __iter__(slf: Bound<'_, Self>) -> PyResult<ListIter> {
        let n = slf.get().view()?.len() as isize;
        Ok(ListIter {
            list: slf.unbind(),
            next: AtomicIsize::new(0),
            stop: n,
            step: 1,
        })
    }

    fn __reversed__(slf: Bound<'_, Self>) -> PyResult<ListIter> {
        let n = slf.get().view()?.len() as isize;
        Ok(ListIter {
            list: slf.unbind(),
            next: AtomicIsize::new(n - 1),
            stop: -1,
            step: -1,
        })
    }

    fn __contains__(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        for i in 0..self.view()?.len() {
            if self.get(py, i)?.bind(py).eq(value)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// L.count(value) -> integer -- return number of occurrences of value.
    fn count(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut found = 0;
        for i in 0..self.view()?.len() {
            if value.eq(self.get(py, i)?.bind(py))? {
                found += 1;
            }
        }
        Ok(found)
    }

    /// L.index(value) -> integer -- return first index of value.
    /// Raises ValueError if the value is not present.
    fn index(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        for i in 0..self.view()?.len() {
            if value.eq(self.get(py, i)?.bind(py))? {
                return Ok(i);
            }
        }
        // Worded as the running interpreter's standard library words it
        // (3.14 changed it, gh-121288).
        if py.version_info() >= (3, 14) {
            return Err(PyValueError::new_err(
                "ShareableList.index(x): x not in list",
            ));
        }
        Err(PyValueError::new_err(format!(
            "{} not in this container",
            value.repr()?
        )))
    }

    /// The struct formats of all items, joined (e.g. ``'8sqd'``).
    #[getter]
    fn format(&self, py: Python<'_>) -> PyResult<String> {
        self.view()?.format().map_err(|e| list_error(py, e, false))
    }

    /// The SharedMemory instance holding the list.
    #[getter]
    fn shm(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.list.get() {
            Some(attached) => Ok(attached.shm.clone_ref(py)),
            None => Err(PyAttributeError::new_err(
                "'ShareableList' object has no attribute 'shm'",
            )),
        }
    }

    /// Gets the packing format for a single value stored in the list.
    fn _get_packing_format(&self, py: Python<'_>, position: isize) -> PyResult<String> {
        let view = self.view()?;
        let n = view.len() as isize;
        let j = if position < 0 { position + n } else { position };
        if j < 0 || j >= n {
            return Err(PyIndexError::new_err("Requested position out of range."));
        }
        view.format_of(j as usize)
            .map_err(|e| list_error(py, e, false))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let kwargs = PyDict::new(py);
        kwargs.set_item("name", slf.get().attached()?.shm.bind(py).getattr("name")?)?;
        let factory = helpers(py)?
            .partial
            .bind(py)
            .call((slf.get_type(),), Some(&kwargs))?;
        PyTuple::new(py, [factory.into_any(), PyTuple::empty(py).into_any()])
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let items = PyList::new(py, slf.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
        Ok(format!(
            "{}({}, name={})",
            slf.get_type().name()?,
            items.repr()?,
            slf.get().attached()?.shm.bind(py).getattr("name")?.repr()?
        ))
    }

    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        helpers(cls.py())?
            .generic_alias
            .bind(cls.py())
            .call1((cls, item))
    }

    /// Close the list's shared memory (``self.shm.close()``); the segment
    /// stays until someone unlinks it.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.attached()?.shm.bind(py).call_method0("close")?;
        Ok(())
    }

    /// Destroy the list's segment (``self.shm.unlink()``). Call it once,
    /// from any process, when no one needs the list any more.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        self.attached()?.shm.bind(py).call_method0("unlink")?;
        Ok(())
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

/// Iterator over a ShareableList (forwards or backwards), reading each item
/// when it is reached.
///
/// It may be shared between threads (free-threaded Python): each call of
/// `__next__` claims the next position with one atomic compare-and-swap, so
/// threads that share one iterator get every item exactly once between
/// them, none twice and none lost, each in the order of its own calls.
/// Once it is exhausted it stays exhausted. A position whose read fails (a
/// closed list, a corrupt item) is used up all the same: the next call goes
/// on with the next item.
#[pyclass(module = "ferroshm._native", frozen)]
pub(crate) struct ListIter {
    list: Py<ShareableListPy>,
    /// The next position to hand out; it moves from the start towards
    /// `stop` by `step`, and never past `stop`.
    next: AtomicIsize,
    stop: isize,
    step: isize,
}

impl ListIter {
    /// Claim the next position, or `None` once every one was claimed.
    #[inline(always)]
    fn claim(&self) -> Option<usize> {
        // Relaxed is enough: the counter orders nothing but itself, and the
        // item is read from memory the list owns, not published through it.
        let mut i = self.next.load(Ordering::Relaxed);
        loop {
            if i == self.stop {
                return None;
            }
            match self.next.compare_exchange_weak(
                i,
                i + self.step,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(i as usize),
                Err(now) => i = now,
            }
        }
    }
}

#[pymethods]
impl ListIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.claim() {
            Some(i) => self.list.get().get(py, i).map(Some),
            None => Ok(None),
        }
    }

    fn __length_hint__(&self) -> usize {
        let next = self.next.load(Ordering::Relaxed);
        ((self.stop - next) / self.step) as usize
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ShareableListPy>()?;
    m.add_class::<ListIter>()?;
    Ok(())
}
