//! The planner's per-event loop (`streams/planner.py`, `Planner.plan`) in one call per chunk:
//! split each record into its lines, decode and meter each one natively (the lines this
//! decoder does not decide go to the planner's Python chain, one call per line), look its
//! dedupe key up, judge it, and fold its contributions per aggregated-feed row.
//!
//! It fills the same lists and dictionaries, with the same objects in the same order, as
//! the planner's Python loop — the raw rows and the folded contributions as native
//! structures that read as the loop's tuples and dictionary ([`RawRows`], [`Groups`]) —
//! which stays as the path without this module and as the oracle this one is held to
//! (`tests/streams/test_plan_native.py`).  Only the loop moved:
//! every rule it applies is the Python loop's, line for line, and every look-up outside
//! the chunk (the pending keys of earlier chunks, the dedupe store) is the caller's.

use crate::folded::{Groups, Place};
use crate::key_filter::KeyFilter;
use crate::pending_keys::PendingKeys;
use crate::plan_dedupe::{first_elsewhere, judge, Verdict};
use crate::raw_rows::{RawRows, Row};
use crate::raw_seen::dedupe_key;
use crate::record_lines::{lines, lines_at_most};
use crate::{decided, Event, Meters};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::collections::{HashMap, HashSet};

const MINUTE_MS: i64 = 60_000;
/// Lines planned between two moments the interpreter is let go (about 5 ms of planning).
const LINES_PER_RELEASE: usize = 1_000;
/// Records of at least this many lines are parsed without the interpreter (letting it go
/// and taking it back costs about a microsecond, and may wait for another thread).
const LINES_WITHOUT_LOCK: usize = 64;

/// Where a plan's results go: the planner's `BatchPlan` fields.
pub(crate) struct Out<'py> {
    pub raw_rows: Bound<'py, RawRows>,
    pub kept: Bound<'py, PyList>,
    pub groups: Bound<'py, Groups>,
    pub spans: Bound<'py, PyDict>,
    pub conflicts: Bound<'py, PyList>,
    pub dead: Bound<'py, PyList>,
}

/// What the caller supplies: its rules and look-ups.
pub(crate) struct Rules<'py> {
    pub ns: Bound<'py, PyString>,
    /// `ns` as text, read once per chunk for the dedupe keys
    pub ns_text: String,
    pub unknown_type_is_error: bool,
    pub grace_ms: i64,
    pub horizon_ms: i64,
    /// keys of chunks planned but not finished: the raw rows of native plans, then
    /// ``{key: SeenRecord}`` added by other callers
    pub pending_keys: Option<Bound<'py, PendingKeys>>,
    pub pending: Bound<'py, PyDict>,
    /// the dedupe store's look-up: ``key -> SeenRecord | None``
    pub lookup: Bound<'py, PyAny>,
    /// the store's key filter, if it has one in use: a key it rules out is not in the
    /// store, and is not looked up
    pub key_filter: Option<Bound<'py, KeyFilter>>,
    /// the Python chain for a line not decided here: ``(line, decoded or None) ->``
    /// ``(source, id, type, subject, time_ms, rows, digest, key)`` or ``(reason, detail)``
    pub other: Bound<'py, PyAny>,
}

/// A text of an event: the line's own (the native decoder's), or what the Python chain
/// gave; a Python object only where one is handed out.
enum Text<'py, 'a> {
    Line(&'a str),
    /// the native decoder's digest (lowercase hexadecimal)
    Digest([u8; 24]),
    Object(Bound<'py, PyAny>),
}

impl<'py> Text<'py, '_> {
    fn bytes(&self) -> PyResult<&[u8]> {
        match self {
            Text::Line(text) => Ok(text.as_bytes()),
            Text::Digest(digest) => Ok(digest),
            Text::Object(object) => text(object),
        }
    }

    fn object(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            Text::Line(text) => PyString::new(py, text).into_any(),
            Text::Digest(digest) => {
                PyString::new(py, std::str::from_utf8(digest).expect("hex digits")).into_any()
            }
            Text::Object(object) => object.clone(),
        })
    }
}

/// One event ready for dedupe: its envelope texts, digest and dedupe key, and its rows.
struct Decoded<'py, 'a> {
    source: Text<'py, 'a>,
    id: Text<'py, 'a>,
    type_: Text<'py, 'a>,
    subject: Text<'py, 'a>,
    time_ms: i64,
    rows: Bound<'py, PyAny>,
    digest: Text<'py, 'a>,
    key: String,
}

/// `(redelivered, conflict, new, replay, duplicate, late)`
pub(crate) type CountsTuple = (u64, u64, u64, u64, u64, u64);

/// The counts of a chunk's outcomes (the dead letters are in `Out::dead`).
#[derive(Default)]
pub(crate) struct Counts {
    pub redelivered: u64,
    pub conflict: u64,
    pub new: u64,
    pub replay: u64,
    pub duplicate: u64,
    pub late: u64,
}

pub(crate) fn plan<'py>(
    meters: &Meters,
    py: Python<'py>,
    records: &Bound<'py, PyList>,
    rules: &Rules<'py>,
    out: &Out<'py>,
) -> PyResult<Counts> {
    let mut counts = Counts::default();
    // at most one key and one folded row per line: room for them once, not by doubling
    let most = lines_at_most(records)?;
    out.groups.borrow_mut().reserve(most);
    // the chunk's new keys, to the raw row of their event (the record of its acceptance)
    let mut in_batch: HashMap<String, usize> = HashMap::with_capacity(most);
    let mut positions: HashSet<(i64, i64)> = HashSet::new();
    let conflict_text = intern!(
        py,
        "{}/{} at {}:{}:{} differs from the first copy at {}:{}:{}"
    );
    let mut held = 0usize; // lines planned since the interpreter was last let go
    for rec in records.iter() {
        if held >= LINES_PER_RELEASE {
            // Let a thread waiting for the interpreter (the previous chunk's write, in
            // `streams.batch`) take it: without a call into Python, a chunk's whole plan
            // would hold it, and that write would stall in its encoding until the end.
            py.allow_threads(|| ());
            held = 0;
        }
        let partition: i64 = rec.getattr(intern!(py, "partition"))?.extract()?;
        let offset: i64 = rec.getattr(intern!(py, "offset"))?.extract()?;
        let ingested: i64 = rec.getattr(intern!(py, "timestamp_ms"))?.extract()?;
        if !positions.insert((partition, offset)) {
            counts.redelivered += 1;
            continue;
        }
        let value_obj = rec.getattr(intern!(py, "value"))?;
        let value = value_obj.downcast::<PyBytes>()?;
        let batch = rec.getattr(intern!(py, "batch"))?.is_truthy()?;
        let found = lines(value.as_bytes(), batch);
        held += found.len().max(1);
        // The record's lines parsed, checked and hashed (`decided`) before any Python
        // object is built for them; a record of many lines does it without the
        // interpreter, so the previous chunk's write can encode its columns meanwhile.
        // The bytes stay alive and unchanged: `value` holds them, and bytes are immutable.
        let decided_lines: Vec<Option<Event<'_>>> = if found.len() >= LINES_WITHOUT_LOCK {
            held = 0;
            py.allow_threads(|| found.iter().map(|raw| decided(raw)).collect())
        } else {
            found.iter().map(|raw| decided(raw)).collect()
        };
        if found.is_empty() {
            let reason = py.None();
            let dead = (&rec, reason, "the batch record holds no events", 0, value);
            out.dead.append(dead)?;
        }
        let minute_s = (ingested - ingested.rem_euclid(MINUTE_MS)) / 1000;
        let (partition_obj, offset_obj) = (partition.into_pyobject(py)?, offset.into_pyobject(py)?);
        let minute_obj = minute_s.into_pyobject(py)?;
        let mut spanned = false;
        for (index, (raw, parsed)) in found.into_iter().zip(decided_lines).enumerate() {
            let index = index as i64;
            // The line as a Python object only where one is handed out (to the Python
            // chain, or as a dead letter's value): the raw row copies its bytes.
            let line = || {
                if batch {
                    PyBytes::new(py, raw)
                } else {
                    value.clone()
                }
            };
            let mut event = match decode(meters, py, parsed, &line, rules)? {
                Ok(event) => event,
                Err((reason, detail)) => {
                    out.dead.append((&rec, reason, detail, index, line()))?;
                    continue;
                }
            };
            // the key moves into the chunk's map if the event is kept (not used after)
            let key = std::mem::take(&mut event.key);
            let first = match in_batch.get(&key) {
                Some(&row) => Some(out.raw_rows.borrow().first_seen(row)),
                None => first_elsewhere(py, rules, &key)?,
            };
            let row = out.raw_rows.borrow().len();
            match first {
                None => {
                    counts.new += 1;
                    in_batch.insert(key, row);
                }
                Some(first) => {
                    match judge(
                        &first,
                        partition,
                        offset,
                        index,
                        ingested,
                        || event.digest.bytes(),
                        rules,
                    )? {
                        Verdict::Duplicate => {
                            counts.duplicate += 1;
                            continue;
                        }
                        Verdict::Conflict => {
                            counts.conflict += 1;
                            let message = conflict_text.call_method1(
                                intern!(py, "format"),
                                (
                                    event.source.object(py)?,
                                    event.id.object(py)?,
                                    partition,
                                    offset,
                                    index,
                                    first.partition,
                                    first.offset,
                                    first.index,
                                ),
                            )?;
                            out.conflicts.append(message)?;
                            continue;
                        }
                        Verdict::New => {
                            counts.new += 1;
                            in_batch.insert(key, row);
                        }
                        Verdict::Replay => counts.replay += 1,
                    }
                }
            }
            // the dedupe entry is this raw row (`RawRows.seen_entries`): no object made
            let time_ms = event.time_ms;
            let is_late = ingested > time_ms - time_ms.rem_euclid(MINUTE_MS) + rules.grace_ms;
            if is_late {
                counts.late += 1;
            }
            out.raw_rows.borrow_mut().push(&Row {
                texts: [
                    rules.ns_text.as_bytes(),
                    event.source.bytes()?,
                    event.id.bytes()?,
                    event.type_.bytes()?,
                    event.subject.bytes()?,
                    raw,
                    event.digest.bytes()?,
                ],
                ints: [
                    time_ms,
                    ingested,
                    partition,
                    offset,
                    index,
                    i64::from(is_late),
                ],
            });
            if !event.rows.is_truthy()? {
                continue;
            }
            let kept = (&partition_obj, &offset_obj, index, &minute_obj, &event.rows);
            out.kept.append(kept)?;
            spanned = true;
            let at = Place {
                minute_s,
                partition,
                offset,
                index,
            };
            let mut groups = out.groups.borrow_mut();
            for row in event.rows.try_iter()? {
                groups.fold(rules.ns.as_any(), row?.downcast::<PyTuple>()?, &at)?;
            }
        }
        if spanned {
            match out.spans.get_item(&partition_obj)? {
                None => out.spans.set_item(&partition_obj, [offset, offset])?,
                Some(span) => {
                    let span = span.downcast::<PyList>()?;
                    if offset < span.get_item(0)?.extract::<i64>()? {
                        span.set_item(0, offset)?;
                    } else if offset > span.get_item(1)?.extract::<i64>()? {
                        span.set_item(1, offset)?;
                    }
                }
            }
        }
    }
    Ok(counts)
}

/// A text of the event's row (what the Python chain returns is text too).
fn text<'a>(value: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    Ok(value.downcast::<PyString>()?.to_str()?.as_bytes())
}

type DeadLine<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>);

/// A line's event (`event`: what `decided` made of it), or the dead-letter reason and
/// detail the Python chain gave it (`line` makes the line's bytes object, for that chain).
fn decode<'py, 'a>(
    meters: &Meters,
    py: Python<'py>,
    event: Option<Event<'a>>,
    line: &dyn Fn() -> Bound<'py, PyBytes>,
    rules: &Rules<'py>,
) -> PyResult<Result<Decoded<'py, 'a>, DeadLine<'py>>> {
    let mut decoded: Option<PyObject> = None;
    if let Some(event) = event {
        let subject = meters.texts.text(py, event.subject);
        match meters.meter(py, &event, &subject, rules.unknown_type_is_error)? {
            Some(rows) => {
                return Ok(Ok(Decoded {
                    key: String::from_utf8(dedupe_key(
                        rules.ns_text.as_bytes(),
                        event.source.as_bytes(),
                        event.id.as_bytes(),
                    ))
                    .expect("joined texts are UTF-8"),
                    source: Text::Line(event.source),
                    id: Text::Line(event.id),
                    type_: Text::Line(event.type_),
                    subject: Text::Line(event.subject),
                    time_ms: event.time_ms,
                    rows: rows.into_bound(py),
                    digest: Text::Digest(event.digest),
                }));
            }
            None => {
                // metered by the lean path, from the data decoded here
                decoded = Some(crate::event_tuple(
                    py,
                    &event,
                    &subject,
                    None,
                    true,
                    Some(&meters.texts),
                )?);
            }
        }
    }
    let answer = rules.other.call1((line(), decoded))?;
    let answer = answer.downcast::<PyTuple>()?;
    if answer.len() == 2 {
        return Ok(Err((answer.get_item(0)?, answer.get_item(1)?)));
    }
    Ok(Ok(Decoded {
        source: Text::Object(answer.get_item(0)?),
        id: Text::Object(answer.get_item(1)?),
        type_: Text::Object(answer.get_item(2)?),
        subject: Text::Object(answer.get_item(3)?),
        time_ms: answer.get_item(4)?.extract()?,
        rows: answer.get_item(5)?,
        digest: Text::Object(answer.get_item(6)?),
        key: answer
            .get_item(7)?
            .downcast::<PyString>()?
            .to_str()?
            .to_owned(),
    }))
}
