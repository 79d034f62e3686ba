//! One written chunk of the dedupe table, encoded in one call: its table entry and its
//! index entries (`streams/seen_codec.py` holds the layouts and the Python reference,
//! [`encode_chunk`] returns exactly what it returns: `tests/streams/test_seen_codec.py`).
//!
//! The worker records every kept event this way after its chunk is written (the sink's
//! finish step); in Python it cost a list per event for the entry's JSON, a tuple per
//! event for the index, and per event two encodes, a hash call, a `struct.pack` and three
//! concatenations.

use crate::key_filter::{hash16, HASH_BYTES};
use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

/// `value` as orjson writes a JSON string: `"` and `\` escaped, `\b \t \n \f \r` short,
/// other controls as `\u00xx`, everything else (DEL and non-ASCII included) as it is.
/// The runs between escaped bytes are copied whole (a dedupe key has two `\x1f`).
fn json_string(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0; // the start of the bytes not copied yet
    for (at, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..at]);
        run = at + 1;
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// In an index value's digest length: the digest's bytes follow, and no key after them
/// (`streams.seen_codec.COMPACT`).
const COMPACT: u16 = 0x8000;

/// The bytes of `text` into `out` if it is lowercase hexadecimal of even length (what
/// `bytes.fromhex` reads and `bytes.hex` writes back the same), else `false`.
fn hex_bytes(text: &str, out: &mut Vec<u8>) -> bool {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return false;
    }
    for pair in bytes.chunks_exact(2) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(high), Some(low)) => out.push(high << 4 | low),
            _ => return false,
        }
    }
    true
}

/// One kept event of a chunk, as its table entry and index value record it.
pub(crate) struct Event<'k> {
    pub key: &'k str,
    pub offset: i64,
    pub index: u32,
    pub digest: &'k str,
    pub ingested: i64,
}

/// A chunk's table key and value, its events' key hashes end to end, their index values
/// end to end with where each ends, and the newest `ingested_ms` (at least 0).
pub(crate) struct Encoded {
    chunk_key: Vec<u8>,
    value: Vec<u8>,
    hashes: Vec<u8>,
    entries: Vec<u8>,
    ends: Vec<usize>,
    newest: i64,
}

/// One partition's kept events (in record order, at least one) encoded: no Python object
/// is touched; the error names a digest too long for an index value.
pub(crate) fn encode(events: &[Event<'_>], partition: u32) -> Result<Encoded, String> {
    let n = events.len();
    let offsets = events.iter().map(|e| e.offset);
    let (low, high) = (offsets.clone().min(), offsets.max());
    let (Some(low), Some(high)) = (low, high) else {
        return Err("a chunk has events".to_owned());
    };
    let chunk_key = format!("{partition}:{low}-{high}").into_bytes();
    let chunk_len = u16::try_from(chunk_key.len()).expect("a chunk key is short");
    let mut value = Vec::with_capacity(n * 128);
    value.extend_from_slice(b"{\"e\":[");
    let mut hashes = Vec::with_capacity(n * HASH_BYTES);
    let mut entries = Vec::with_capacity(n * 96);
    let mut ends = Vec::with_capacity(n);
    let mut newest = 0i64;
    let mut digest = Vec::with_capacity(32);
    let mut numbers = itoa::Buffer::new();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            value.push(b',');
        }
        value.push(b'[');
        json_string(&mut value, e.key);
        value.push(b',');
        value.extend_from_slice(numbers.format(e.offset).as_bytes());
        value.push(b',');
        value.extend_from_slice(numbers.format(e.index).as_bytes());
        value.push(b',');
        json_string(&mut value, e.digest);
        value.push(b',');
        value.extend_from_slice(numbers.format(e.ingested).as_bytes());
        value.push(b']');

        hashes.extend_from_slice(&hash16(e.key.as_bytes()));
        entries.extend_from_slice(&partition.to_le_bytes());
        entries.extend_from_slice(&e.offset.to_le_bytes());
        entries.extend_from_slice(&e.index.to_le_bytes());
        entries.extend_from_slice(&e.ingested.to_le_bytes());
        entries.extend_from_slice(&chunk_len.to_le_bytes());
        digest.clear();
        if hex_bytes(e.digest, &mut digest) && digest.len() < usize::from(COMPACT) {
            entries.extend_from_slice(&(COMPACT | digest.len() as u16).to_le_bytes());
            entries.extend_from_slice(&chunk_key);
            entries.extend_from_slice(&digest);
        } else {
            let digest_len = u16::try_from(e.digest.len())
                .ok()
                .filter(|&n| n < COMPACT)
                .ok_or_else(|| {
                    let n = e.digest.len();
                    format!("a content digest of {n} bytes is too long")
                })?;
            entries.extend_from_slice(&digest_len.to_le_bytes());
            entries.extend_from_slice(&chunk_key);
            entries.extend_from_slice(e.digest.as_bytes());
            entries.extend_from_slice(e.key.as_bytes());
        }
        ends.push(entries.len());
        newest = newest.max(e.ingested);
    }
    value.extend_from_slice(b"]}");
    Ok(Encoded {
        chunk_key,
        value,
        hashes,
        entries,
        ends,
        newest,
    })
}

impl Encoded {
    /// `(table key, table value, (index entries, key hashes, newest ingested_ms))`, what
    /// `streams.seen_codec.encode_chunk` returns: the index entries in the order of their
    /// key hashes, as `seen_codec.index_entries` sorts them.
    pub(crate) fn into_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        let hash = |i: usize| &self.hashes[i * HASH_BYTES..(i + 1) * HASH_BYTES];
        let mut order: Vec<usize> = (0..self.ends.len()).collect();
        order.sort_by_key(|&i| hash(i)); // stable: of one key's two entries, the later wins
        let mut pairs = Vec::with_capacity(order.len());
        let mut hashes = Vec::with_capacity(self.hashes.len());
        for i in order {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            pairs.push(PyTuple::new(
                py,
                [
                    PyBytes::new(py, hash(i)),
                    PyBytes::new(py, &self.entries[start..self.ends[i]]),
                ],
            )?);
            hashes.extend_from_slice(hash(i));
        }
        let indexed = PyTuple::new(
            py,
            [
                PyList::new(py, pairs)?.into_any(),
                PyBytes::new(py, &hashes).into_any(),
                self.newest.into_pyobject(py)?.into_any(),
            ],
        )?;
        PyTuple::new(
            py,
            [
                PyBytes::new(py, &self.chunk_key).into_any(),
                PyBytes::new(py, &self.value).into_any(),
                indexed.into_any(),
            ],
        )
    }
}

/// One partition's kept events `[(dedupe key, SeenRecord), ...]` (in record order, at
/// least one) as `(table key, table value, (index entries, key hashes, newest
/// ingested_ms))`: what `streams.seen_codec.encode_chunk` returns for them.
#[pyfunction]
pub fn encode_chunk<'py>(
    py: Python<'py>,
    kept: &Bound<'py, PyList>,
    partition: u32,
) -> PyResult<Bound<'py, PyTuple>> {
    let n = kept.len();
    if n == 0 {
        return Err(PyValueError::new_err("a chunk has events"));
    }
    let items: Vec<Bound<'py, PyTuple>> = kept
        .iter()
        .map(|item| item.downcast_into::<PyTuple>().map_err(PyErr::from))
        .collect::<PyResult<_>>()?;
    let mut texts = Vec::with_capacity(n);
    for item in &items {
        let record = item.get_borrowed_item(1)?;
        let digest = record
            .getattr(intern!(py, "content_hash"))?
            .downcast_into::<PyString>()?;
        texts.push((item.get_item(0)?.downcast_into::<PyString>()?, digest));
    }
    let mut events = Vec::with_capacity(n);
    for (item, (key, digest)) in items.iter().zip(&texts) {
        let record = item.get_borrowed_item(1)?;
        events.push(Event {
            key: key.to_str()?,
            offset: record.getattr(intern!(py, "offset"))?.extract()?,
            index: record.getattr(intern!(py, "index"))?.extract()?,
            digest: digest.to_str()?,
            ingested: record.getattr(intern!(py, "ingested_ms"))?.extract()?,
        });
    }
    encode(&events, partition)
        .map_err(PyOverflowError::new_err)?
        .into_python(py)
}

/// `streams.seen_codec.entry_slices` on the offsets of one partition's kept events: the
/// `[start, end)` of each table entry, cut only between records.
pub(crate) fn entry_slices(offsets: &[i64], max_events: usize) -> Vec<(usize, usize)> {
    let n = offsets.len();
    if n <= max_events || offsets.windows(2).any(|w| w[0] > w[1]) {
        return vec![(0, n)];
    }
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < n {
        let mut end = i + 1; // [i, end): one record's events
        while end < n && offsets[end] == offsets[i] {
            end += 1;
        }
        if end - start > max_events && i > start {
            out.push((start, i));
            start = i;
        }
        i = end;
    }
    out.push((start, n));
    out
}
