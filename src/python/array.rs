//! `_native.ArrayHeader`: the header of a shared NumPy array
//! (`ferroshm.array`), made, written, read and checked by the Rust core
//! ([`crate::array`]). Python builds the dtype and the ndarray; every check
//! of what a segment says is done here, once.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::errors::array_error;
use super::shared_memory::SharedMemoryPy;
use crate::array::{ArrayHeader, Descr, Order};

/// The header of a shared array: dtype description, shape, order and where
/// the data is. Made from a description to create an array, or read from a
/// segment (and checked) to attach to one.
#[pyclass(name = "ArrayHeader", module = "ferroshm._native", frozen)]
pub(crate) struct ArrayHeaderPy {
    header: ArrayHeader,
}

/// A dimension as NumPy takes it: negative ones are an error.
fn dimension(d: i64) -> PyResult<usize> {
    usize::try_from(d).map_err(|_| PyValueError::new_err("negative dimensions are not allowed"))
}

/// The description as the Python objects NumPy's `dtype.descr` uses: a type
/// string, or a list of `(name, descr)` / `(name, descr, shape)` tuples,
/// with `(title, name)` for a titled field.
fn descr_object<'py>(py: Python<'py>, descr: &Descr) -> PyResult<Bound<'py, PyAny>> {
    match descr {
        Descr::Type(t) => Ok(PyString::new(py, &t.to_string()).into_any()),
        Descr::Struct(fields) => {
            let list = PyList::empty(py);
            for field in fields {
                let name = match &field.title {
                    Some(title) => {
                        PyTuple::new(py, [title.as_str(), field.name.as_str()])?.into_any()
                    }
                    None => PyString::new(py, &field.name).into_any(),
                };
                let sub = descr_object(py, &field.descr)?;
                let item = if field.shape.is_empty() {
                    PyTuple::new(py, [name, sub])?
                } else {
                    let shape = PyTuple::new(py, &field.shape)?.into_any();
                    PyTuple::new(py, [name, sub, shape])?
                };
                list.append(item)?;
            }
            Ok(list.into_any())
        }
    }
}

#[pymethods]
impl ArrayHeaderPy {
    /// The header of a new array: `descr` is the text of the dtype's
    /// description (`repr(dtype.descr)` for a structured dtype,
    /// `repr(dtype.str)` otherwise), `shape` a sequence of dimensions.
    /// ValueError, before anything exists, for a description that cannot
    /// be shared (object dtypes) or read back, negative dimensions, more
    /// than 64 of them, or an array too big for memory.
    #[new]
    #[pyo3(signature = (descr, shape, fortran=false, aligned_struct=false))]
    fn new(descr: &str, shape: Vec<i64>, fortran: bool, aligned_struct: bool) -> PyResult<Self> {
        let shape = shape
            .into_iter()
            .map(dimension)
            .collect::<PyResult<Vec<_>>>()?;
        let order = if fortran { Order::Fortran } else { Order::C };
        let header = Descr::parse(descr)
            .and_then(|descr| ArrayHeader::new(descr, &shape, order))
            .and_then(|header| header.with_aligned_struct(aligned_struct))
            .map_err(|e| array_error(&e))?;
        Ok(ArrayHeaderPy { header })
    }

    /// Read and check the header at the start of the open SharedMemory
    /// `segment`. ValueError when
    /// the segment holds no array, or a header that is corrupt, of another
    /// version, or that places the data outside the segment.
    #[staticmethod]
    fn read(segment: &Bound<'_, SharedMemoryPy>) -> PyResult<Self> {
        let (segment, _) = segment.get().share()?;
        let header = ArrayHeader::read(&segment).map_err(|e| array_error(&e))?;
        Ok(ArrayHeaderPy { header })
    }

    /// Check a header from `data`, the first bytes of a segment of
    /// `segment_len` bytes (by default `len(data)`), as `read` does.
    #[staticmethod]
    #[pyo3(signature = (data, segment_len=None))]
    fn decode(data: &[u8], segment_len: Option<usize>) -> PyResult<Self> {
        let len = segment_len.unwrap_or(data.len());
        let header = ArrayHeader::decode(data, len).map_err(|e| array_error(&e))?;
        Ok(ArrayHeaderPy { header })
    }

    /// Write the header at the start of `segment`, the magic bytes last.
    /// ValueError if the segment is too small or read-only.
    fn write(&self, segment: &Bound<'_, SharedMemoryPy>) -> PyResult<()> {
        let (segment, _) = segment.get().share()?;
        self.header.write(&segment).map_err(|e| array_error(&e))
    }

    /// The header's bytes, as `write` stores them.
    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.header.encode())
    }

    /// The dtype description as NumPy's `dtype.descr` objects: a type
    /// string, or a list of field tuples.
    #[getter]
    fn descr<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        descr_object(py, self.header.descr())
    }

    /// The description's text, as stored.
    #[getter]
    fn descr_text(&self) -> &str {
        self.header.descr_text()
    }

    /// The shape, a tuple of ints.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.header.shape())
    }

    /// Whether the data is in Fortran (column-major) order.
    #[getter]
    fn fortran(&self) -> bool {
        self.header.order() == Order::Fortran
    }

    /// Whether the structured dtype was made with `align=True`.
    #[getter]
    fn aligned_struct(&self) -> bool {
        self.header.aligned_struct()
    }

    /// Bytes per item.
    #[getter]
    fn itemsize(&self) -> usize {
        self.header.itemsize()
    }

    /// Bytes of data.
    #[getter]
    fn nbytes(&self) -> usize {
        self.header.nbytes()
    }

    /// Where the data starts in the segment (a multiple of 64).
    #[getter]
    fn data_offset(&self) -> usize {
        self.header.data_offset()
    }

    /// Bytes of the header itself.
    #[getter]
    fn header_len(&self) -> usize {
        self.header.header_len()
    }

    /// The segment size the array needs: data offset plus data.
    #[getter]
    fn segment_len(&self) -> usize {
        self.header.segment_len()
    }

    fn __repr__(&self) -> String {
        format!(
            "<ferroshm._native.ArrayHeader descr={} shape={:?} order={} data_offset={}>",
            self.header.descr_text(),
            self.header.shape(),
            if self.fortran() { "F" } else { "C" },
            self.header.data_offset()
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ArrayHeaderPy>()?;
    Ok(())
}
