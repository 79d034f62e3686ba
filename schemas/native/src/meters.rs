//! The meters compiled for the native path ([`Meters`]): what the lean path's ``meter``
//! does for a meter whose paths are chains of keys, and the chunk's plan loop
//! (`plan_loop`) behind ``Meters.plan``.

use crate::event::{decided, decimal_type, event_tuple, Event, TextCache};
use crate::json::Val;
use crate::{folded, key_filter, pending_keys, plan_loop};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use std::collections::HashMap;

// -- metering ------------------------------------------------------------------------------

/// One meter, compiled: what the lean path's ``meter`` does for it when every path is a
/// chain of keys (``$.a.b``) and every group name can be written without an escape.
pub(crate) struct Meter {
    pub(crate) slug: Py<PyString>,
    pub(crate) unique: bool,
    pub(crate) value: Option<Vec<String>>,
    pub(crate) groups: Vec<(String, Vec<String>)>, // sorted by name: the group key's order
}

/// Compiled meters by event type; a type whose meters are not all compiled is ``None``
/// (its events are metered by the lean path).
#[pyclass(frozen)]
pub(crate) struct Meters {
    pub(crate) by_type: HashMap<String, Option<Vec<Meter>>>,
    pub(crate) texts: TextCache,
}

pub(crate) type MeterSpec = (
    String,
    bool,
    Option<Vec<String>>,
    Vec<(String, Vec<String>)>,
);

#[pymethods]
impl Meters {
    /// ``spec``: per event type, its meters in order as
    /// ``(slug, unique, value key chain or None, [(group name, key chain)])``, or ``None``
    /// for a type to leave to the lean path.
    #[new]
    fn new(py: Python<'_>, spec: HashMap<String, Option<Vec<MeterSpec>>>) -> Self {
        let by_type = spec
            .into_iter()
            .map(|(event_type, meters)| {
                let compiled = meters.and_then(|meters| {
                    meters
                        .into_iter()
                        .map(|(slug, unique, value, mut groups)| {
                            if groups.iter().any(|(name, _)| !plain_text(name)) {
                                return None;
                            }
                            groups.sort_by(|a, b| a.0.cmp(&b.0));
                            let slug = PyString::new(py, &slug).unbind();
                            Some(Meter {
                                slug,
                                unique,
                                value,
                                groups,
                            })
                        })
                        .collect::<Option<Vec<_>>>()
                });
                (event_type, compiled)
            })
            .collect();
        Meters {
            by_type,
            texts: TextCache::new(),
        }
    }

    /// :func:`decode`'s tuple plus the event's contributions, as the lean path's ``meter``
    /// gives them — or ``None`` in their place where this decoder leaves metering to it
    /// (anything that would raise ``Unmeterable``, a value or group value that is not
    /// plain). ``None`` for the whole line where :func:`decode` would return ``None``.
    ///
    /// ``keep_data=False``: ``data`` is ``None`` in the tuple when the contributions are
    /// there (the worker needs it only to meter what this decoder leaves), which saves
    /// building the dict and its ``Decimal``s.
    #[pyo3(signature = (line, unknown_type_is_error, keep_data = true))]
    fn decode(
        &self,
        py: Python<'_>,
        line: &[u8],
        unknown_type_is_error: bool,
        keep_data: bool,
    ) -> PyResult<Option<PyObject>> {
        let Some(event) = decided(line) else {
            return Ok(None);
        };
        let subject = self.texts.text(py, event.subject);
        let rows = self.meter(py, &event, &subject, unknown_type_is_error)?;
        let with_data = keep_data || rows.is_none();
        let rows = rows.unwrap_or_else(|| py.None());
        Ok(Some(event_tuple(
            py,
            &event,
            &subject,
            Some(rows),
            with_data,
            Some(&self.texts),
        )?))
    }

    /// ``Planner.plan``'s loop over a chunk (``streams/planner.py``) (``plan_loop``): fills ``out``'s (a
    /// ``BatchPlan``) raw rows (a ``RawRows``, which are its dedupe entries too:
    /// ``RawRows.seen_entries``), kept events, spans and conflicts as the Python loop
    /// does, folds the contributions into ``folded`` (a ``Groups``, which the plan's
    /// ``groups`` reads as the Python loop's dictionary), and returns the outcome counts
    /// ``(redelivered, conflict, new, replay, duplicate, late)`` and the dead letters as
    /// ``(record, reason or None for the planner's schema reason, detail, index, line)``.
    /// ``pending_keys``: the keys of chunks planned but not finished (a ``PendingKeys``),
    /// looked up before ``pending`` (``{key: SeenRecord}``) and the store's ``lookup``.
    /// ``key_filter``: the store's ``KeyFilter`` in use, if any (a key it rules out is
    /// not looked up).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (records, out, ns, unknown_type_is_error, grace_ms, horizon_ms, pending_keys, pending, lookup, other, key_filter = None, *, folded))]
    fn plan<'py>(
        &self,
        py: Python<'py>,
        records: Bound<'py, PyList>,
        out: Bound<'py, PyAny>,
        ns: Bound<'py, PyString>,
        unknown_type_is_error: bool,
        grace_ms: i64,
        horizon_ms: i64,
        pending_keys: Option<Bound<'py, pending_keys::PendingKeys>>,
        pending: Bound<'py, PyDict>,
        lookup: Bound<'py, PyAny>,
        other: Bound<'py, PyAny>,
        key_filter: Option<Bound<'py, key_filter::KeyFilter>>,
        folded: Bound<'py, folded::Groups>,
    ) -> PyResult<(plan_loop::CountsTuple, Bound<'py, PyList>)> {
        let field = |name: &str| out.getattr(name);
        let target = plan_loop::Out {
            raw_rows: field("raw_rows")?.downcast_into()?,
            kept: field("kept")?.downcast_into()?,
            groups: folded,
            spans: field("spans")?.downcast_into()?,
            conflicts: field("conflicts")?.downcast_into()?,
            dead: PyList::empty(py),
        };
        let rules = plan_loop::Rules {
            ns_text: ns.to_str()?.to_owned(),
            ns,
            unknown_type_is_error,
            grace_ms,
            horizon_ms,
            pending_keys,
            pending,
            lookup,
            key_filter,
            other,
        };
        let c = plan_loop::plan(self, py, &records, &rules, &target)?;
        let counts = (
            c.redelivered,
            c.conflict,
            c.new,
            c.replay,
            c.duplicate,
            c.late,
        );
        Ok((counts, target.dead))
    }
}

pub(crate) fn plain_text(s: &str) -> bool {
    !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

pub(crate) fn find<'v, 'a>(data: Option<&'v Val<'a>>, keys: &[String]) -> Option<&'v Val<'a>> {
    let mut node = data?;
    for key in keys {
        let Val::Obj(items) = node else {
            return None;
        };
        node = &items.iter().find(|(k, _)| *k == key.as_str())?.1;
    }
    Some(node)
}

pub(crate) static ZERO: GILOnceCell<PyObject> = GILOnceCell::new();

impl Meters {
    pub(crate) fn meter(
        &self,
        py: Python<'_>,
        event: &Event,
        subject: &Bound<'_, PyString>,
        unknown_type_is_error: bool,
    ) -> PyResult<Option<PyObject>> {
        let Some(compiled) = self.by_type.get(event.type_) else {
            if unknown_type_is_error {
                return Ok(None); // the lean path raises Unmeterable
            }
            return Ok(Some(PyList::empty(py).into_any().unbind()));
        };
        let Some(meters) = compiled else {
            return Ok(None);
        };
        let data = event.data.as_ref();
        let window = event.time_ms - event.time_ms.rem_euclid(60_000);
        let rows = PyList::empty(py);
        for meter in meters {
            let mut value: Option<PyObject> = None;
            let mut uniq = "";
            if let Some(keys) = &meter.value {
                match (meter.unique, find(data, keys)) {
                    (true, Some(Val::Str(s))) => uniq = s,
                    (false, Some(Val::Int(t))) if fits(t) => {
                        value = Some(decimal_type(py)?.call1(py, (*t,))?)
                    }
                    (false, Some(Val::Dec(t))) if fits(t) => {
                        value = Some(decimal_type(py)?.call1(py, (*t,))?)
                    }
                    // a number sent as a string (how the SDK sends an exact decimal)
                    (false, Some(Val::Str(t))) if plain_number(t) && fits(t) => {
                        value = Some(decimal_type(py)?.call1(py, (*t,))?)
                    }
                    _ => return Ok(None), // missing, null, not plain: the lean path decides
                }
            }
            let value = match value {
                Some(v) => v,
                None => ZERO
                    .get_or_try_init(py, || decimal_type(py)?.call1(py, (0,)))?
                    .clone_ref(py),
            };
            let mut key = String::with_capacity(64);
            key.push('{');
            for (n, (name, keys)) in meter.groups.iter().enumerate() {
                let text = match find(data, keys) {
                    None | Some(Val::Null) => "",
                    Some(Val::Str(s)) => s,
                    Some(_) => return Ok(None),
                };
                if n > 0 {
                    key.push(',');
                }
                key.push('"');
                key.push_str(name);
                key.push_str("\":\"");
                key.push_str(text);
                key.push('"');
            }
            key.push('}');
            let row = PyTuple::new(
                py,
                [
                    meter.slug.clone_ref(py).into_any(),
                    subject.clone().into_any().unbind(),
                    self.texts.text(py, &key).into_any().unbind(),
                    window.into_pyobject(py)?.into_any().unbind(),
                    value,
                    PyString::new(py, uniq).into_any().unbind(),
                    event.time_ms.into_pyobject(py)?.into_any().unbind(),
                ],
            )?;
            rows.append(row)?;
        }
        Ok(Some(rows.into_any().unbind()))
    }
}

/// ``-?(0|[1-9][0-9]*)(\.[0-9]+)?``: a text ``Decimal`` reads as written (no spaces,
/// underscores, exponent, sign ``+``, special values or leading zeros).
pub(crate) fn plain_number(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return false,
        None => (unsigned, ""),
    };
    !whole.is_empty()
        && (whole == "0" || !whole.starts_with('0'))
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// A value literal an event may carry: at most 9 fraction digits and 18 integer digits
/// (``schemas.metering.contributions.MAX_INTEGER_DIGITS``, ``MAX_FRACTION_DIGITS``: the
/// lean path refuses the rest as out of range).
pub(crate) fn fits(text: &str) -> bool {
    let unsigned = text.trim_start_matches('-');
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let integer = if whole == "0" { 0 } else { whole.len() };
    fraction.len() <= 9 && integer <= 18
}
