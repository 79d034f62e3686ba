//! The event line's JSON, parsed without copying ([`Parser`] into [`Val`]s borrowing the
//! line): only what a plainly well-formed usage event needs; anything else declines.

pub(crate) const MAX_TEXT: usize = 512;
const MAX_DEPTH: usize = 32;
const MAX_INT_DIGITS: usize = 18;
const MAX_DECIMAL_DIGITS: usize = 40;

pub(crate) enum Val<'a> {
    Str(&'a str),
    Int(&'a str),
    Dec(&'a str),
    True,
    False,
    Null,
    Arr(Vec<Val<'a>>),
    Obj(Vec<(&'a str, Val<'a>)>),
}

pub(crate) struct Parser<'a> {
    pub(crate) text: &'a str,
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    pub(crate) fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.i < self.b.len() && self.b[self.i] == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes (the caller refused any backslash in the line).
    pub(crate) fn string(&mut self) -> Option<&'a str> {
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
    pub(crate) fn digits(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        &self.b[start..self.i]
    }

    pub(crate) fn number(&mut self) -> Option<Val<'a>> {
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

    pub(crate) fn value(&mut self, depth: usize) -> Option<Val<'a>> {
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

    pub(crate) fn word(&mut self, w: &[u8], v: Val<'a>) -> Option<Val<'a>> {
        if self.b[self.i..].starts_with(w) {
            self.i += w.len();
            Some(v)
        } else {
            None
        }
    }

    pub(crate) fn object(&mut self, depth: usize) -> Option<Vec<(&'a str, Val<'a>)>> {
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
