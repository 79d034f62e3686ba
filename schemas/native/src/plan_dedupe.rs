//! The plan's dedupe look-up and verdict (`plan_loop`): where a key was first accepted
//! outside the chunk — the chunks planned but not finished, then the store behind its key
//! filter — and `streams.dedupe.judge`'s verdict on an event found there.

use crate::plan_loop::Rules;
use crate::raw_seen::FirstSeen;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// Whether the store may hold `key`: not when its key filter rules the key out (a filter
/// borrowed elsewhere is asked of the store instead).
fn may_be_stored(rules: &Rules<'_>, key: &str) -> bool {
    let Some(filter) = &rules.key_filter else {
        return true;
    };
    match filter.try_borrow() {
        Ok(filter) => filter.may_contain_text(key),
        _ => true,
    }
}

pub(crate) enum Verdict {
    Replay,
    New,
    Duplicate,
    Conflict,
}

/// `streams.dedupe.judge`: the verdict on an event whose key was first accepted as `first`.
/// `digest` gives the event's content digest, read only when the verdict needs it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn judge<'d>(
    first: &FirstSeen,
    partition: i64,
    offset: i64,
    index: i64,
    ingested: i64,
    digest: impl FnOnce() -> PyResult<&'d [u8]>,
    rules: &Rules<'_>,
) -> PyResult<Verdict> {
    if (first.partition, first.offset, first.index) == (partition, offset, index) {
        return Ok(Verdict::Replay);
    }
    if ingested - first.ingested > rules.horizon_ms {
        return Ok(Verdict::New); // the first copy is beyond the dedupe horizon
    }
    if first.digest == digest()? {
        return Ok(Verdict::Duplicate);
    }
    Ok(Verdict::Conflict)
}

/// Where `key` was first accepted outside this chunk: the chunks planned but not
/// finished (newest first), then the store — its key filter first, the look-up only on
/// its "maybe"; `None` if nowhere.
pub(crate) fn first_elsewhere(
    py: Python<'_>,
    rules: &Rules<'_>,
    key: &str,
) -> PyResult<Option<FirstSeen>> {
    if let Some(pending) = &rules.pending_keys {
        if let Some(first) = pending.borrow().first_seen(py, key.as_bytes()) {
            return Ok(Some(first));
        }
    }
    let mut found = None;
    if !rules.pending.is_empty() {
        found = rules.pending.get_item(key)?;
    }
    if found.is_none() && may_be_stored(rules, key) {
        let stored = rules.lookup.call1((key,))?;
        if !stored.is_none() {
            found = Some(stored);
        }
    }
    let Some(record) = found else {
        return Ok(None);
    };
    let at = |name: &Bound<'_, PyString>| -> PyResult<i64> { record.getattr(name)?.extract() };
    let digest = record.getattr(intern!(py, "content_hash"))?;
    Ok(Some(FirstSeen {
        partition: at(intern!(py, "partition"))?,
        offset: at(intern!(py, "offset"))?,
        index: at(intern!(py, "index"))?,
        ingested: at(intern!(py, "ingested_ms"))?,
        digest: digest.downcast::<PyString>()?.to_str()?.as_bytes().to_vec(),
    }))
}
