//! The dedupe keys of a batch's chunks planned but not finished
//! (`streams.plan.PendingSeen`), in one map for the whole batch.
//!
//! A chunk's keys are looked up by every later chunk of its batch until the batch ends,
//! and a batch can hold a hundred chunks or more (a backlog read in batches of thousands
//! of packed records).  Asked chunk by chunk, a key cost one hash and probe per pending
//! chunk — the worker's largest cost on a long backlog.  Here each chunk's rows are
//! indexed once when it is added, and a key costs one hash and one probe however many
//! chunks are pending.
//!
//! The map holds a 64-bit hash of each key (SipHash with this map's own random keys, so
//! no sender can choose keys that collide) to the newest row that accepted it.  A hit is
//! checked against the row's key; should two keys share a hash, the look-up asks the
//! chunks one by one, newest first, as before: the answer is exact either way.

use crate::folded::Identity;
use crate::raw_rows::RawRows;
use crate::raw_seen::FirstSeen;
use pyo3::prelude::*;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// The pending chunks' raw rows, oldest first, and where each key was accepted last.
#[pyclass(module = "meterline_native")]
pub struct PendingKeys {
    chunks: Vec<Py<RawRows>>,
    /// a key's hash to `(chunk, row)` of the newest row with a key of that hash
    newest: HashMap<u64, (u32, u32), BuildHasherDefault<Identity>>,
    state: RandomState,
    /// the hash's bits kept: 64, or fewer where a test makes keys collide
    mask: u64,
}

impl PendingKeys {
    fn hash(&self, key: &[u8]) -> u64 {
        let mut hasher = self.state.build_hasher();
        hasher.write(key);
        hasher.finish() & self.mask
    }

    /// Where `key` was last accepted by a pending chunk.
    pub(crate) fn first_seen(&self, py: Python<'_>, key: &[u8]) -> Option<FirstSeen> {
        let &(chunk, row) = self.newest.get(&self.hash(key))?;
        let rows = self.chunks[chunk as usize].borrow(py);
        if rows.key_is(row as usize, key) {
            return Some(rows.first_seen(row as usize));
        }
        drop(rows);
        // another key with the same hash was accepted later: ask each chunk
        self.chunks.iter().rev().find_map(|rows| {
            let rows = rows.borrow(py);
            rows.find(key).map(|row| rows.first_seen(row))
        })
    }
}

#[pymethods]
impl PendingKeys {
    /// ``hash_bits``: how many bits of each key's hash the map keeps (64; a test keeps
    /// fewer to make keys share them).
    #[new]
    #[pyo3(signature = (hash_bits = 64))]
    fn new(hash_bits: u32) -> Self {
        Self {
            chunks: Vec::new(),
            newest: HashMap::default(),
            state: RandomState::new(),
            mask: u64::MAX.checked_shr(64 - hash_bits.clamp(1, 64)).unwrap_or(u64::MAX),
        }
    }

    /// A planned chunk's raw rows: its keys are found from now on, a row added later
    /// answering for its key before any earlier one.
    fn add(&mut self, rows: Bound<'_, RawRows>) -> PyResult<()> {
        let chunk = u32::try_from(self.chunks.len()).expect("fewer than 2^32 chunks");
        {
            let held = rows.borrow();
            self.newest.reserve(held.len());
            for row in 0..held.len() {
                let at = u32::try_from(row).expect("fewer than 2^32 rows in a chunk");
                self.newest.insert(self.hash(&held.key_of(row)), (chunk, at));
            }
        }
        self.chunks.push(rows.unbind());
        Ok(())
    }

    /// `rows`, added earlier, are written: they stay a look-up without their events'
    /// bytes (`RawRows.without_data`).  False if they were never added.
    fn settle(&mut self, py: Python<'_>, rows: Bound<'_, RawRows>) -> PyResult<bool> {
        let Some(at) = self.chunks.iter().position(|held| held.is(&rows)) else {
            return Ok(false);
        };
        let lean = rows.borrow().without_data();
        self.chunks[at] = Py::new(py, lean)?;
        Ok(true)
    }

    /// The record `seen_record(partition, offset, digest, ingested_ms, index)` of the
    /// newest pending row whose dedupe key is `key`, or `None`.
    fn find_record<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        seen_record: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.first_seen(py, key.as_bytes()) {
            Some(first) => Ok(Some(first.record(seen_record)?)),
            None => Ok(None),
        }
    }

    /// The chunks added (settled ones included).
    fn chunks<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, RawRows>> {
        self.chunks.iter().map(|rows| rows.bind(py).clone()).collect()
    }

    fn __len__(&self) -> usize {
        self.chunks.len()
    }
}
