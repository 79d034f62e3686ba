//! Meterline's native event decoder: the first step of the metering worker's per-event
//! path (`schemas/metering/fastpath.py`, `streams/plan.py`; `docs/architecture.md`).
//!
//! One call decides a plainly well-formed usage event line — parse, envelope checks, the
//! canonical time, the canonical form `content_hash` hashes and its BLAKE2b digest — and
//! meters it with the meters compiled into [`Meters`].  It returns exactly what the lean
//! Python path returns for the same line, or `None` wherever it does not decide, and the
//! lean path then takes the line: every doubt declines, a decline costs only time.
//! `tests/schemas/test_native.py` holds it to the lean path and the reference.
//!
//! The dedupe index's key hash and Bloom filter ([`key_filter`]), its chunk encoding
//! ([`seen_chunk`]) and the columns of ClickHouse inserts ([`native_column`]) live here
//! too: the one native module the worker loads.

use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use std::collections::HashMap;
use std::sync::Mutex;

mod folded;
mod key_filter;
mod native_column;
mod plan_loop;
mod raw_rows;
mod seen_chunk;

const MAX_TEXT: usize = 512;
const MAX_DEPTH: usize = 32;
const MAX_INT_DIGITS: usize = 18;
const MAX_DECIMAL_DIGITS: usize = 40;

enum Val<'a> {
    Str(&'a str),
    Int(&'a str),
    Dec(&'a str),
    True,
    False,
    Null,
    Arr(Vec<Val<'a>>),
    Obj(Vec<(&'a str, Val<'a>)>),
}

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.i < self.b.len() && self.b[self.i] == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes (the caller refused any backslash in the line).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if c == b'"' {
                let s = &self.text[start..self.i];
                self.i += 1;
                return Some(s);
            }
            if c < 0x20 {
                return None;
            }
            self.i += 1;
        }
        None
    }

    /// The run of ASCII digits at the cursor (possibly empty); the cursor moves past it.
    fn digits(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        &self.b[start..self.i]
    }

    fn number(&mut self) -> Option<Val<'a>> {
        let start = self.i;
        let b = self.b;
        if self.i < b.len() && b[self.i] == b'-' {
            self.i += 1;
        }
        let int_digits = self.digits();
        if int_digits.is_empty() || (int_digits.len() > 1 && int_digits[0] == b'0') {
            return None;
        }
        if self.i < b.len() && (b[self.i] == b'e' || b[self.i] == b'E') {
            return None; // exponent forms: not decided here
        }
        if self.i < b.len() && b[self.i] == b'.' {
            self.i += 1;
            let frac = self.digits();
            if frac.is_empty() {
                return None;
            }
            if self.i < b.len() && (b[self.i] == b'e' || b[self.i] == b'E') {
                return None;
            }
            if int_digits.len() + frac.len() > MAX_DECIMAL_DIGITS {
                return None;
            }
            // str(Decimal(text)) == text only while the adjusted exponent is >= -6
            let all = int_digits.iter().chain(frac.iter());
            let leading = all.clone().take_while(|&&d| d == b'0').count();
            let total = int_digits.len() + frac.len();
            let significant = if leading == total { 1 } else { total - leading };
            let adjusted = significant as i64 - 1 - frac.len() as i64;
            if adjusted < -6 {
                return None;
            }
            return Some(Val::Dec(&self.text[start..self.i]));
        }
        if int_digits.len() > MAX_INT_DIGITS {
            return None;
        }
        let text = &self.text[start..self.i];
        // -0 is the integer 0, written "0" in the canonical form
        Some(Val::Int(if text == "-0" { "0" } else { text }))
    }

    fn value(&mut self, depth: usize) -> Option<Val<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        let c = *self.b.get(self.i)?;
        match c {
            b'"' => self.string().map(Val::Str),
            b'{' => self.object(depth + 1).map(Val::Obj),
            b'[' => {
                self.i += 1;
                let mut items = Vec::with_capacity(4);
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Some(Val::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(Val::Arr(items));
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.word(b"true", Val::True),
            b'f' => self.word(b"false", Val::False),
            b'n' => self.word(b"null", Val::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn word(&mut self, w: &[u8], v: Val<'a>) -> Option<Val<'a>> {
        if self.b[self.i..].starts_with(w) {
            self.i += w.len();
            Some(v)
        } else {
            None
        }
    }

    fn object(&mut self, depth: usize) -> Option<Vec<(&'a str, Val<'a>)>> {
        self.eat(b'{')?;
        // sized for an event's envelope (at most nine fields) or a typical `data`, so an
        // event's objects are one allocation each, not a few reallocations as they grow
        let mut items: Vec<(&'a str, Val<'a>)> = Vec::with_capacity(if depth == 1 { 9 } else { 8 });
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Some(items);
        }
        loop {
            let key = self.string()?;
            if items.iter().any(|(k, _)| *k == key) {
                return None; // a repeated key: not decided here
            }
            self.eat(b':')?;
            let v = self.value(depth)?;
            items.push((key, v));
            self.ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(items);
                }
                _ => return None,
            }
        }
    }
}

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

/// Epoch ms of the canonical ``YYYY-MM-DDTHH:MM:SS.mmmZ``; anything else: ``None``.
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
    Some(days_from_civil(y, mo, d) * 86_400_000 + ((h * 60 + mi) * 60 + s) * 1000 + ms)
}

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
struct Event<'a> {
    id: &'a str,
    source: &'a str,
    type_: &'a str,
    subject: &'a str,
    time_ms: i64,
    data: Option<Val<'a>>,
    digest: [u8; 24],
}

fn decided<'a>(line: &'a [u8]) -> Option<Event<'a>> {
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
struct TextCache(Mutex<HashMap<Box<str>, Py<PyString>>>);

const TEXTS_HELD: usize = 1 << 16;

impl TextCache {
    fn new() -> Self {
        TextCache(Mutex::new(HashMap::new()))
    }

    fn text<'py>(&self, py: Python<'py>, s: &str) -> Bound<'py, PyString> {
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
fn event_tuple(
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
fn decode(py: Python<'_>, line: &[u8]) -> PyResult<Option<PyObject>> {
    let Some(event) = decided(line) else {
        return Ok(None);
    };
    let subject = PyString::new(py, event.subject);
    Ok(Some(event_tuple(py, &event, &subject, None, true, None)?))
}

// -- metering ------------------------------------------------------------------------------

/// One meter, compiled: what the lean path's ``meter`` does for it when every path is a
/// chain of keys (``$.a.b``) and every group name can be written without an escape.
struct Meter {
    slug: Py<PyString>,
    unique: bool,
    value: Option<Vec<String>>,
    groups: Vec<(String, Vec<String>)>, // sorted by name: the group key's order
}

/// Compiled meters by event type; a type whose meters are not all compiled is ``None``
/// (its events are metered by the lean path).
#[pyclass(frozen)]
struct Meters {
    by_type: HashMap<String, Option<Vec<Meter>>>,
    texts: TextCache,
}

type MeterSpec = (
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
    /// ``RawRows.seen_entries``), kept events, folded groups, spans and conflicts as the
    /// Python loop does, and returns the outcome counts
    /// ``(redelivered, conflict, new, replay, duplicate, late)`` and the dead letters as
    /// ``(record, reason or None for the planner's schema reason, detail, index, line)``.
    /// ``pending_rows``: the raw rows of chunks planned but not finished (newest last),
    /// looked up before ``pending`` (``{key: SeenRecord}``) and the store's ``lookup``.
    /// ``key_filter``: the store's ``KeyFilter`` in use, if any (a key it rules out is
    /// not looked up).  ``folded``: a ``Groups`` to fold the contributions into, in place
    /// of ``out.groups`` (a dictionary).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (records, out, ns, unknown_type_is_error, grace_ms, horizon_ms, pending_rows, pending, lookup, other, key_filter = None, folded = None))]
    fn plan<'py>(
        &self,
        py: Python<'py>,
        records: Bound<'py, PyList>,
        out: Bound<'py, PyAny>,
        ns: Bound<'py, PyString>,
        unknown_type_is_error: bool,
        grace_ms: i64,
        horizon_ms: i64,
        pending_rows: Vec<Bound<'py, raw_rows::RawRows>>,
        pending: Bound<'py, PyDict>,
        lookup: Bound<'py, PyAny>,
        other: Bound<'py, PyAny>,
        key_filter: Option<Bound<'py, key_filter::KeyFilter>>,
        folded: Option<Bound<'py, folded::Groups>>,
    ) -> PyResult<(plan_loop::CountsTuple, Bound<'py, PyList>)> {
        let field = |name: &str| out.getattr(name);
        let groups = match folded {
            Some(groups) => plan_loop::Folds::Native(groups),
            None => plan_loop::Folds::Dict(field("groups")?.downcast_into()?),
        };
        let target = plan_loop::Out {
            raw_rows: field("raw_rows")?.downcast_into()?,
            kept: field("kept")?.downcast_into()?,
            groups,
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
            pending_rows,
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

fn plain_text(s: &str) -> bool {
    !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

fn find<'v, 'a>(data: Option<&'v Val<'a>>, keys: &[String]) -> Option<&'v Val<'a>> {
    let mut node = data?;
    for key in keys {
        let Val::Obj(items) = node else {
            return None;
        };
        node = &items.iter().find(|(k, _)| *k == key.as_str())?.1;
    }
    Some(node)
}

static ZERO: GILOnceCell<PyObject> = GILOnceCell::new();

pub(crate) fn decimal_type(py: Python<'_>) -> PyResult<&PyObject> {
    DECIMAL.get_or_try_init(py, || -> PyResult<PyObject> {
        Ok(py.import("decimal")?.getattr("Decimal")?.unbind())
    })
}

impl Meters {
    fn meter(
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
                    (false, Some(Val::Int(t))) => value = Some(decimal_type(py)?.call1(py, (*t,))?),
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
fn plain_number(text: &str) -> bool {
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

/// A decimal literal ``Decimal(38, 9)`` holds unchanged: at most 9 fraction digits and 29
/// integer digits (the lean path refuses the rest as out of range).
fn fits(text: &str) -> bool {
    let unsigned = text.trim_start_matches('-');
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let integer = if whole == "0" { 0 } else { whole.len() };
    fraction.len() <= 9 && integer <= 29
}

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
    m.add_class::<folded::Groups>()?;
    Ok(())
}
