//! A record value's lines, as `schemas.wire.split_record` gives them (a packed record
//! holds one event per line), for the plan's loop (`plan_loop`).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// An upper bound of the chunk's lines: a batch value's newlines and one, else one.
pub(crate) fn lines_at_most(records: &Bound<'_, PyList>) -> PyResult<usize> {
    let py = records.py();
    let mut most = 0;
    for rec in records.iter() {
        let value = rec.getattr(intern!(py, "value"))?;
        most += match value.downcast::<PyBytes>() {
            Ok(bytes) => bytes.as_bytes().iter().filter(|&&b| b == b'\n').count() + 1,
            Err(_) => 1, // refused where the loop reads it
        };
    }
    Ok(most)
}

/// The events of a record value, as `schemas.wire.split_record` gives them: a batch
/// value's non-blank lines (bytes `strip()` would leave non-empty), unchanged.
pub(crate) fn lines(value: &[u8], batch: bool) -> Vec<&[u8]> {
    if !batch {
        return vec![value];
    }
    let mut found = Vec::with_capacity(value.iter().filter(|&&b| b == b'\n').count() + 1);
    found.extend(
        value
            .split(|&b| b == b'\n')
            .filter(|line| line.iter().any(|b| !b" \t\n\r\x0b\x0c".contains(b))),
    );
    found
}
