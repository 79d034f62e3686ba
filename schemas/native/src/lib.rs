//! Meterline's native module: the metering worker's per-event path
//! (`schemas/metering/fastpath.py`, `streams/planner.py`; `docs/architecture.md`).
//!
//! One call decides a plainly well-formed usage event line ([`event`]: parsed by [`json`],
//! the envelope checks, the canonical time, the canonical form `content_hash` hashes and
//! its BLAKE2b digest) and meters it with the meters compiled into [`Meters`] ([`meters`]).
//! It returns exactly what the lean Python path returns for the same line, or `None`
//! wherever it does not decide, and the lean path then takes the line: every doubt
//! declines, a decline costs only time.  `tests/schemas/test_native.py` holds it to the
//! lean path and the reference.
//!
//! A chunk's plan is one call ([`plan_loop`]), whose raw rows ([`raw_rows`]) and folded
//! contributions ([`folded`]) stay native structures up to the inserts' columns
//! ([`native_column`]); the dedupe index's key hash and Bloom filter ([`key_filter`]) and
//! its chunk encoding ([`seen_chunk`]) live here too: the one native module the worker
//! loads.

use pyo3::prelude::*;

mod event;
mod folded;
mod json;
mod key_filter;
mod meters;
mod native_column;
mod pending_keys;
mod plan_dedupe;
mod plan_loop;
mod raw_columns;
mod raw_rows;
mod raw_seen;
mod record_lines;
mod seen_chunk;

use event::decode;
pub(crate) use event::{decided, decimal_type, event_tuple, Event};
pub(crate) use meters::Meters;

#[pymodule]
fn meterline_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_class::<Meters>()?;
    m.add_class::<key_filter::KeyFilter>()?;
    m.add_function(wrap_pyfunction!(key_filter::key_hash, m)?)?;
    m.add_function(wrap_pyfunction!(seen_chunk::encode_chunk, m)?)?;
    m.add_function(wrap_pyfunction!(native_column::encode_column, m)?)?;
    m.add_function(wrap_pyfunction!(native_column::encode_columns, m)?)?;
    m.add_class::<raw_rows::RawRows>()?;
    m.add_class::<pending_keys::PendingKeys>()?;
    m.add_class::<folded::Groups>()?;
    Ok(())
}
