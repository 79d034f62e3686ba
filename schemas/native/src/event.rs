//! A usage event line decided natively ([`decided`]): the envelope checks, the canonical
//! time, the canonical form `content_hash` hashes and its BLAKE2b digest; and the Python
//! objects the lean path returns for it ([`event_tuple`], [`decode`]).

use crate::json::{Parser, Val, MAX_TEXT};
use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use std::collections::HashMap;
use std::sync::Mutex;

/// No whitespace str.strip would remove at either end (conservatively: ASCII graphic ends).
fn unpadded(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && (0x21..=0x7e).contains(&b[0]) && (0x21..=0x7e).contains(&b[b.len() - 1])
}

fn envelope_text(s: &str) -> bool {
    unpadded(s) && (s.len() <= MAX_TEXT || s.chars().count() <= MAX_TEXT)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Epoch ms of the canonical ``YYYY-MM-DDTHH:MM:SS.mmmZ`` within the storable range;
/// anything else: ``None``.
fn canonical_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + (c - b'0') as i64;
        }
        Some(n)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if y < 1 || !(1..=12).contains(&mo) || d < 1 || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > dim[(mo - 1) as usize] {
        return None;
    }
    let at = days_from_civil(y, mo, d) * 86_400_000 + ((h * 60 + mi) * 60 + s) * 1000 + ms;
    // a time the windows cannot store is the reference's to refuse
    // (`schemas.timeutil.storable_event_ms`)
    (EVENT_TIME_MIN_MS..=EVENT_TIME_MAX_MS).contains(&at).then_some(at)
}

/// `schemas.timeutil.EVENT_TIME_MIN_MS` and `EVENT_TIME_MAX_MS` (1970-01-01T00:00:00.000Z
/// to 2105-12-31T23:59:59.999Z), held to them by `tests/schemas/test_native.py`.
pub(crate) const EVENT_TIME_MIN_MS: i64 = 0;
pub(crate) const EVENT_TIME_MAX_MS: i64 = 4_291_747_199_999;

fn write_canonical(out: &mut Vec<u8>, v: &Val) {
    match v {
        Val::Str(s) => {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        Val::Int(t) => out.extend_from_slice(t.as_bytes()),
        Val::Dec(t) => {
            out.push(b'"');
            out.extend_from_slice(t.as_bytes());
            out.push(b'"');
        }
        Val::True => out.extend_from_slice(b"true"),
        Val::False => out.extend_from_slice(b"false"),
        Val::Null => out.extend_from_slice(b"null"),
        Val::Arr(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        Val::Obj(items) => {
            let mut sorted: Vec<&(&str, Val)> = items.iter().collect();
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (n, (k, item)) in sorted.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(b"\":");
                write_canonical(out, item);
            }
            out.push(b'}');
        }
    }
}

static DECIMAL: GILOnceCell<PyObject> = GILOnceCell::new();

/// `decimal.Decimal`, imported once.
pub(crate) fn decimal_type(py: Python<'_>) -> PyResult<&PyObject> {
    DECIMAL.get_or_try_init(py, || -> PyResult<PyObject> {
        Ok(py.import("decimal")?.getattr("Decimal")?.unbind())
    })
}

fn to_py(py: Python<'_>, v: &Val) -> PyResult<PyObject> {
    Ok(match v {
        Val::Str(s) => PyString::new(py, s).into_any().unbind(),
        Val::Int(t) => t
            .parse::<i64>()
            .expect("at most 18 digits")
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        Val::Dec(t) => decimal_type(py)?.call1(py, (*t,))?,
        Val::True => true.into_pyobject(py)?.to_owned().into_any().unbind(),
        Val::False => false.into_pyobject(py)?.to_owned().into_any().unbind(),
        Val::Null => py.None(),
        Val::Arr(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Val::Obj(items) => {
            let dict = PyDict::new(py);
            for (k, item) in items {
                dict.set_item(*k, to_py(py, item)?)?;
            }
            dict.into_any().unbind()
        }
    })
}

/// A line the decoder decided: its envelope, data and digest.
pub(crate) struct Event<'a> {
    pub(crate) id: &'a str,
    pub(crate) source: &'a str,
    pub(crate) type_: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) time_ms: i64,
    pub(crate) data: Option<Val<'a>>,
    pub(crate) digest: [u8; 24],
}

pub(crate) fn decided<'a>(line: &'a [u8]) -> Option<Event<'a>> {
    if line.contains(&b'\\') {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    let mut p = Parser {
        text,
        b: line,
        i: 0,
    };
    let fields = p.object(1)?;
    p.ws();
    if p.i != line.len() {
        return None;
    }
    let (mut id, mut source, mut type_, mut subject, mut time) = (None, None, None, None, None);
    let (mut data, mut content_type, mut schema) = (None, None, None);
    for (key, value) in fields {
        match (key, value) {
            ("id", Val::Str(s)) => id = Some(s),
            ("source", Val::Str(s)) => source = Some(s),
            ("type", Val::Str(s)) => type_ = Some(s),
            ("subject", Val::Str(s)) => subject = Some(s),
            ("time", Val::Str(s)) => time = Some(s),
            ("specversion", Val::Str("1.0")) => {}
            ("data", value @ Val::Obj(_)) => data = Some(value),
            ("data", Val::Null) => {}
            ("datacontenttype", Val::Str(s)) => content_type = Some(s),
            ("datacontenttype", Val::Null) => {}
            ("dataschema", Val::Str(s)) => schema = Some(s),
            ("dataschema", Val::Null) => {}
            _ => return None,
        }
    }
    let (id, source, type_, subject, time) = (id?, source?, type_?, subject?, time?);
    if !(envelope_text(id)
        && envelope_text(source)
        && envelope_text(type_)
        && envelope_text(subject))
    {
        return None;
    }
    for extra in [content_type, schema].into_iter().flatten() {
        if !unpadded(extra) {
            return None; // (an empty extra: the lean decode decides)
        }
    }
    let time_ms = canonical_time(time)?;
    if let Some(Val::Obj(items)) = &data {
        if !items.iter().all(|(k, _)| unpadded(k)) {
            return None;
        }
    }
    // the canonical form: keys sorted, compact, decimals as their text in quotes
    let mut out = Vec::with_capacity(line.len() + 64);
    out.push(b'{');
    if let Some(d) = &data {
        out.extend_from_slice(b"\"data\":");
        write_canonical(&mut out, d);
        out.push(b',');
    }
    let texts = [
        ("datacontenttype", content_type),
        ("dataschema", schema),
        ("id", Some(id)),
        ("source", Some(source)),
        ("specversion", Some("1.0")),
        ("subject", Some(subject)),
        ("time", Some(time)),
        ("type", Some(type_)),
    ];
    for (name, value) in texts {
        if let Some(value) = value {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\",");
        }
    }
    out.pop();
    out.push(b'}');
    let mut hasher = Blake2bVar::new(12).ok()?;
    hasher.update(&out);
    let mut raw = [0u8; 12];
    hasher.finalize_variable(&mut raw).ok()?;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digest = [0u8; 24];
    for (n, byte) in raw.iter().enumerate() {
        digest[2 * n] = HEX[(byte >> 4) as usize];
        digest[2 * n + 1] = HEX[(byte & 15) as usize];
    }
    Some(Event {
        id,
        source,
        type_,
        subject,
        time_ms,
        data,
        digest,
    })
}

/// Text objects for the values a stream repeats (subjects, sources, types, group keys):
/// one ``str`` per distinct text, handed out again instead of a new one per event, so the
/// worker's dictionaries find it by identity with its hash already computed.  At most
/// [`TEXTS_HELD`] are held; past that the cache starts over (a cost, never a difference).
pub(crate) struct TextCache(pub(crate) Mutex<HashMap<Box<str>, Py<PyString>>>);

const TEXTS_HELD: usize = 1 << 16;

impl TextCache {
    pub(crate) fn new() -> Self {
        TextCache(Mutex::new(HashMap::new()))
    }

    pub(crate) fn text<'py>(&self, py: Python<'py>, s: &str) -> Bound<'py, PyString> {
        let mut held = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = held.get(s) {
            return found.bind(py).clone();
        }
        if held.len() >= TEXTS_HELD {
            held.clear();
        }
        let made = PyString::new(py, s);
        held.insert(s.into(), made.clone().unbind());
        made
    }
}

/// The lean decode's tuple ``(source, id, type, subject, time_ms, data, digest)``, with
/// ``rows`` appended when given; source and type from ``texts`` when given.
pub(crate) fn event_tuple(
    py: Python<'_>,
    event: &Event,
    subject: &Bound<'_, PyString>,
    rows: Option<PyObject>,
    with_data: bool,
    texts: Option<&TextCache>,
) -> PyResult<PyObject> {
    let data = match &event.data {
        Some(d) if with_data => to_py(py, d)?,
        _ => py.None(),
    };
    let digest = std::str::from_utf8(&event.digest).expect("hex digits");
    let text = |s: &str| match texts {
        Some(cache) => cache.text(py, s),
        None => PyString::new(py, s),
    };
    let mut items = vec![
        text(event.source).into_any().unbind(),
        PyString::new(py, event.id).into_any().unbind(),
        text(event.type_).into_any().unbind(),
        subject.clone().into_any().unbind(),
        event.time_ms.into_pyobject(py)?.into_any().unbind(),
        data,
        PyString::new(py, digest).into_any().unbind(),
    ];
    if let Some(rows) = rows {
        items.push(rows);
    }
    Ok(PyTuple::new(py, items)?.into_any().unbind())
}

/// ``(source, id, type, subject, time_ms, data, digest)`` of a line this decoder decides,
/// else ``None`` (the lean decode then takes the line).
#[pyfunction]
pub(crate) fn decode(py: Python<'_>, line: &[u8]) -> PyResult<Option<PyObject>> {
    let Some(event) = decided(line) else {
        return Ok(None);
    };
    let subject = PyString::new(py, event.subject);
    Ok(Some(event_tuple(py, &event, &subject, None, true, None)?))
}
