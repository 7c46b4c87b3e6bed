//! `ReplayCache`: the answers sent to recent requests, by (address, message
//! id), so that a resent request is answered with the bytes sent the first
//! time rather than served again (`dhtquery.dht.replay` says why). The
//! pure-Python twin is `_core_py.ReplayCache`; the protocol keeps the one of
//! its core's backend, which the `DatagramEngine` reads and feeds in the
//! call that reads a request (`DatagramEngine.serve`).
//!
//! Bounded by count and bytes (the oldest out first) and by age: an answer
//! older than `max_age` is not a resend's and leaves as the next one comes
//! in. Keys are `(address, msg_id)` tuples, hashed and compared as Python
//! does, so any hashable address is kept apart as the twin's dict keeps it.

use crate::errors::{type_error, type_name};
use crate::peers::{hash_of, OrderedTable};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

/// Answers kept at most, and their bytes (the twin's `DEFAULT_COUNT`,
/// `DEFAULT_BYTES`).
pub const DEFAULT_COUNT: usize = 1024;
pub const DEFAULT_BYTES: usize = 1024 * 1024;

/// One answer: when it was sent, and its datagram.
struct Answer {
    when: f64,
    datagram: Py<PyBytes>,
    size: usize,
}

#[pyclass(module = "dhtquery._core", name = "ReplayCache")]
pub struct ReplayCache {
    answers: OrderedTable<Answer>,
    bytes: usize,
    /// when the oldest answer kept passes `max_age`, or earlier (answers
    /// that left by count or bytes leave a younger oldest): no answer is
    /// past `max_age` before then, so `put` looks only then
    expires: f64,
    #[pyo3(get, set)]
    max_age: f64,
    #[pyo3(get, set)]
    max_count: usize,
    #[pyo3(get, set)]
    max_bytes: usize,
}

/// The cache's key for a request: `(address, msg_id)`, and its hash.
pub(crate) fn replay_key<'py>(
    address: &Bound<'py, PyAny>,
    msg_id: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyTuple>, u64)> {
    let key = PyTuple::new(address.py(), [address, msg_id])?;
    let hash = hash_of(key.as_any())?;
    Ok((key, hash))
}

impl ReplayCache {
    /// `get`'s work, given the key and its hash.
    pub(crate) fn get_key<'py>(
        &self,
        key: &Bound<'py, PyTuple>,
        hash: u64,
        now: f64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let Some(slot) = self.answers.find(key.as_any(), hash)? else {
            return Ok(None);
        };
        let answer = self.answers.value(slot);
        if now - answer.when > self.max_age {
            return Ok(None);
        }
        Ok(Some(answer.datagram.bind(key.py()).clone()))
    }

    /// `put`'s work, given the key and its hash.
    pub(crate) fn put_key(
        &mut self,
        key: &Bound<'_, PyTuple>,
        hash: u64,
        datagram: &Bound<'_, PyBytes>,
        now: f64,
    ) -> PyResult<()> {
        let size = datagram.as_bytes().len();
        if size > self.max_bytes {
            return Ok(());
        }
        let answers = &mut self.answers;
        if let Some(slot) = answers.find(key.as_any(), hash)? {
            self.bytes -= answers.remove(slot).size;
        }
        answers.insert(
            key.as_any(),
            hash,
            Answer {
                when: now,
                datagram: datagram.clone().unbind(),
                size,
            },
        );
        self.bytes += size;
        // oldest first: out go those past the bounds, and those past
        // max_age (read only when one may be, as the twin does)
        while answers.len() > self.max_count || self.bytes > self.max_bytes {
            match answers.pop_oldest() {
                Some(old) => self.bytes -= old.size,
                None => break,
            }
        }
        if now < self.expires {
            return Ok(());
        }
        let too_old = now - self.max_age;
        while let Some(oldest) = answers.oldest() {
            if oldest.when >= too_old {
                self.expires = oldest.when + self.max_age;
                return Ok(());
            }
            if let Some(old) = answers.pop_oldest() {
                self.bytes -= old.size;
            }
        }
        Ok(())
    }
}

#[pymethods]
impl ReplayCache {
    #[new]
    #[pyo3(signature = (max_age, *, max_count = DEFAULT_COUNT, max_bytes = DEFAULT_BYTES))]
    fn new(max_age: f64, max_count: usize, max_bytes: usize) -> Self {
        ReplayCache {
            answers: OrderedTable::new(),
            bytes: 0,
            expires: 0.0,
            max_age,
            max_count,
            max_bytes,
        }
    }

    fn __len__(&self) -> usize {
        self.answers.len()
    }

    /// Bytes of the answers kept.
    #[getter]
    fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// The answer sent to this request, if it was answered within
    /// `max_age` seconds (and is still kept).
    fn get<'py>(
        &self,
        address: &Bound<'py, PyAny>,
        msg_id: &Bound<'py, PyAny>,
        now: f64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let (key, hash) = replay_key(address, msg_id)?;
        self.get_key(&key, hash, now)
    }

    /// Keep the answer sent to a request; the oldest leave first.
    fn put(
        &mut self,
        address: &Bound<'_, PyAny>,
        msg_id: &Bound<'_, PyAny>,
        datagram: &Bound<'_, PyAny>,
        now: f64,
    ) -> PyResult<()> {
        let Ok(datagram) = datagram.cast_exact::<PyBytes>() else {
            return Err(type_error(format!(
                "datagram must be bytes, got {}",
                type_name(datagram)
            )));
        };
        let (key, hash) = replay_key(address, msg_id)?;
        self.put_key(&key, hash, datagram, now)
    }
}
