//! A chunk's contributions folded per aggregated-feed row ([`Groups`]), from the native
//! plan (`plan_loop`) to the windows insert (`schemas/storage/driver.py`).
//!
//! As a dictionary, each new row cost the worker a 7-field key tuple, a 17-field list and
//! the integers in them, hashed and stored by the interpreter, read back cell by cell by
//! the insert's column encoding and freed after the write: on a backfill, where nearly
//! every kept event is a row of its own, about a fifth of the plan.  Here a row is a
//! struct: its texts and values stay the objects the meters gave (the same `Decimal`s,
//! added and compared by the interpreter as the Python fold does), its integers are
//! integers, and the insert's columns are written straight from them.
//!
//! Read as a sequence (`len`, indexing), the rows are the lists of `AGG_COLUMNS` the
//! Python fold builds, in first-seen order; `items()` gives the dictionary's
//! `(key, row)` pairs (`streams.plan.FoldedGroups` reads them as that mapping):
//! `tests/streams/test_plan_native.py` holds the two folds equal and
//! `tests/schemas/test_driver.py` holds the encoded columns to the lists' bytes.

use crate::native_column::{write_cell, Cell, Kind};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// `AGG_COLUMNS`' width: namespace, meter, subject, group key, window start (s), ingest
/// minute (s), source partition, events, sum, max, min, uniq, latest value, its event ms,
/// offset and index, the highest offset.
const WIDTH: usize = 17;
const NONE: u32 = u32::MAX;

/// One aggregated-feed row and its key (the window in ms, as the dictionary's key has it).
struct Row {
    meter: Py<PyAny>,
    who: Py<PyAny>,
    group: Py<PyAny>,
    uniq: Py<PyAny>,
    window_ms: i64,
    minute_s: i64,
    partition: i64,
    events: i64,
    sum: Py<PyAny>,
    max: Py<PyAny>,
    min: Py<PyAny>,
    latest: Py<PyAny>,
    latest_ms: i64,
    latest_offset: i64,
    latest_index: i64,
    max_offset: i64,
    /// the next row whose key has the same hash, or `NONE`
    next: u32,
}

/// The keys' hashes are mixed already (`key_hash`): the map takes them as they are (the
/// pending keys' map too, `pending_keys`).
#[derive(Default)]
pub(crate) struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A contribution's place: the record it came in (its ingestion minute, partition and
/// offset) and its index there.
pub(crate) struct Place {
    pub minute_s: i64,
    pub partition: i64,
    pub offset: i64,
    pub index: i64,
}

#[pyclass(module = "meterline_native", sequence)]
#[derive(Default)]
pub struct Groups {
    ns: Option<Py<PyAny>>,
    rows: Vec<Row>,
    heads: HashMap<u64, u32, BuildHasherDefault<Identity>>,
}

/// splitmix64's finalizer: every input bit reaches every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key's hash from the interpreter's hashes of its texts (randomized per process, and
/// cached in each string) and its integers.
fn key_hash(texts: [&Bound<'_, PyAny>; 4], ints: [i64; 3]) -> PyResult<u64> {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for text in texts {
        h = mix(h ^ text.hash()? as u64);
    }
    for n in ints {
        h = mix(h ^ n as u64);
    }
    Ok(h)
}

fn same(a: &Py<PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    if a.as_ptr() == b.as_ptr() {
        return Ok(true);
    }
    a.bind(b.py()).eq(b)
}

impl Groups {
    /// Fold one contribution `(meter, subject, group, window_ms, value, uniq, event_ms)`
    /// of the event at `at`, as `streams.planner`'s Python loop folds it.
    pub(crate) fn fold(
        &mut self,
        ns: &Bound<'_, PyAny>,
        contribution: &Bound<'_, PyTuple>,
        at: &Place,
    ) -> PyResult<()> {
        let item = |n: usize| contribution.get_item(n);
        let (meter, who, group, window, value, uniq, ms) = (
            item(0)?,
            item(1)?,
            item(2)?,
            item(3)?,
            item(4)?,
            item(5)?,
            item(6)?,
        );
        let window_ms: i64 = window.extract()?;
        let event_ms: i64 = ms.extract()?;
        let hash = key_hash(
            [&meter, &who, &group, &uniq],
            [window_ms, at.minute_s, at.partition],
        )?;
        let mut at_row = self.heads.get(&hash).copied().unwrap_or(NONE);
        while at_row != NONE {
            let row = &self.rows[at_row as usize];
            if row.window_ms == window_ms
                && row.minute_s == at.minute_s
                && row.partition == at.partition
                && same(&row.meter, &meter)?
                && same(&row.who, &who)?
                && same(&row.group, &group)?
                && same(&row.uniq, &uniq)?
            {
                break;
            }
            at_row = row.next;
        }
        if at_row == NONE {
            if self.ns.is_none() {
                self.ns = Some(ns.clone().unbind());
            }
            let next = self
                .heads
                .insert(hash, self.rows.len() as u32)
                .unwrap_or(NONE);
            let value = value.unbind();
            self.rows.push(Row {
                meter: meter.unbind(),
                who: who.unbind(),
                group: group.unbind(),
                uniq: uniq.unbind(),
                window_ms,
                minute_s: at.minute_s,
                partition: at.partition,
                events: 1,
                sum: value.clone_ref(ns.py()),
                max: value.clone_ref(ns.py()),
                min: value.clone_ref(ns.py()),
                latest: value,
                latest_ms: event_ms,
                latest_offset: at.offset,
                latest_index: at.index,
                max_offset: at.offset,
                next,
            });
            return Ok(());
        }
        let py = ns.py();
        let row = &mut self.rows[at_row as usize];
        row.events += 1;
        row.sum = row.sum.bind(py).add(&value)?.unbind();
        if value.gt(row.max.bind(py))? {
            row.max = value.clone().unbind();
        }
        if value.lt(row.min.bind(py))? {
            row.min = value.clone().unbind();
        }
        if event_ms > row.latest_ms
            || (event_ms == row.latest_ms
                && (at.offset, at.index) > (row.latest_offset, row.latest_index))
        {
            row.latest = value.unbind();
            row.latest_ms = event_ms;
            row.latest_offset = at.offset;
            row.latest_index = at.index;
        }
        if at.offset > row.max_offset {
            row.max_offset = at.offset;
        }
        Ok(())
    }

    /// Room for `rows` more rows.
    pub(crate) fn reserve(&mut self, rows: usize) {
        self.rows.reserve(rows);
        self.heads.reserve(rows);
    }

    fn ns<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match &self.ns {
            Some(ns) => ns.bind(py).clone(),
            None => PyString::new(py, "").into_any(),
        }
    }

    fn row_list<'py>(&self, py: Python<'py>, row: &Row) -> PyResult<Bound<'py, PyList>> {
        let int = |n: i64| n.into_pyobject(py).map(|n| n.into_any());
        PyList::new(
            py,
            [
                self.ns(py),
                row.meter.bind(py).clone(),
                row.who.bind(py).clone(),
                row.group.bind(py).clone(),
                int(row.window_ms.div_euclid(1000))?,
                int(row.minute_s)?,
                int(row.partition)?,
                int(row.events)?,
                row.sum.bind(py).clone(),
                row.max.bind(py).clone(),
                row.min.bind(py).clone(),
                row.uniq.bind(py).clone(),
                row.latest.bind(py).clone(),
                int(row.latest_ms)?,
                int(row.latest_offset)?,
                int(row.latest_index)?,
                int(row.max_offset)?,
            ],
        )
    }

    /// The columns of `kinds` (one per column; `None`: not asked) in the Native format,
    /// the bytes `native_column::encode_columns` writes for the rows as lists; `None`
    /// where a cell does not fit its column (the caller lets the driver write it).
    pub(crate) fn encode(&self, py: Python<'_>, kinds: &[Option<Kind>]) -> Vec<Option<Vec<u8>>> {
        let mut outs: Vec<Option<Vec<u8>>> = kinds
            .iter()
            .enumerate()
            .map(|(index, kind)| {
                kind.filter(|_| index < WIDTH)
                    .map(|_| Vec::with_capacity(self.rows.len() * 16))
            })
            .collect();
        let ns = self.ns(py);
        let mut seen: Vec<(usize, u32, i128)> = Vec::with_capacity(4); // one row's decimals
        for row in &self.rows {
            seen.clear();
            for (index, kind) in kinds.iter().enumerate().take(WIDTH) {
                let (Some(kind), Some(out)) = (kind, outs[index].as_mut()) else {
                    continue;
                };
                let cell = match index {
                    0 => Cell::Object(&ns),
                    1 => Cell::Object(row.meter.bind(py)),
                    2 => Cell::Object(row.who.bind(py)),
                    3 => Cell::Object(row.group.bind(py)),
                    4 => Cell::Int(row.window_ms.div_euclid(1000)),
                    5 => Cell::Int(row.minute_s),
                    6 => Cell::Int(row.partition),
                    7 => Cell::Int(row.events),
                    8 => Cell::Object(row.sum.bind(py)),
                    9 => Cell::Object(row.max.bind(py)),
                    10 => Cell::Object(row.min.bind(py)),
                    11 => Cell::Object(row.uniq.bind(py)),
                    12 => Cell::Object(row.latest.bind(py)),
                    13 => Cell::Int(row.latest_ms),
                    14 => Cell::Int(row.latest_offset),
                    15 => Cell::Int(row.latest_index),
                    _ => Cell::Int(row.max_offset),
                };
                if write_cell(out, *kind, cell, &mut seen).is_err() {
                    outs[index] = None; // the driver writes this column, or raises its own error
                }
            }
        }
        outs
    }
}

#[pymethods]
impl Groups {
    #[new]
    fn new() -> Self {
        Groups::default()
    }

    /// Fold `contribution` `(meter, subject, group, window_ms, value, uniq, event_ms)`
    /// of the event at `index` of the record at `partition`/`offset`, ingested in the
    /// minute `minute_s` (what the native plan does for each one).
    #[pyo3(name = "fold")]
    fn fold_one(
        &mut self,
        ns: &Bound<'_, PyAny>,
        contribution: &Bound<'_, PyTuple>,
        minute_s: i64,
        partition: i64,
        offset: i64,
        index: i64,
    ) -> PyResult<()> {
        let at = Place {
            minute_s,
            partition,
            offset,
            index,
        };
        self.fold(ns, contribution, &at)
    }

    fn __len__(&self) -> usize {
        self.rows.len()
    }

    /// Row `index` as the Python fold's list (a new list: changing it changes nothing here).
    fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyList>> {
        let n = self.rows.len() as isize;
        let at = if index < 0 { index + n } else { index };
        if !(0..n).contains(&at) {
            return Err(PyIndexError::new_err("folded row index out of range"));
        }
        self.row_list(py, &self.rows[at as usize])
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let rows = PyList::empty(py);
        for row in &self.rows {
            rows.append(self.row_list(py, row)?)?;
        }
        Ok(rows.try_iter()?.into_any())
    }

    /// `[(key, row)]` in first-seen order, the key as the Python fold's
    /// `(meter, subject, group, window_ms, minute_s, partition, uniq)`.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for row in &self.rows {
            let key = PyTuple::new(
                py,
                [
                    row.meter.bind(py).clone(),
                    row.who.bind(py).clone(),
                    row.group.bind(py).clone(),
                    row.window_ms.into_pyobject(py)?.into_any(),
                    row.minute_s.into_pyobject(py)?.into_any(),
                    row.partition.into_pyobject(py)?.into_any(),
                    row.uniq.bind(py).clone(),
                ],
            )?;
            out.append((key, self.row_list(py, row)?))?;
        }
        Ok(out)
    }

    /// The contributions folded: the rows' events together.
    fn contributions(&self) -> i64 {
        self.rows.iter().map(|row| row.events).sum()
    }
}
