//! The dedupe index's keys (`streams/seen_store.py`, `streams/seen_codec.py`): their
//! 16-byte hash, and a Bloom filter over the hashes the index holds.
//!
//! [`key_hash`] is `hashlib.blake2b(key, digest_size=16).digest()`, without building a
//! hash object per key (0.9 µs a key in Python); the index stores these hashes, so the
//! two must never differ (`tests/streams/test_key_filter.py`).
//!
//! Most look-ups of a live worker are for keys never seen, and a RocksDB read that misses
//! still searches the memtables (measured 2.5-3 µs per miss through rocksdict against
//! 0.6 µs once they are flushed).  The filter answers those in one pass over seven bits:
//! "absent" is certain, "maybe" goes on to RocksDB.  It never forgets a key, so a key
//! purged from the index only costs a RocksDB read; its owner rebuilds it (from the
//! index's chunk entries) when more keys were added than it was sized for.
//!
//! The key hashes are BLAKE2b outputs, uniform already: the seven probe positions come
//! from the hash's two 64-bit halves (double hashing), each mapped onto the bit array by
//! a multiply-shift (no modulo, no power-of-two rounding).

use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

pub(crate) const HASH_BYTES: usize = 16;
const PROBES: u64 = 7;
const BITS_PER_KEY: u64 = 10; // with 7 probes: ~1 % false "maybe" at capacity
const MIN_CAPACITY: u64 = 1 << 16;

/// BLAKE2b with a 16-byte digest of ``key``: the dedupe index's key hash.
#[pyfunction]
pub fn key_hash<'py>(py: Python<'py>, key: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &hash16(key))
}

/// The bytes of [`key_hash`].
pub fn hash16(key: &[u8]) -> [u8; HASH_BYTES] {
    let mut hasher = Blake2bVar::new(HASH_BYTES).expect("16 bytes is a BLAKE2b size");
    hasher.update(key);
    let mut out = [0u8; HASH_BYTES];
    hasher
        .finalize_variable(&mut out)
        .expect("the buffer has the digest's size");
    out
}

#[pyclass(module = "meterline_native")]
pub struct KeyFilter {
    words: Vec<u64>,
    bits: u64,
    capacity: u64,
    added: u64,
}

impl KeyFilter {
    fn halves(hash: &[u8]) -> PyResult<(u64, u64)> {
        if hash.len() != HASH_BYTES {
            return Err(PyValueError::new_err(format!(
                "a key hash is {HASH_BYTES} bytes, got {}",
                hash.len()
            )));
        }
        let h1 = u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"));
        let h2 = u64::from_le_bytes(hash[8..].try_into().expect("8 bytes")) | 1;
        Ok((h1, h2))
    }

    fn position(&self, h1: u64, h2: u64, probe: u64) -> usize {
        let h = h1.wrapping_add(probe.wrapping_mul(h2));
        ((u128::from(h) * u128::from(self.bits)) >> 64) as usize
    }

    /// ``may_contain_key``, for the planner's native loop (`plan_loop`).
    pub(crate) fn may_contain_text(&self, key: &str) -> bool {
        self.may_contain(&hash16(key.as_bytes()))
            .expect("a key hash has the filter's size")
    }

    fn insert(&mut self, h1: u64, h2: u64) {
        for probe in 0..PROBES {
            let at = self.position(h1, h2, probe);
            self.words[at / 64] |= 1 << (at % 64);
        }
        self.added += 1;
    }
}

#[pymethods]
impl KeyFilter {
    /// An empty filter sized for ``capacity`` keys (at least 65,536): 10 bits per key.
    #[new]
    fn new(capacity: u64) -> Self {
        let capacity = capacity.max(MIN_CAPACITY);
        let bits = capacity * BITS_PER_KEY;
        KeyFilter {
            words: vec![0; bits.div_ceil(64) as usize],
            bits,
            capacity,
            added: 0,
        }
    }

    /// Add every hash of ``hashes``, a concatenation of 16-byte key hashes (a chunk
    /// entry's list, or one hash).
    fn add_all(&mut self, hashes: &[u8]) -> PyResult<()> {
        let pieces = hashes.chunks_exact(HASH_BYTES);
        if !pieces.remainder().is_empty() {
            return Err(PyValueError::new_err(format!(
                "key hashes come in {HASH_BYTES}-byte pieces, got {} bytes",
                hashes.len()
            )));
        }
        for hash in pieces {
            let (h1, h2) = Self::halves(hash)?;
            self.insert(h1, h2);
        }
        Ok(())
    }

    /// ``False`` only for a hash never added; ``True`` for every hash added (and, at
    /// capacity, for ~1 % of the others).
    fn may_contain(&self, hash: &[u8]) -> PyResult<bool> {
        let (h1, h2) = Self::halves(hash)?;
        Ok((0..PROBES).all(|probe| {
            let at = self.position(h1, h2, probe);
            self.words[at / 64] & (1 << (at % 64)) != 0
        }))
    }

    /// [`KeyFilter::may_contain`] of the key's hash ([`key_hash`] of its UTF-8 bytes),
    /// hashed here: the look-up of a key the filter rules out makes one call.
    fn may_contain_key(&self, key: &str) -> PyResult<bool> {
        self.may_contain(&hash16(key.as_bytes()))
    }

    /// Hashes added so far (a hash added twice counts twice).
    #[getter]
    fn added(&self) -> u64 {
        self.added
    }

    /// The keys it was sized for; past them the false "maybe" rate climbs.
    #[getter]
    fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The bit array's size in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.words.len() * 8
    }
}
