//! `QueryCore` for Python: argument checks, the lock, and the Python objects
//! (result tuples; statuses, outcomes and the other shapes of
//! `dhtquery.query.types`, through `vocab`). The state machine itself is
//! `table::Table`.
//!
//! Locking rules, so that no thread can deadlock on the core:
//! - `lock()` tries the mutex first and, only if it is contended, waits for
//!   it detached from the interpreter, so a waiting thread never holds the
//!   GIL (or blocks a stop-the-world on free-threaded Python).
//! - No Python code runs while the lock is held: no `__eq__`/`__hash__`
//!   (peers are hashed before locking and compared after unlocking), no
//!   object allocation (which could start the cyclic GC and a `__del__`),
//!   and no decref that could free an object: records, peers and ended
//!   queries are moved out and dropped after unlocking. Only increfs happen
//!   under the lock. A `__del__` or `__eq__` that calls back into the same
//!   core therefore finds it unlocked.

use crate::cache::{prefetch, prefetch_two_lines};
use crate::dedup::{HashedKey, KeyHasher};
use crate::errors::{
    check_float, check_int, check_key, check_key_type, check_now, check_peer, float_repr, repr,
    short_repr, type_error, type_name, value_error, KeyBytes,
};
use crate::query_id::QueryId;
use crate::table::{Ended, PeerDone, PeerReport, Table};
use crate::types::{
    BatchStatus, Reason, Status, MAX_EXPECTED_PEERS, MAX_RESULTS_LIMIT, MAX_TIMEOUT,
};
use crate::vocab::{vocab, Vocab};
use parking_lot::{Mutex, MutexGuard};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyList, PyTuple};

type CoreTable = Table<Held, Py<PyAny>>;

/// A result as the core holds it: the objects of its `(item, peer, key,
/// response_time)` tuple, which is built only when the result is drained
/// or handed over in an outcome (issue 14, item 3). Making one under the
/// lock is three increfs, no allocation: `offer_many` takes a batch in one
/// locked pass.
pub struct Held {
    item: Py<PyAny>,
    peer: Py<PyAny>,
    key: Py<PyAny>,
    response_time: f64,
}

impl Held {
    fn new(
        item: &Bound<'_, PyAny>,
        peer: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        response_time: f64,
    ) -> Self {
        Held {
            item: item.clone().unbind(),
            peer: peer.clone().unbind(),
            key: key.clone().unbind(),
            response_time,
        }
    }
}

impl<'py> IntoPyObject<'py> for Held {
    type Target = PyTuple;
    type Output = Bound<'py, PyTuple>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (self.item, self.peer, self.key, self.response_time).into_pyobject(py)
    }
}

/// An argument that may be left out (to tell a default from an explicit
/// None, which the Python twin refuses for `grace`).
pub enum Optional<'py> {
    Missing,
    Given(Bound<'py, PyAny>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Optional<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Optional::Given(obj.to_owned()))
    }
}

#[pyclass(frozen, module = "dhtquery._core", name = "QueryCore")]
pub struct QueryCore {
    grace: f64,
    /// The objects of `dhtquery.query.types` it returns.
    vocab: &'static Vocab,
    /// The table's key hasher, to hash keys before locking.
    key_hasher: KeyHasher,
    inner: Mutex<CoreTable>,
}

fn check_qid(query_id: &Bound<'_, PyAny>) -> PyResult<u128> {
    match query_id.cast_exact::<QueryId>() {
        Ok(qid) => Ok(qid.get().value),
        Err(_) => Err(type_error(format!(
            "query_id must be a QueryId, got {}",
            type_name(query_id)
        ))),
    }
}

/// A `Reason` member or the equal str, one of `FINISH_REASONS`; or None.
fn check_reason(vocab: &Vocab, reason: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Reason>> {
    let Some(reason) = reason else {
        return Ok(None);
    };
    match vocab.finish_reason(reason)? {
        Some(found) => Ok(Some(found)),
        None => Err(value_error(format!(
            "reason must be one of max_results, all_peers, adaptive or None, got {}",
            repr(reason)?
        ))),
    }
}

/// A `CoreOutcome` (built unlocked: it drops the ended query's objects).
/// `query_id` is the caller's id object (a `QueryId`, equal to the ended
/// one) for `finish` and `cancel`, reused rather than allocating another.
fn outcome<'py>(
    py: Python<'py>,
    vocab: &Vocab,
    mut ended: Ended<Held, Py<PyAny>>,
    query_id: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let results = PyList::new(py, ended.take_results())?;
    let qid = match query_id {
        Some(query_id) => query_id.clone(),
        None => Bound::new(py, QueryId { value: ended.id })?.into_any(),
    };
    let values = (
        qid,
        vocab.reason(py, ended.reason),
        results,
        ended.duration,
        ended.peers_ok,
        ended.peers_failed,
        ended.duplicates,
    )
        .into_pyobject(py)?;
    vocab.core_outcome(values)
}

/// How many pairs ahead of the one it takes `Batch::check` asks the CPU for
/// a list's pair (the pair is then read, its refcount changed, without a
/// wait). a2 of `bench core` at `--quick`'s size, 61 reps interleaved in
/// one process: paired 1.057 faster than without (the same build twice:
/// 1.002).
const PAIRS_AHEAD: usize = 4;

/// Asks the CPU for `list[index]` (a pair object) without taking a
/// reference to it.
fn prefetch_list_item(list: &Bound<'_, PyList>, index: usize) {
    let Ok(index) = pyo3::ffi::Py_ssize_t::try_from(index) else {
        return;
    };
    // SAFETY: `list` is a live list (held by the caller, the GIL attached);
    // `PyList_GetItem` takes any index (out of range: NULL and an
    // IndexError, taken below) and returns a borrowed pointer, only used
    // as a hint here.
    let item = unsafe { pyo3::ffi::PyList_GetItem(list.as_ptr(), index) };
    if item.is_null() {
        drop(PyErr::take(list.py()));
        return;
    }
    prefetch(item);
}

/// A checked `offer_many` batch: each entry's (key, item) pair.
/// (Tried: the pairs and entries of up to 4 kept inline in a `SmallVec`:
/// 306.5 k -> 306.1 k instructions a `get_all`, within what a build's layout
/// moves; `bench core`'s a2, batches of 20, then measured 11.5x -> 10.4x
/// the twin in 2 pairs, against its 10x target: dropped.)
struct Batch<'py> {
    pairs: Vec<Pair<'py>>,
}

/// A pair of the batch, held, and its two items, read once (each
/// `PyTuple_GetItem` is a call through the limited API). The items'
/// pointers kept here rather than in `Entry` make an entry 40 bytes, not
/// 56: a batch of 20 entries (800 bytes) then fits glibc's thread cache
/// (<= 1032 bytes), its allocation reused call after call, where 1,120
/// bytes went through `_int_malloc` every call. a2 of `bench core` at
/// `--quick`'s size, 201 reps interleaved in one process: main / this
/// 1.033 and 1.037 (main against itself 1.000).
struct Pair<'py> {
    tuple: Bound<'py, PyTuple>,
    key: *mut pyo3::ffi::PyObject,
    item: *mut pyo3::ffi::PyObject,
}

impl<'py> Pair<'py> {
    fn new(pair: Bound<'py, PyTuple>) -> PyResult<Self> {
        let key = pair.get_borrowed_item(0)?.as_ptr();
        let item = pair.get_borrowed_item(1)?.as_ptr();
        Ok(Pair {
            tuple: pair,
            key,
            item,
        })
    }

    fn key(&self) -> Borrowed<'_, 'py, PyAny> {
        // SAFETY: the pair's own item 0, non-null (read by
        // `get_borrowed_item`); a tuple's items are fixed and the tuple
        // holds them while `self` holds the tuple.
        unsafe { Borrowed::from_ptr(self.tuple.py(), self.key) }
    }

    fn item(&self) -> Borrowed<'_, 'py, PyAny> {
        // SAFETY: as for `key`, item 1.
        unsafe { Borrowed::from_ptr(self.tuple.py(), self.item) }
    }
}

/// An entry's key as the table takes it: its dedup bytes (borrowed from
/// the key, which its pair holds) and hash.
struct Entry<'a> {
    dedup: KeyBytes<'a>,
    hash: u64,
}

impl<'py> Batch<'py> {
    /// Every entry is checked (a pair, and its key's type), in order, before
    /// any is offered. Keys are checked for their type as they are read
    /// (`entries`); this pass only asks the CPU for each key (its header
    /// and first bytes), so that it is in the cache by then (the type check
    /// here waited for each key's miss). a2 of `bench core` at `--quick`'s
    /// size, 61 reps interleaved with the build before: paired 1.02-1.04
    /// faster (the same build twice: 0.99-1.02).
    fn check(entries: &Bound<'py, PyAny>) -> PyResult<Self> {
        let exact =
            entries.is_exact_instance_of::<PyList>() || entries.is_exact_instance_of::<PyTuple>();
        let sequence =
            exact || entries.is_instance_of::<PyList>() || entries.is_instance_of::<PyTuple>();
        if !sequence {
            return Err(type_error(format!(
                "entries must be a list or tuple of (key, item) pairs, got {}",
                type_name(entries)
            )));
        }
        // A subclass's __len__ may be Python code: no size hint for it.
        let hint = if exact { entries.len()? } else { 0 };
        let mut pairs = Vec::with_capacity(hint);
        if let Ok(list) = entries.cast_exact::<PyList>() {
            let len = list.len();
            for index in 0..len {
                if index + PAIRS_AHEAD < len {
                    prefetch_list_item(list, index + PAIRS_AHEAD);
                }
                Self::add(&mut pairs, index, list.get_item(index)?)?;
            }
        } else {
            for (index, entry) in entries.try_iter()?.enumerate() {
                Self::add(&mut pairs, index, entry?)?;
            }
        }
        Ok(Batch { pairs })
    }

    /// Entry `index`, checked to be a pair, and its key asked for.
    fn add(pairs: &mut Vec<Pair<'py>>, index: usize, entry: Bound<'py, PyAny>) -> PyResult<()> {
        let pair = match entry.cast_into_exact::<PyTuple>() {
            Ok(pair) if pair.len() == 2 => Pair::new(pair)?,
            Ok(pair) => return Err(Self::not_a_pair(pairs, index, pair.as_any())),
            Err(err) => return Err(Self::not_a_pair(pairs, index, &err.into_inner())),
        };
        prefetch_two_lines(pair.key);
        pairs.push(pair);
        Ok(())
    }

    /// The error for entry `index`, no pair: unless an earlier entry's key
    /// has a wrong type, which is named first (entries are checked in
    /// order).
    fn not_a_pair(pairs: &[Pair<'py>], index: usize, entry: &Bound<'_, PyAny>) -> PyErr {
        for (earlier, pair) in pairs.iter().enumerate() {
            if let Err(err) = check_key_type(&pair.key(), || format!("entries[{earlier}] key")) {
                return err;
            }
        }
        match short_repr(entry) {
            Ok(text) => type_error(format!(
                "entries[{index}] must be a (key, item) tuple, got {text}"
            )),
            Err(err) => err,
        }
    }

    /// The entries, their keys' bytes borrowed from the keys (which the
    /// pairs hold) rather than copied into a buffer of the batch's own, and
    /// the items taken here once rather than again for each record: a2 of
    /// `bench core` 12 % faster (median of 15, interleaved).
    fn entries(&self, hasher: &KeyHasher) -> PyResult<Vec<Entry<'_>>> {
        let mut entries = Vec::with_capacity(self.pairs.len());
        for (index, pair) in self.pairs.iter().enumerate() {
            let dedup = check_key(pair.key(), || format!("entries[{index}] key"))?;
            let hash = hasher.hash(dedup.key());
            entries.push(Entry { dedup, hash });
        }
        Ok(entries)
    }
}

/// A query's timeout: as `check_float`, and at most `MAX_TIMEOUT`.
pub(crate) fn check_timeout(py: Python<'_>, timeout: &Bound<'_, PyAny>) -> PyResult<f64> {
    let timeout = check_float("timeout", timeout, false)?;
    if timeout > MAX_TIMEOUT {
        return Err(value_error(format!(
            "timeout must be <= {}, got {}",
            float_repr(py, MAX_TIMEOUT)?,
            float_repr(py, timeout)?
        )));
    }
    Ok(timeout)
}

impl QueryCore {
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, CoreTable> {
        if let Some(guard) = self.inner.try_lock() {
            return guard;
        }
        py.detach(|| self.inner.lock())
    }

    /// `register` with its arguments checked.
    pub(crate) fn register_checked(
        &self,
        py: Python<'_>,
        timeout: f64,
        max_results: u32,
        expected_peers: u32,
        now: f64,
    ) -> QueryId {
        loop {
            // A v4 collision is all but impossible; retry rather than clobber.
            let id = QueryId::random();
            if self
                .lock(py)
                .register(id.value, timeout, max_results, expected_peers, now)
            {
                return id;
            }
        }
    }

    /// `finish(id, now, ALL_PEERS)` for the datagram engine, without the
    /// outcome it would not read (an RPC's one-result query, answered).
    /// `offer_many`'s work, its arguments but `entries` checked already
    /// (`peer` hashable): also the lookup's answerer's (`LookupAnswers`),
    /// with no call through Python.
    pub(crate) fn offer_batch(
        &self,
        py: Python<'_>,
        id: u128,
        peer: &Bound<'_, PyAny>,
        entries: &Bound<'_, PyAny>,
        now: f64,
    ) -> PyResult<BatchStatus> {
        let hint = self.lock(py).locate(id);
        let batch = Batch::check(entries)?;
        let hint = self.lock(py).prefetch_at(id, hint, batch.pairs.len());
        let entries = batch.entries(&self.key_hasher)?;
        let keys = entries.iter().map(|entry| HashedKey {
            key: entry.dedup.key(),
            hash: entry.hash,
        });
        Ok(self.lock(py).offer_many(id, hint, keys, |index, start| {
            let pair = &batch.pairs[index];
            Held::new(&pair.item(), peer, &pair.key(), now - start)
        }))
    }

    /// `peer_done`'s work, its arguments read already (`hash`: the peer's).
    pub(crate) fn peer_done_at(
        &self,
        py: Python<'_>,
        id: u128,
        peer: &Bound<'_, PyAny>,
        hash: isize,
        ok: bool,
    ) -> PyResult<Status> {
        let mut report = PeerReport {
            hash,
            peer: Some(peer.clone().unbind()),
            ok,
        };
        let mut from = 0;
        loop {
            let answer = self.lock(py).peer_done(
                id,
                &mut report,
                from,
                |a, b| a.as_ptr() == b.as_ptr(),
                |a| a.clone_ref(py),
            );
            match answer {
                PeerDone::Status(status) => return Ok(status),
                PeerDone::Compare { candidates, upto } => {
                    // As a set does: stored == new, with the lock released.
                    for candidate in &candidates {
                        if candidate.bind(py).eq(peer)? {
                            return Ok(Status::Duplicate);
                        }
                    }
                    from = upto;
                }
            }
        }
    }

    pub(crate) fn finish_answered(&self, py: Python<'_>, id: u128, now: f64) {
        let ended = self.lock(py).finish(id, now, Some(Reason::AllPeers));
        // (dropped here, the lock released: see the locking rules)
        drop(ended);
    }
}

#[pymethods]
impl QueryCore {
    #[new]
    #[pyo3(signature = (grace = Optional::Missing), text_signature = "(grace=5.0)")]
    fn new(py: Python<'_>, grace: Optional<'_>) -> PyResult<Self> {
        let grace = match grace {
            Optional::Missing => 5.0,
            Optional::Given(value) => {
                let grace = check_float("grace", &value, true)?;
                if grace > MAX_TIMEOUT {
                    return Err(value_error(format!(
                        "grace must be <= {}, got {}",
                        float_repr(value.py(), MAX_TIMEOUT)?,
                        float_repr(value.py(), grace)?
                    )));
                }
                grace
            }
        };
        let table = Table::new(grace);
        Ok(QueryCore {
            grace,
            vocab: vocab(py)?,
            key_hasher: table.key_hasher(),
            inner: Mutex::new(table),
        })
    }

    fn register(
        &self,
        py: Python<'_>,
        timeout: &Bound<'_, PyAny>,
        max_results: &Bound<'_, PyAny>,
        expected_peers: &Bound<'_, PyAny>,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<QueryId> {
        let timeout = check_timeout(py, timeout)?;
        let max_results = check_int("max_results", max_results, 1, MAX_RESULTS_LIMIT)?;
        let expected_peers = check_int("expected_peers", expected_peers, 0, MAX_EXPECTED_PEERS)?;
        let now = check_now(now)?;
        Ok(self.register_checked(py, timeout, max_results, expected_peers, now))
    }

    fn offer(
        &self,
        py: Python<'_>,
        query_id: &Bound<'_, PyAny>,
        peer: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        item: &Bound<'_, PyAny>,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let id = check_qid(query_id)?;
        check_peer(peer)?;
        let key_bytes = check_key(key.as_borrowed(), || "key".to_owned())?;
        let now = check_now(now)?;
        let dedup_key = key_bytes.key();
        let hash = self.key_hasher.hash(dedup_key);
        // Decided (and counted) without a record if it will not be taken;
        // otherwise the record is built unlocked, then offered.
        let start = match self.lock(py).offer_check(id, dedup_key, hash) {
            Ok(start) => start,
            Err(status) => return Ok(self.vocab.status(py, status)),
        };
        let mut record = Some(Held::new(item, peer, key, now - start));
        let status = self.lock(py).offer(id, dedup_key, hash, &mut record);
        drop(record);
        Ok(self.vocab.status(py, status))
    }

    fn offer_many<'py>(
        &self,
        py: Python<'py>,
        query_id: &Bound<'py, PyAny>,
        peer: &Bound<'py, PyAny>,
        entries: &Bound<'py, PyAny>,
        now: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let id = check_qid(query_id)?;
        check_peer(peer)?;
        let now = check_now(now)?;
        let answer = self.offer_batch(py, id, peer, entries, now)?;
        self.vocab.batch_status(py, answer)
    }

    fn peer_done(
        &self,
        py: Python<'_>,
        query_id: &Bound<'_, PyAny>,
        peer: &Bound<'_, PyAny>,
        ok: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let id = check_qid(query_id)?;
        let hash = check_peer(peer)?;
        let Ok(ok) = ok.cast_exact::<PyBool>() else {
            return Err(type_error(format!(
                "ok must be a bool, got {}",
                type_name(ok)
            )));
        };
        let status = self.peer_done_at(py, id, peer, hash, ok.is_true())?;
        Ok(self.vocab.status(py, status))
    }

    /// What the core knows of `query_id` (a `QueryState`), counting nothing.
    fn state(&self, py: Python<'_>, query_id: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let id = check_qid(query_id)?;
        let state = self.lock(py).state(id);
        Ok(self.vocab.state(py, state))
    }

    fn drain<'py>(
        &self,
        py: Python<'py>,
        query_id: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let id = check_qid(query_id)?;
        let buffer = self.lock(py).buffer(id);
        match buffer {
            Some(buffer) => PyList::new(py, buffer.drain()),
            None => Ok(PyList::empty(py)),
        }
    }

    #[pyo3(signature = (query_id, now, reason = None))]
    fn finish<'py>(
        &self,
        py: Python<'py>,
        query_id: &Bound<'py, PyAny>,
        now: &Bound<'py, PyAny>,
        reason: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let id = check_qid(query_id)?;
        let now = check_now(now)?;
        let reason = check_reason(self.vocab, reason)?;
        let answer = self.lock(py).finish(id, now, reason);
        match answer {
            Ok(None) => Ok(None),
            Ok(Some(ended)) => outcome(py, self.vocab, ended, Some(query_id)).map(Some),
            Err(state) => Err(value_error(format!(
                "reason is required: query {} is not complete \
                 ({}/{} results, {}/{} peers done)",
                QueryId { value: id }.hyphenated(),
                state.accepted,
                state.max_results,
                state.peers_done,
                state.expected_peers
            ))),
        }
    }

    fn cancel<'py>(
        &self,
        py: Python<'py>,
        query_id: &Bound<'py, PyAny>,
        now: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let id = check_qid(query_id)?;
        let now = check_now(now)?;
        let ended = self.lock(py).cancel(id, now);
        ended
            .map(|ended| outcome(py, self.vocab, ended, Some(query_id)))
            .transpose()
    }

    fn expire<'py>(
        &self,
        py: Python<'py>,
        now: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let now = check_now(now)?;
        let ended = self.lock(py).expire(now);
        let mut outcomes = Vec::with_capacity(ended.len());
        let mut error = None;
        for one in ended {
            // Build every outcome even after an error, so nothing is lost
            // half-way; report the first error.
            match outcome(py, self.vocab, one, None) {
                Ok(tuple) => outcomes.push(tuple),
                Err(err) => {
                    error.get_or_insert(err);
                }
            }
        }
        match error {
            Some(err) => Err(err),
            None => PyList::new(py, outcomes),
        }
    }

    fn next_deadline(&self, py: Python<'_>) -> Option<f64> {
        self.lock(py).next_deadline()
    }

    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let counters = self.lock(py).counters();
        self.vocab.counters(py, &counters)
    }

    fn latency<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let summary = self.lock(py).latency();
        self.vocab.latency(py, &summary)
    }

    #[getter]
    fn in_flight(&self, py: Python<'_>) -> usize {
        self.lock(py).in_flight()
    }

    #[getter]
    fn tombstones(&self, py: Python<'_>) -> usize {
        self.lock(py).tombstones()
    }

    #[getter]
    fn timers(&self, py: Python<'_>) -> usize {
        self.lock(py).timers()
    }

    #[getter]
    fn grace(&self) -> f64 {
        self.grace
    }
}
