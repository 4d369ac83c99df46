//! Read-only inspection for the command line (`python -m ferroshm`): open a
//! segment without the resource tracker and without write access, and read
//! the ShareableList in it, if it is one.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::errors::shared_list_error;
use super::list::to_py;
use crate::list::SharedList;

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
        .map_err(|e| shared_list_error(py, e))?;
    let mut out = Vec::with_capacity(list.len());
    for i in 0..list.len() {
        let format = list.format_of(i).map_err(|e| shared_list_error(py, e))?;
        let value = list
            .get_with(i, |item| to_py(py, item))
            .map_err(|e| shared_list_error(py, e))??;
        out.push((format, value));
    }
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_list, m)?)
}
