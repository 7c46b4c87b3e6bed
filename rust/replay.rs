//! `ReplayCache`: the answers sent to recent requests, by (address, message
//! id), so that a resent request is answered with the bytes sent the first
//! time rather than served again (`dhtquery.dht.replay` says why). The
//! pure-Python twin is `_core_py.ReplayCache`; the protocol keeps the one of
//! its core's backend, which the `DatagramEngine` reads and feeds in the
//! call that reads a request (`DatagramEngine.serve`).
//!
//! Bounded by count and bytes (the oldest out first) and by age: an answer
//! older than `max_age` is not a resend's and leaves as the next one comes
//! in. The address is hashed and compared as Python does (any hashable is
//! kept apart as the twin's dict keeps it), the message id (bytes) by its
//! bytes: the engine looks a request up from its datagram, no key made.
//! (A key tuple made, hashed and kept per request served cost ~1 k
//! instructions with its share of the garbage collector's passes,
//! callgrind, bench profile --serve. From Python, a miss and a put: 1.9 us
//! with the twin's `OrderedDict`, 0.7-0.8 us here, timeit, two runs.)

use crate::errors::{type_error, type_name};
use crate::peers::{hash_of, OrderedTable};
use foldhash::fast::RandomState;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::hash::BuildHasher;

/// Where `get_at` found a request's answer (`slot`), when the cache had
/// made and removed `changes` entries.
#[derive(Clone, Copy)]
pub(crate) struct Found {
    slot: Option<u32>,
    changes: u64,
}

/// A request's message id, kept in place when it is rpcudp's 20 bytes.
enum MessageId {
    Wire([u8; 20]),
    Other(Box<[u8]>),
}

impl MessageId {
    fn new(bytes: &[u8]) -> Self {
        match <[u8; 20]>::try_from(bytes) {
            Ok(wire) => MessageId::Wire(wire),
            Err(_) => MessageId::Other(bytes.into()),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            MessageId::Wire(wire) => wire,
            MessageId::Other(other) => other,
        }
    }
}

/// One answer: its message id (the table's key is the address), when it
/// was sent, its datagram.
struct Answer {
    msg_id: MessageId,
    when: f64,
    datagram: Py<PyBytes>,
    size: usize,
}

#[pyclass(module = "dhtquery._core", name = "ReplayCache")]
pub struct ReplayCache {
    /// keyed by the address, the message id in the answer
    answers: OrderedTable<Answer>,
    /// the message ids' hasher (seeded per cache: ids are the senders')
    hasher: RandomState,
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

fn message_id<'a, 'py>(msg_id: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyBytes>> {
    msg_id
        .cast_exact::<PyBytes>()
        .map_err(|_| type_error(format!("msg_id must be bytes, got {}", type_name(msg_id))))
}

impl ReplayCache {
    /// The hash a request's answer is kept under.
    pub(crate) fn hash(&self, address: &Bound<'_, PyAny>, msg_id: &[u8]) -> PyResult<u64> {
        Ok(self.hasher.hash_one(msg_id) ^ hash_of(address)?)
    }

    fn find(&self, address: &Bound<'_, PyAny>, msg_id: &[u8], hash: u64) -> PyResult<Option<u32>> {
        let py = address.py();
        self.answers.find_with(hash, |key, answer| {
            Ok(answer.msg_id.bytes() == msg_id && (key.is(address) || key.bind(py).eq(address)?))
        })
    }

    /// `get`'s work, given the request's hash; and where the request is
    /// (for `put_at`, while nothing else is put or leaves).
    pub(crate) fn get_at<'py>(
        &self,
        address: &Bound<'py, PyAny>,
        msg_id: &[u8],
        hash: u64,
        now: f64,
    ) -> PyResult<(Option<Bound<'py, PyBytes>>, Found)> {
        let slot = self.find(address, msg_id, hash)?;
        let found = Found {
            slot,
            changes: self.answers.changes(),
        };
        Ok((self.answer_at(address.py(), slot, now), found))
    }

    fn answer_at<'py>(
        &self,
        py: Python<'py>,
        slot: Option<u32>,
        now: f64,
    ) -> Option<Bound<'py, PyBytes>> {
        let slot = slot?;
        let answer = self.answers.value(slot);
        if now - answer.when > self.max_age {
            return None;
        }
        Some(answer.datagram.bind(py).clone())
    }

    /// `put`'s work, given the request's hash (and where `get_at` found
    /// it: not looked for again if the cache has not changed since).
    pub(crate) fn put_at(
        &mut self,
        address: &Bound<'_, PyAny>,
        msg_id: &[u8],
        hash: u64,
        datagram: &Bound<'_, PyBytes>,
        now: f64,
        found: Option<Found>,
    ) -> PyResult<()> {
        let size = datagram.as_bytes().len();
        if size > self.max_bytes {
            return Ok(());
        }
        let slot = match found {
            Some(found) if found.changes == self.answers.changes() => found.slot,
            _ => self.find(address, msg_id, hash)?,
        };
        if let Some(slot) = slot {
            self.bytes -= self.answers.remove(slot).size;
        }
        let answers = &mut self.answers;
        answers.insert(
            address,
            hash,
            Answer {
                msg_id: MessageId::new(msg_id),
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
    /// (Answers kept at most, and their bytes, by default: the twin's
    /// `REPLAY_COUNT` and `REPLAY_BYTES`, written out so the signature shows
    /// them.)
    #[new]
    #[pyo3(signature = (max_age, *, max_count = 1024, max_bytes = 1_048_576))]
    fn new(max_age: f64, max_count: usize, max_bytes: usize) -> Self {
        ReplayCache {
            answers: OrderedTable::new(),
            hasher: RandomState::default(),
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
        let msg_id = message_id(msg_id)?.as_bytes();
        let hash = self.hash(address, msg_id)?;
        Ok(self.get_at(address, msg_id, hash, now)?.0)
    }

    /// Keep the answer sent to a request; the oldest leave first.
    fn put(
        &mut self,
        address: &Bound<'_, PyAny>,
        msg_id: &Bound<'_, PyAny>,
        datagram: &Bound<'_, PyAny>,
        now: f64,
    ) -> PyResult<()> {
        let msg_id = message_id(msg_id)?;
        let Ok(datagram) = datagram.cast_exact::<PyBytes>() else {
            return Err(type_error(format!(
                "datagram must be bytes, got {}",
                type_name(datagram)
            )));
        };
        let msg_id = msg_id.as_bytes();
        let hash = self.hash(address, msg_id)?;
        self.put_at(address, msg_id, hash, datagram, now, None)
    }
}
