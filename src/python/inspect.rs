//! Read-only inspection for the command line (`python -m ferroshm`): open a
//! segment without the resource tracker and without write access, and read
//! the ShareableList in it, if it is one.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::errors::segment_error;
use super::list::to_py;
use crate::list::{SharedList, SharedListError};

fn error(err: SharedListError) -> PyErr {
    match err {
        SharedListError::Segment { name, source } => segment_error(&source, &name),
        SharedListError::List(e) => PyValueError::new_err(e.to_string()),
    }
}

/// Open the segment `name` (leading '/' included) read-only, without
/// registering it anywhere, and read every item of the ShareableList in it:
/// a list of `(format, value)` pairs. `ValueError` when the bytes are not a
/// valid list (any item included); `OSError` when it cannot be opened. The
/// segment is never written.
#[pyfunction]
fn read_list(py: Python<'_>, name: &str) -> PyResult<Vec<(String, Py<PyAny>)>> {
    if !crate::segment::is_os_name(name) {
        return Err(PyValueError::new_err(
            "the segment name must start with '/'",
        ));
    }
    let list = py
        .detach(|| SharedList::open_read_only(name))
        .map_err(error)?;
    let mut out = Vec::with_capacity(list.len());
    for i in 0..list.len() {
        let format = list.format_of(i).map_err(error)?;
        let value = list.get_with(i, |item| to_py(py, item)).map_err(error)??;
        out.push((format, value));
    }
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_list, m)?)
}
