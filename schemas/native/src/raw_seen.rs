//! A chunk's raw rows as the plan's dedupe entries ([`RawRows`] in `raw_rows`): the rows
//! are those entries too, one to one and in order — `namespace \x1f source \x1f id` is the
//! key, and partition, offset, index, digest and ingestion time where it was accepted.
//! A pending chunk is looked up by a key map built on its first look-up
//! ([`RawRows::find`]), its entries are built only when read
//! ([`RawRows::seen_entries_of`]), and its dedupe table entries are encoded from them
//! ([`RawRows::seen_chunks_of`], through `seen_chunk`).

use crate::raw_rows::RawRows;
use crate::seen_chunk::{encode, entry_slices, Event};
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use std::collections::HashMap;

/// `namespace \x1f source \x1f id`, the planner's dedupe key (`streams.dedupe.dedupe_key`),
/// in one allocation: the native loop's keys and the rows' are this one function's.
pub(crate) fn dedupe_key(ns: &[u8], source: &[u8], id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(ns.len() + source.len() + id.len() + 2);
    key.extend_from_slice(ns);
    key.push(0x1f);
    key.extend_from_slice(source);
    key.push(0x1f);
    key.extend_from_slice(id);
    key
}

/// Where a dedupe key was first accepted, as `streams.dedupe.SeenRecord` holds it.
pub(crate) struct FirstSeen {
    pub partition: i64,
    pub offset: i64,
    pub index: i64,
    pub ingested: i64,
    pub digest: Vec<u8>,
}

impl FirstSeen {
    /// As `seen_record(partition, offset, digest, ingested_ms, index)`.
    pub(crate) fn record<'py>(
        &self,
        seen_record: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let digest = std::str::from_utf8(&self.digest).expect("text cells are pushed as UTF-8");
        seen_record.call1((self.partition, self.offset, digest, self.ingested, self.index))
    }
}

impl RawRows {
    pub(crate) fn key_of(&self, row: usize) -> Vec<u8> {
        let slot = |column: usize| &self.texts[Self::text_slot(column).expect("a text column")];
        dedupe_key(slot(0).get(row), slot(1).get(row), slot(2).get(row))
    }

    /// Whether row `row`'s dedupe key is `key` (compared in place, no key built).
    pub(crate) fn key_is(&self, row: usize, key: &[u8]) -> bool {
        let slot = |column: usize| &self.texts[Self::text_slot(column).expect("a text column")];
        let mut rest = key;
        for (n, column) in [0, 1, 2].into_iter().enumerate() {
            let cell = slot(column).get(row);
            let Some(after) = rest.strip_prefix(cell) else {
                return false;
            };
            rest = after;
            if n < 2 {
                let Some(after) = rest.strip_prefix(&[0x1f]) else {
                    return false;
                };
                rest = after;
            }
        }
        rest.is_empty()
    }

    /// The row whose dedupe key is `key` (the last one, should two share it).
    pub(crate) fn find(&self, key: &[u8]) -> Option<usize> {
        let keys = self.keys.get_or_init(|| {
            let mut keys = HashMap::with_capacity(self.len());
            for row in 0..self.len() {
                keys.insert(self.key_of(row), row);
            }
            keys
        });
        keys.get(key).copied()
    }

    /// Row `row` as the record of its key's first acceptance.
    pub(crate) fn first_seen(&self, row: usize) -> FirstSeen {
        let int =
            |column: usize| self.ints[Self::int_slot(column).expect("an integer column")][row];
        let digest = self.texts[Self::text_slot(11).expect("a text column")].get(row);
        FirstSeen {
            partition: int(8),
            offset: int(9),
            index: int(10),
            ingested: int(7),
            digest: digest.to_vec(),
        }
    }

    pub(crate) fn seen_record<'py>(
        &self,
        row: usize,
        seen_record: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.first_seen(row).record(seen_record)
    }

    /// Every row as its dedupe entry (`RawRows.seen_entries`).
    pub(crate) fn seen_entries_of<'py>(
        &self,
        py: Python<'py>,
        seen_record: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let entries = (0..self.len())
            .map(|row| {
                let key =
                    String::from_utf8(self.key_of(row)).expect("text cells are pushed as UTF-8");
                Ok((key, self.seen_record(row, seen_record)?))
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, entries)
    }

    /// The dedupe table entries of these rows' events (`RawRows.seen_chunks`).
    pub(crate) fn seen_chunks_of<'py>(
        &self,
        py: Python<'py>,
        max_events: usize,
    ) -> PyResult<Vec<(u32, Bound<'py, PyTuple>)>> {
        let digests = &self.texts[Self::text_slot(11).expect("a text column")];
        let int = |column: usize| &self.ints[Self::int_slot(column).expect("an integer column")];
        let (ingested, partitions, offsets, indexes) = (int(7), int(8), int(9), int(10));
        let keys = (0..self.len())
            .map(|row| String::from_utf8(self.key_of(row)).expect("text cells are pushed as UTF-8"))
            .collect::<Vec<_>>();
        let mut order: Vec<(i64, Vec<usize>)> = Vec::new();
        let mut at_of: HashMap<i64, usize> = HashMap::new();
        for (row, &partition) in partitions.iter().enumerate() {
            let at = *at_of.entry(partition).or_insert_with(|| {
                order.push((partition, Vec::new()));
                order.len() - 1
            });
            order[at].1.push(row);
        }
        let mut out = Vec::new();
        for (partition, rows) in order {
            let partition = u32::try_from(partition)
                .map_err(|_| PyOverflowError::new_err("a source partition is a u32"))?;
            let events = rows
                .iter()
                .map(|&row| {
                    Ok(Event {
                        key: &keys[row],
                        offset: offsets[row],
                        index: u32::try_from(indexes[row])
                            .map_err(|_| PyOverflowError::new_err("a source index is a u32"))?,
                        digest: std::str::from_utf8(digests.get(row))
                            .expect("text cells are pushed as UTF-8"),
                        ingested: ingested[row],
                    })
                })
                .collect::<PyResult<Vec<_>>>()?;
            let row_offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
            for (start, end) in entry_slices(&row_offsets, max_events) {
                let encoded =
                    encode(&events[start..end], partition).map_err(PyOverflowError::new_err)?;
                out.push((partition, encoded.into_python(py)?));
            }
        }
        Ok(out)
    }
}
