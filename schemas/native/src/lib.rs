use blake2::Blake2bVar;
use blake2::digest::{Update, VariableOutput};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

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

    fn number(&mut self) -> Option<Val<'a>> {
        let start = self.i;
        let b = self.b;
        if self.i < b.len() && b[self.i] == b'-' {
            self.i += 1;
        }
        let int_start = self.i;
        while self.i < b.len() && b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        let int_digits = &b[int_start..self.i];
        if int_digits.is_empty() || (int_digits.len() > 1 && int_digits[0] == b'0') {
            return None;
        }
        if self.i < b.len() && (b[self.i] == b'e' || b[self.i] == b'E') {
            return None; // exponent forms: not decided here
        }
        if self.i < b.len() && b[self.i] == b'.' {
            self.i += 1;
            let frac_start = self.i;
            while self.i < b.len() && b[self.i].is_ascii_digit() {
                self.i += 1;
            }
            let frac = &b[frac_start..self.i];
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
                let mut items = Vec::new();
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
        let mut items: Vec<(&'a str, Val<'a>)> = Vec::new();
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
    !b.is_empty()
        && (0x21..=0x7e).contains(&b[0])
        && (0x21..=0x7e).contains(&b[b.len() - 1])
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
    let dim = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
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
        Val::Int(t) => t.parse::<i64>().unwrap().into_pyobject(py)?.into_any().unbind(),
        Val::Dec(t) => {
            let dec = DECIMAL.get_or_try_init(py, || -> PyResult<PyObject> {
                Ok(py.import("decimal")?.getattr("Decimal")?.unbind())
            })?;
            dec.call1(py, (*t,))?
        }
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

#[pyfunction]
fn decode(py: Python<'_>, line: &[u8]) -> PyResult<Option<PyObject>> {
    if line.contains(&b'\\') {
        return Ok(None);
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Ok(None);
    };
    let mut p = Parser { text, b: line, i: 0 };
    let Some(fields) = p.object(1) else {
        return Ok(None);
    };
    p.ws();
    if p.i != line.len() {
        return Ok(None);
    }
    let (mut id, mut source, mut type_, mut subject, mut time) = (None, None, None, None, None);
    let (mut data, mut content_type, mut schema) = (None, None, None);
    for (key, value) in &fields {
        match (*key, value) {
            ("id", Val::Str(s)) => id = Some(*s),
            ("source", Val::Str(s)) => source = Some(*s),
            ("type", Val::Str(s)) => type_ = Some(*s),
            ("subject", Val::Str(s)) => subject = Some(*s),
            ("time", Val::Str(s)) => time = Some(*s),
            ("specversion", Val::Str(s)) if *s == "1.0" => {}
            ("data", Val::Obj(_)) => data = Some(value),
            ("data", Val::Null) => {}
            ("datacontenttype", Val::Str(s)) => content_type = Some(*s),
            ("datacontenttype", Val::Null) => {}
            ("dataschema", Val::Str(s)) => schema = Some(*s),
            ("dataschema", Val::Null) => {}
            _ => return Ok(None),
        }
    }
    let (Some(id), Some(source), Some(type_), Some(subject), Some(time)) =
        (id, source, type_, subject, time)
    else {
        return Ok(None);
    };
    if !(envelope_text(id) && envelope_text(source) && envelope_text(type_) && envelope_text(subject))
    {
        return Ok(None);
    }
    for extra in [content_type, schema].into_iter().flatten() {
        if !unpadded(extra) {
            return Ok(None); // (an empty extra: the reference decides)
        }
    }
    let Some(time_ms) = canonical_time(time) else {
        return Ok(None);
    };
    if let Some(Val::Obj(items)) = data {
        if !items.iter().all(|(k, _)| unpadded(k)) {
            return Ok(None);
        }
    }
    // the canonical form: keys sorted, compact, decimals as their text in quotes
    let mut out = Vec::with_capacity(line.len() + 64);
    out.push(b'{');
    if let Some(d) = data {
        out.extend_from_slice(b"\"data\":");
        write_canonical(&mut out, d);
        out.push(b',');
    }
    if let Some(ct) = content_type {
        out.extend_from_slice(b"\"datacontenttype\":\"");
        out.extend_from_slice(ct.as_bytes());
        out.extend_from_slice(b"\",");
    }
    if let Some(s) = schema {
        out.extend_from_slice(b"\"dataschema\":\"");
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\",");
    }
    for (name, value) in [("id", id), ("source", source)] {
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":\"");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\",");
    }
    out.extend_from_slice(b"\"specversion\":\"1.0\",");
    for (name, value) in [("subject", subject), ("time", time), ("type", type_)] {
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":\"");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\",");
    }
    out.pop();
    out.push(b'}');
    let mut hasher = Blake2bVar::new(12).unwrap();
    hasher.update(&out);
    let mut digest = [0u8; 12];
    hasher.finalize_variable(&mut digest).unwrap();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 24];
    for (n, byte) in digest.iter().enumerate() {
        hex[2 * n] = HEX[(byte >> 4) as usize];
        hex[2 * n + 1] = HEX[(byte & 15) as usize];
    }
    let hex = std::str::from_utf8(&hex).unwrap();
    let data_obj = match data {
        Some(d) => to_py(py, d)?,
        None => py.None(),
    };
    let tuple = PyTuple::new(
        py,
        [
            PyString::new(py, source).into_any().unbind(),
            PyString::new(py, id).into_any().unbind(),
            PyString::new(py, type_).into_any().unbind(),
            PyString::new(py, subject).into_any().unbind(),
            time_ms.into_pyobject(py)?.into_any().unbind(),
            data_obj,
            PyString::new(py, hex).into_any().unbind(),
        ],
    )?;
    Ok(Some(tuple.into_any().unbind()))
}

#[pymodule]
fn meterline_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    Ok(())
}
