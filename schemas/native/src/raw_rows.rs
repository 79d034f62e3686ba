//! A chunk's rows of `usage_events` kept as columns ([`RawRows`]), from the native plan
//! (`plan_loop`) to the raw insert (`schemas/storage/driver.py`).
//!
//! As tuples, each kept event cost the worker a 13-field tuple built by the plan, read
//! back cell by cell by the insert's column encoding, and freed after the write — all of
//! it under the interpreter lock.  Here the plan appends each row's cells to one buffer
//! per column, and the insert's Native-format columns are written from those buffers
//! with the lock let go, so the event loop plans or finishes meanwhile.  Read as a
//! sequence (`len`, indexing, iteration, `==`), the rows are the tuples the Python
//! planner builds (`schemas.storage.events_table.RawRow`), typed alike:
//! `tests/streams/test_plan_native.py` holds the two loops' rows equal and
//! `tests/schemas/test_raw_rows.py` holds the encoded columns to the tuples' bytes.
//!
//! The rows are the plan's dedupe entries too ([`crate::raw_seen`]: the key map, the
//! entries, the dedupe table's chunks), and the insert's columns are written from their
//! buffers ([`crate::raw_columns`]).

use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyList, PyString, PyTuple};
use std::collections::HashMap;
use std::sync::OnceLock;

/// `usage_events`' columns in `events_table.COLUMNS` order: which are text (7 of them,
/// `data` among them, held as bytes) and which integers.
pub(crate) const WIDTH: usize = 13;
const SUBJECT: usize = 4;
pub(crate) const DATA: usize = 6;
const LATE: usize = 12;
const TEXTS: [usize; 7] = [0, 1, 2, 3, 4, 6, 11];
const INTS: [usize; 6] = [5, 7, 8, 9, 10, 12];

/// One text column: the cells' bytes end to end, and where each ends.
#[derive(Default, Clone)]
pub(crate) struct Texts {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ends: Vec<usize>,
}

impl Texts {
    fn push(&mut self, cell: &[u8]) {
        self.bytes.extend_from_slice(cell);
        self.ends.push(self.bytes.len());
    }

    pub(crate) fn get(&self, row: usize) -> &[u8] {
        let start = if row == 0 { 0 } else { self.ends[row - 1] };
        &self.bytes[start..self.ends[row]]
    }
}

/// One event's row: its texts (namespace, source, id, type, subject, data, content hash)
/// and integers (time_ms, ingested_ms, source partition, offset and index, late).
pub(crate) struct Row<'a> {
    pub texts: [&'a [u8]; 7],
    pub ints: [i64; 6],
}

/// The rows of `usage_events` a plan inserts, column by column.
#[pyclass(module = "meterline_native", sequence)]
#[derive(Default, Clone)]
pub struct RawRows {
    pub(crate) texts: [Texts; 7],
    pub(crate) ints: [Vec<i64>; 6],
    /// Each row's dedupe key (`namespace \x1f source \x1f id`) to the row, built when a
    /// later chunk first looks a key up (a pending chunk: `streams.plan.PendingSeen`).
    pub(crate) keys: OnceLock<HashMap<Vec<u8>, usize>>,
}

impl RawRows {
    pub(crate) fn push(&mut self, row: &Row<'_>) {
        self.keys = OnceLock::new();
        for (column, cell) in self.texts.iter_mut().zip(row.texts) {
            column.push(cell);
        }
        for (column, value) in self.ints.iter_mut().zip(row.ints) {
            column.push(value);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ints[0].len()
    }

    pub(crate) fn text_slot(column: usize) -> Option<usize> {
        TEXTS.iter().position(|&c| c == column)
    }

    pub(crate) fn int_slot(column: usize) -> Option<usize> {
        INTS.iter().position(|&c| c == column)
    }

    fn cell<'py>(&self, py: Python<'py>, row: usize, column: usize) -> PyResult<Bound<'py, PyAny>> {
        if let Some(slot) = Self::text_slot(column) {
            let bytes = self.texts[slot].get(row);
            if column == DATA {
                return Ok(PyBytes::new(py, bytes).into_any());
            }
            let text = std::str::from_utf8(bytes).expect("text cells are pushed as UTF-8");
            return Ok(PyString::new(py, text).into_any());
        }
        let slot = Self::int_slot(column).expect("every column is text or integer");
        let value = self.ints[slot][row];
        if column == LATE {
            return Ok(PyBool::new(py, value != 0).to_owned().into_any());
        }
        Ok(value.into_pyobject(py)?.into_any())
    }

    fn tuple<'py>(&self, py: Python<'py>, row: usize) -> PyResult<Bound<'py, PyTuple>> {
        let cells = (0..WIDTH)
            .map(|column| self.cell(py, row, column))
            .collect::<PyResult<Vec<_>>>()?;
        PyTuple::new(py, cells)
    }

    fn rows_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let rows = (0..self.len())
            .map(|row| self.tuple(py, row))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, rows)
    }
}

fn text_of<'a>(cell: &'a Bound<'_, PyAny>, column: usize) -> PyResult<&'a [u8]> {
    if column == DATA {
        if let Ok(raw) = cell.downcast::<PyBytes>() {
            return Ok(raw.as_bytes());
        }
    }
    match cell.downcast::<PyString>() {
        Ok(text) => Ok(text.to_str()?.as_bytes()),
        Err(_) if column == DATA => Err(PyTypeError::new_err(
            "a raw row's data cell (6) is str or bytes",
        )),
        Err(_) => Err(PyTypeError::new_err(format!(
            "a raw row's cell {column} is a str"
        ))),
    }
}

#[pymethods]
impl RawRows {
    /// Rows from `rows` (tuples of `events_table.RawRow`), or none.
    #[new]
    #[pyo3(signature = (rows = None))]
    fn new(rows: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut out = RawRows::default();
        if let Some(rows) = rows {
            for row in rows.try_iter()? {
                out.append(&row?)?;
            }
        }
        Ok(out)
    }

    /// Append one row (a 13-cell tuple or list in `COLUMNS` order). A `data` cell given
    /// as `str` reads back as `bytes` (both engines store the two alike).
    fn append(&mut self, row: &Bound<'_, PyAny>) -> PyResult<()> {
        if row.len()? != WIDTH {
            return Err(PyValueError::new_err("a raw row has 13 cells"));
        }
        let cells = (0..WIDTH)
            .map(|c| row.get_item(c))
            .collect::<PyResult<Vec<_>>>()?;
        let mut texts: [&[u8]; 7] = [b""; 7];
        for (slot, &column) in TEXTS.iter().enumerate() {
            texts[slot] = text_of(&cells[column], column)?;
        }
        let mut ints = [0i64; 6];
        for (slot, &column) in INTS.iter().enumerate() {
            ints[slot] = cells[column].extract()?;
        }
        self.push(&Row { texts, ints });
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.len()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyTuple>> {
        let n = self.len() as isize;
        let at = if index < 0 { index + n } else { index };
        if !(0..n).contains(&at) {
            return Err(PyIndexError::new_err("raw row index out of range"));
        }
        self.tuple(py, at as usize)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.rows_list(py)?.try_iter()?.into_any())
    }

    /// Equal to another `RawRows` or a sequence holding the same row tuples.
    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let other = match other.downcast::<RawRows>() {
            Ok(rows) => rows.borrow().rows_list(py)?.into_any(),
            Err(_) => match other.downcast::<PyList>() {
                Ok(list) => list.clone().into_any(),
                Err(_) => {
                    PyList::new(py, other.try_iter()?.collect::<PyResult<Vec<_>>>()?)?.into_any()
                }
            },
        };
        self.rows_list(py)?.eq(other)
    }

    /// The record `seen_record(partition, offset, digest, ingested_ms, index)` of the row
    /// whose dedupe key is `key`, or `None`: a pending chunk's look-up.
    fn find_record<'py>(
        &self,
        key: &str,
        seen_record: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.find(key.as_bytes()) {
            Some(row) => Ok(Some(self.seen_record(row, seen_record)?)),
            None => Ok(None),
        }
    }

    /// Every row as its dedupe entry `(key, seen_record(partition, offset, digest,
    /// ingested_ms, index))`, in row order: the plan's dedupe entries, which the native
    /// plan makes one to one with its raw rows.
    fn seen_entries<'py>(
        &self,
        py: Python<'py>,
        seen_record: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.seen_entries_of(py, seen_record)
    }

    /// A copy without the `data` cells (empty), for looking keys up once the rows are
    /// written: what a pending chunk needs, without its events' bytes.
    pub(crate) fn without_data(&self) -> RawRows {
        let slot = Self::text_slot(DATA).expect("a text column");
        let mut out = RawRows {
            texts: Default::default(),
            ints: self.ints.clone(),
            keys: self.keys.clone(),
        };
        for (at, column) in self.texts.iter().enumerate() {
            out.texts[at] = if at == slot {
                Texts {
                    bytes: Vec::new(),
                    ends: vec![0; self.len()],
                }
            } else {
                column.clone()
            };
        }
        out
    }

    /// The rows as tuples (`events_table.RawRow`).
    fn rows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.rows_list(py)
    }

    /// The dedupe table entries of these rows' events, each
    /// `(partition, (table key, table value, (index entries, key hashes, newest)))`: the
    /// events grouped by source partition in the order partitions first appear, each
    /// partition cut into entries of at most `max_events` events between records — what
    /// `streams.seen_table.TableSeenStore.put_many` writes for the plan's dedupe entries,
    /// which the native plan makes one to one with its raw rows, in the same order.
    fn seen_chunks<'py>(
        &self,
        py: Python<'py>,
        max_events: usize,
    ) -> PyResult<Vec<(u32, Bound<'py, PyTuple>)>> {
        self.seen_chunks_of(py, max_events)
    }

    /// The rows in `parts` parts, row by row to part `shard(subject)` (called once per
    /// subject), each part in the rows' order: a plan split per ClickHouse shard.
    fn split(&self, shard: &Bound<'_, PyAny>, parts: usize) -> PyResult<Vec<RawRows>> {
        let mut out = vec![RawRows::default(); parts];
        let mut known: HashMap<&[u8], usize> = HashMap::new();
        let subjects = &self.texts[TEXTS
            .iter()
            .position(|&c| c == SUBJECT)
            .expect("a text column")];
        for row in 0..self.len() {
            let subject = subjects.get(row);
            let part = match known.get(subject) {
                Some(&part) => part,
                None => {
                    let text = std::str::from_utf8(subject).expect("pushed as UTF-8");
                    let part: usize = shard.call1((text,))?.extract()?;
                    if part >= parts {
                        return Err(PyIndexError::new_err(format!(
                            "shard {part} of a split into {parts}"
                        )));
                    }
                    known.insert(subject, part);
                    part
                }
            };
            let mut texts: [&[u8]; 7] = [b""; 7];
            for (slot, column) in self.texts.iter().enumerate() {
                texts[slot] = column.get(row);
            }
            let mut ints = [0i64; 6];
            for (slot, column) in self.ints.iter().enumerate() {
                ints[slot] = column[row];
            }
            out[part].push(&Row { texts, ints });
        }
        Ok(out)
    }
}
