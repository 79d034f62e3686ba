//! One column of an insert in ClickHouse's Native format, read straight out of the rows
//! (`schemas/storage/driver.py` hands the bytes to clickhouse-driver in place of its own
//! column writer; that writer is the reference: `tests/schemas/test_driver.py`).
//!
//! The worker inserts rows as tuples.  Through the driver, every insert was transposed
//! into one list per column, and every text cell encoded to UTF-8 and written one at a
//! time: ~15 % of the worker's per-chunk CPU.  Here a column is one pass over the rows
//! into one buffer.  Only the types the worker's tables use for text and integers are
//! encoded; anything else (decimals, a cell of an unexpected type, a value out of range)
//! returns `None` or raises, and the caller lets the driver write that column instead.

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Unsigned(usize),
    Signed(usize),
}

fn kind(spec: &str) -> Option<Kind> {
    Some(match spec {
        "String" => Kind::Text,
        "UInt8" => Kind::Unsigned(1),
        "UInt16" => Kind::Unsigned(2),
        "UInt32" => Kind::Unsigned(4),
        "UInt64" => Kind::Unsigned(8),
        "Int8" => Kind::Signed(1),
        "Int16" => Kind::Signed(2),
        "Int32" => Kind::Signed(4),
        "Int64" => Kind::Signed(8),
        _ => return None,
    })
}

/// ClickHouse's length prefix: unsigned LEB128.
fn varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn cell(out: &mut Vec<u8>, kind: Kind, item: &Bound<'_, PyAny>) -> PyResult<()> {
    match kind {
        Kind::Text => {
            let bytes = if let Ok(text) = item.downcast::<PyString>() {
                text.to_str()?.as_bytes()
            } else if let Ok(raw) = item.downcast::<PyBytes>() {
                raw.as_bytes()
            } else {
                return Err(PyTypeError::new_err("a String cell is str or bytes"));
            };
            varint(out, bytes.len());
            out.extend_from_slice(bytes);
        }
        Kind::Unsigned(size) => {
            let value: u64 = item.extract()?;
            if size < 8 && value >> (size * 8) != 0 {
                return Err(PyOverflowError::new_err("out of range for the column"));
            }
            out.extend_from_slice(&value.to_le_bytes()[..size]);
        }
        Kind::Signed(size) => {
            let value: i64 = item.extract()?;
            let bits = size * 8;
            if size < 8 && (value < -(1i64 << (bits - 1)) || value >= 1i64 << (bits - 1)) {
                return Err(PyOverflowError::new_err("out of range for the column"));
            }
            out.extend_from_slice(&value.to_le_bytes()[..size]);
        }
    }
    Ok(())
}

/// Cell `index` of every row of `rows` (tuples or lists) as the Native-format data of a
/// `spec` column, exactly the bytes clickhouse-driver writes for it; `None` for a type
/// this does not encode.  Raises on a cell it cannot write (the driver then decides).
#[pyfunction]
pub fn encode_column<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyList>,
    index: usize,
    spec: &str,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let Some(kind) = kind(spec) else {
        return Ok(None);
    };
    let width = match kind {
        Kind::Text => 16,
        Kind::Unsigned(size) | Kind::Signed(size) => size,
    };
    let mut out = Vec::with_capacity(rows.len() * width);
    for row in rows.iter() {
        match row.downcast::<PyTuple>() {
            Ok(tuple) => cell(&mut out, kind, &*tuple.get_borrowed_item(index)?)?,
            Err(_) => cell(&mut out, kind, &row.get_item(index)?)?,
        }
    }
    Ok(Some(PyBytes::new(py, &out)))
}
