//! One column of an insert in ClickHouse's Native format, read straight out of the rows
//! (`schemas/storage/driver.py` hands the bytes to clickhouse-driver in place of its own
//! column writer; that writer is the reference: `tests/schemas/test_driver.py`).
//!
//! The worker inserts rows as tuples.  Through the driver, every insert was transposed
//! into one list per column, and every text cell encoded to UTF-8 and written one at a
//! time: ~15 % of the worker's per-chunk CPU.  Here a column is one pass over the rows
//! into one buffer.  Only the types the worker's tables use are encoded — text, integers,
//! and decimals whose value is exactly representable at the column's scale; anything
//! else (another type, a cell of an unexpected type, a value out of range, a decimal
//! that would need rounding) returns `None` or raises, and the caller lets the driver
//! write that column instead.

use crate::folded::Groups;
use crate::raw_rows::RawRows;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Text,
    Unsigned(usize),
    Signed(usize),
    /// `Decimal(P, S)`: the value times 10^S as a signed integer of `size` bytes.
    Decimal {
        size: usize,
        scale: u32,
    },
}

pub(crate) fn kind(spec: &str) -> Option<Kind> {
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
        _ => return decimal_kind(spec),
    })
}

fn decimal_kind(spec: &str) -> Option<Kind> {
    let inner = spec.strip_prefix("Decimal(")?.strip_suffix(')')?;
    let (precision, scale) = inner.split_once(',')?;
    let precision: u32 = precision.trim().parse().ok()?;
    let scale: u32 = scale.trim().parse().ok()?;
    let size = match precision {
        1..=9 => 4,
        10..=18 => 8,
        19..=38 => 16,
        _ => return None,
    };
    (scale <= precision).then_some(Kind::Decimal { size, scale })
}

/// `text` (a `Decimal`'s `str`: `[-]digits[.digits][E[+-]digits]`) times 10^`scale` as
/// an integer, when that is exact and fits; `None` otherwise (the driver then rounds or
/// refuses as it does).
fn scaled_decimal(text: &str, scale: u32) -> Option<i128> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.split_once(['E', 'e']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = whole.len() + fraction.len();
    if digits == 0 || digits > 38 {
        return None; // past the driver's 38-digit context: it would round
    }
    let shift = exponent
        .checked_sub(fraction.len() as i64)?
        .checked_add(i64::from(scale))?;
    if shift < 0 {
        return None; // more fractional digits than the scale: the driver truncates
    }
    let mut value: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    if value != 0 {
        for _ in 0..shift {
            value = value.checked_mul(10)?; // overflows within 39 steps
        }
    }
    Some(if negative { -value } else { value })
}

/// ClickHouse's length prefix: unsigned LEB128.
pub(crate) fn varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A decimal cell's value at the column's scale, checked to fit `size` bytes.
pub(crate) fn decimal_value(item: &Bound<'_, PyAny>, size: usize, scale: u32) -> PyResult<i128> {
    if !item
        .get_type()
        .is(crate::decimal_type(item.py())?.bind(item.py()))
    {
        return Err(PyTypeError::new_err("a Decimal cell is a decimal.Decimal"));
    }
    let text = item.str()?;
    let value = scaled_decimal(text.to_str()?, scale)
        .ok_or_else(|| PyValueError::new_err("not exact at the column's scale"))?;
    fits(value, size)
}

pub(crate) fn fits(value: i128, size: usize) -> PyResult<i128> {
    let bits = size * 8;
    if size < 16 && (value < -(1i128 << (bits - 1)) || value >= 1i128 << (bits - 1)) {
        return Err(PyOverflowError::new_err("out of range for the column"));
    }
    Ok(value)
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
        Kind::Unsigned(size) => unsigned(out, size, item.extract()?)?,
        Kind::Signed(size) => signed(out, size, item.extract()?)?,
        Kind::Decimal { size, scale } => {
            let value = decimal_value(item, size, scale)?;
            out.extend_from_slice(&value.to_le_bytes()[..size]);
        }
    }
    Ok(())
}

fn unsigned(out: &mut Vec<u8>, size: usize, value: u64) -> PyResult<()> {
    if size < 8 && value >> (size * 8) != 0 {
        return Err(PyOverflowError::new_err("out of range for the column"));
    }
    out.extend_from_slice(&value.to_le_bytes()[..size]);
    Ok(())
}

fn signed(out: &mut Vec<u8>, size: usize, value: i64) -> PyResult<()> {
    let bits = size * 8;
    if size < 8 && (value < -(1i64 << (bits - 1)) || value >= 1i64 << (bits - 1)) {
        return Err(PyOverflowError::new_err("out of range for the column"));
    }
    out.extend_from_slice(&value.to_le_bytes()[..size]);
    Ok(())
}

/// Cell `index` of every row of `rows` (a list of tuples or lists, a [`RawRows`] or [`Groups`]) as the Native-format data of a
/// `spec` column, exactly the bytes clickhouse-driver writes for it; `None` for a type
/// this does not encode.  Raises on a cell it cannot write (the driver then decides).
#[pyfunction]
pub fn encode_column<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyAny>,
    index: usize,
    spec: &str,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    if let Ok(raw) = rows.downcast::<RawRows>() {
        return raw.borrow().encode_column(py, index, spec);
    }
    let Some(kind) = kind(spec) else {
        return Ok(None);
    };
    if let Ok(groups) = rows.downcast::<Groups>() {
        let mut kinds = vec![None; index + 1];
        kinds[index] = Some(kind);
        return match groups.borrow().encode(py, &kinds).swap_remove(index) {
            Some(bytes) => Ok(Some(PyBytes::new(py, &bytes))),
            None => Err(PyTypeError::new_err("a cell does not fit its column")),
        };
    }
    let rows = rows.downcast::<PyList>()?;
    let width = match kind {
        Kind::Text => 16,
        Kind::Unsigned(size) | Kind::Signed(size) | Kind::Decimal { size, .. } => size,
    };
    let mut out = Vec::with_capacity(rows.len() * width);
    for row in rows.iter() {
        if let Ok(tuple) = row.downcast::<PyTuple>() {
            cell(&mut out, kind, &*tuple.get_borrowed_item(index)?)?
        } else if let Ok(list) = row.downcast::<PyList>() {
            cell(&mut out, kind, &list.get_item(index)?)? // (the worker's folded groups)
        } else {
            cell(&mut out, kind, &row.get_item(index)?)?
        }
    }
    Ok(Some(PyBytes::new(py, &out)))
}

/// Every column of `rows` (as for [`encode_column`]) in one pass over them: for each of `specs` (one per column, in
/// order), the bytes [`encode_column`] gives for it, or `None` where it would give `None`
/// or raise (the caller lets the driver write that column).  A row is read once for all
/// its cells, and a `Decimal` object that fills several cells of a row (a window row of
/// one event: its sum, max, min and latest value) is read from its text once per scale.
#[pyfunction]
pub fn encode_columns<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyAny>,
    specs: Vec<String>,
) -> PyResult<Vec<Option<Bound<'py, PyBytes>>>> {
    if let Ok(raw) = rows.downcast::<RawRows>() {
        return Ok(raw.borrow().encode(py, &specs)); // the interpreter let go meanwhile
    }
    if let Ok(groups) = rows.downcast::<Groups>() {
        let kinds: Vec<Option<Kind>> = specs.iter().map(|spec| kind(spec)).collect();
        let outs = groups.borrow().encode(py, &kinds);
        return Ok(outs
            .into_iter()
            .map(|out| out.map(|bytes| PyBytes::new(py, &bytes)))
            .collect());
    }
    let rows = rows.downcast::<PyList>()?;
    let kinds: Vec<Option<Kind>> = specs.iter().map(|spec| kind(spec)).collect();
    let mut outs: Vec<Option<Vec<u8>>> = kinds
        .iter()
        .map(|kind| {
            kind.map(|kind| {
                let width = match kind {
                    Kind::Text => 16,
                    Kind::Unsigned(size) | Kind::Signed(size) | Kind::Decimal { size, .. } => size,
                };
                Vec::with_capacity(rows.len() * width)
            })
        })
        .collect();
    let mut seen: Vec<(usize, u32, i128)> = Vec::with_capacity(4); // one row's decimals
    for row in rows.iter() {
        seen.clear();
        let width = row.len()?;
        let tuple = row.downcast::<PyTuple>().ok(); // once per row, not per cell
        let list = row.downcast::<PyList>().ok();
        for (index, kind) in kinds.iter().enumerate() {
            let (Some(kind), Some(out)) = (kind, outs[index].as_mut()) else {
                continue;
            };
            if index >= width {
                outs[index] = None;
                continue;
            }
            let item = if let Some(tuple) = tuple {
                tuple.get_borrowed_item(index)?.to_owned()
            } else if let Some(list) = list {
                list.get_item(index)?
            } else {
                row.get_item(index)?
            };
            let written = write_cell(out, *kind, Cell::Object(&item), &mut seen);
            if written.is_err() {
                outs[index] = None; // the driver writes this column, or raises its own error
            }
        }
    }
    Ok(outs
        .into_iter()
        .map(|out| out.map(|bytes| PyBytes::new(py, &bytes)))
        .collect())
}

/// A cell that is not a Python object of its own: an integer field of a native row.
pub(crate) enum Cell<'a, 'py> {
    Object(&'a Bound<'py, PyAny>),
    Int(i64),
}

/// `cell` into a `kind` column, a decimal read once per object and scale of the row
/// (`seen`); an error where the driver would write it otherwise or refuse it.
pub(crate) fn write_cell(
    out: &mut Vec<u8>,
    kind: Kind,
    cell_of_row: Cell<'_, '_>,
    seen: &mut Vec<(usize, u32, i128)>,
) -> PyResult<()> {
    match (kind, cell_of_row) {
        (Kind::Decimal { size, scale }, Cell::Object(item)) => {
            let at = item.as_ptr() as usize;
            let known = seen
                .iter()
                .find(|(ptr, s, _)| *ptr == at && *s == scale)
                .map(|(_, _, value)| *value);
            let value = match known {
                Some(value) => fits(value, size)?,
                None => {
                    let value = decimal_value(item, size, scale)?;
                    seen.push((at, scale, value));
                    value
                }
            };
            out.extend_from_slice(&value.to_le_bytes()[..size]);
            Ok(())
        }
        (kind, Cell::Object(item)) => cell(out, kind, item),
        (Kind::Unsigned(size), Cell::Int(value)) => {
            let value = u64::try_from(value)
                .map_err(|_| PyOverflowError::new_err("out of range for the column"))?;
            unsigned(out, size, value)
        }
        (Kind::Signed(size), Cell::Int(value)) => signed(out, size, value),
        _ => Err(PyTypeError::new_err(
            "a cell of another type than its column",
        )),
    }
}
