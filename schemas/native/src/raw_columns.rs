//! A chunk's raw rows ([`RawRows`] in `raw_rows`) as the Native-format columns of the raw
//! insert (`schemas/storage/driver.py`), written from the column buffers with the
//! interpreter let go, so the event loop plans or finishes meanwhile;
//! `tests/schemas/test_raw_rows.py` holds them to the tuples' bytes.

use crate::native_column::{kind, varint, Kind};
use crate::raw_rows::{RawRows, Texts, WIDTH};
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

impl Texts {
    /// The Native format's `String` column: each cell's length (LEB128), then its bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + self.ends.len() * 2);
        let mut start = 0;
        for &end in &self.ends {
            varint(&mut out, end - start);
            out.extend_from_slice(&self.bytes[start..end]);
            start = end;
        }
        out
    }
}

impl RawRows {
    /// Column `column` in the Native format for a `spec` column, or `None` when its type
    /// is not this column's kind or a value does not fit it (the driver then writes the
    /// column from its cells, or refuses it with its own error).
    pub(crate) fn encode_one(&self, column: usize, spec: Option<Kind>) -> Option<Vec<u8>> {
        let spec = spec?;
        if let Some(slot) = Self::text_slot(column) {
            return matches!(spec, Kind::Text).then(|| self.texts[slot].encode());
        }
        let values = &self.ints[Self::int_slot(column)?];
        let (size, signed) = match spec {
            Kind::Unsigned(size) => (size, false),
            Kind::Signed(size) => (size, true),
            _ => return None,
        };
        let bits = size as u32 * 8;
        let (low, high): (i128, i128) = if signed {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        };
        let mut out = Vec::with_capacity(values.len() * size);
        for &value in values {
            if !(low..=high).contains(&i128::from(value)) {
                return None;
            }
            out.extend_from_slice(&value.to_le_bytes()[..size]);
        }
        Some(out)
    }

    /// Every column for `specs` (one per column, in order), with the interpreter let go.
    pub(crate) fn encode<'py>(
        &self,
        py: Python<'py>,
        specs: &[String],
    ) -> Vec<Option<Bound<'py, PyBytes>>> {
        let kinds: Vec<Option<Kind>> = specs.iter().map(|spec| kind(spec)).collect();
        let encoded: Vec<Option<Vec<u8>>> = py.allow_threads(|| {
            kinds
                .iter()
                .enumerate()
                .map(|(column, spec)| {
                    if column < WIDTH {
                        self.encode_one(column, *spec)
                    } else {
                        None
                    }
                })
                .collect()
        });
        encoded
            .into_iter()
            .map(|bytes| bytes.map(|bytes| PyBytes::new(py, &bytes)))
            .collect()
    }

    /// Column `column` alone for `spec` (the first insert of a statement).
    pub(crate) fn encode_column<'py>(
        &self,
        py: Python<'py>,
        column: usize,
        spec: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let Some(spec) = kind(spec) else {
            return Ok(None);
        };
        if column >= WIDTH {
            return Err(PyIndexError::new_err("a raw row has 13 cells"));
        }
        match py.allow_threads(|| self.encode_one(column, Some(spec))) {
            Some(bytes) => Ok(Some(PyBytes::new(py, &bytes))),
            None => Err(PyValueError::new_err(
                "a cell does not fit the column's type",
            )),
        }
    }
}
