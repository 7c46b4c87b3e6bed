//! The Python objects of `dhtquery.query.types` that the core returns: the
//! `SubmitStatus`, `Reason` and `QueryState` members and the `NamedTuple`
//! classes. The module is imported when `dhtquery._core` loads (as
//! `dhtquery.errors` is, for the exception classes), checked against the
//! Rust enums, and cached for the life of the process.
//!
//! A `NamedTuple` instance is built as `tuple.__new__(cls, values)` does it
//! (the Python twin's `_new_outcome`), through tuple's own `tp_new`: the
//! class's Python-level `__new__` is not called, and no `tuple.__new__`
//! wrapper either.
//!
//! `BatchStatus` values of batches of up to `SHARED_BATCH` entries are
//! shared: each is built on first use and returned again for an equal
//! answer (a tuple is immutable, like a small int; the twin builds a new one
//! each time, and only `is` could tell).

use crate::types::{
    BatchStatus, Counters, LatencySummary, QueryState, Reason, Status, MAX_EXPECTED_PEERS, MAX_NOW,
    MAX_RESULTS_LIMIT, MAX_TIMEOUT,
};
use pyo3::exceptions::PyImportError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{ffi, IntoPyObjectExt};

const MODULE: &str = "dhtquery.query.types";

static VOCAB: PyOnceLock<Vocab> = PyOnceLock::new();

/// Batches of at most this many entries (k = 20 of a Kademlia response
/// fits) get a shared `BatchStatus`; a larger one is built per call.
const SHARED_BATCH: usize = 32;
/// Shared `BatchStatus` values per status: one per (accepted, duplicates)
/// with accepted + duplicates <= `SHARED_BATCH`.
const SHARED_PER_STATUS: usize = (SHARED_BATCH + 1) * (SHARED_BATCH + 2) / 2;

/// Where the shared `BatchStatus` of `batch` is, if it is one.
fn shared_index(batch: BatchStatus) -> Option<usize> {
    let accepted = usize::try_from(batch.accepted).ok()?;
    let entries = accepted.checked_add(usize::try_from(batch.duplicates).ok()?)?;
    if entries > SHARED_BATCH {
        return None;
    }
    // The (accepted, duplicates) pairs of `entries` entries come after the
    // entries * (entries + 1) / 2 pairs of fewer.
    Some(batch.status as usize * SHARED_PER_STATUS + entries * (entries + 1) / 2 + accepted)
}

pub struct Vocab {
    statuses: [Py<PyAny>; 6],
    reasons: [Py<PyAny>; 5],
    states: [Py<PyAny>; 3],
    reason_type: Py<PyType>,
    batch_status: Py<PyType>,
    core_outcome: Py<PyType>,
    counters: Py<PyType>,
    latency: Py<PyType>,
    /// The shared `BatchStatus` values, by `shared_index`, built on first use.
    batch_statuses: Box<[PyOnceLock<Py<PyTuple>>]>,
    /// `tuple`'s `tp_new` slot.
    tuple_new: ffi::newfunc,
}

/// The cached vocabulary, imported on first use (`dhtquery._core`'s init
/// makes that first use, so a broken `types` module fails the import).
///
/// # Errors
/// If `dhtquery.query.types` cannot be imported or does not match the Rust
/// enums and limits.
pub fn vocab(py: Python<'_>) -> PyResult<&'static Vocab> {
    VOCAB.get_or_try_init(py, || Vocab::import(py))
}

fn mismatch(what: &str) -> PyErr {
    PyImportError::new_err(format!(
        "dhtquery._core does not match {MODULE}: {what} differs"
    ))
}

/// `owner.<name>`, checked to equal `expected` (an int value or a str).
fn member<'py, T>(owner: &Bound<'py, PyAny>, name: &str, expected: T) -> PyResult<Py<PyAny>>
where
    T: IntoPyObject<'py>,
{
    let value = owner.getattr(name)?;
    if !value.eq(expected)? {
        return Err(mismatch(&format!("{name}'s value")));
    }
    Ok(value.unbind())
}

fn named_tuple(module: &Bound<'_, PyModule>, name: &str, fields: &[&str]) -> PyResult<Py<PyType>> {
    let py = module.py();
    let class = module.getattr(name)?.cast_into::<PyType>()?;
    // tuple's tp_new may only build subtypes of tuple.
    if !class.is_subclass(&py.get_type::<PyTuple>())? {
        return Err(mismatch(&format!("{name} (not a tuple)")));
    }
    if !class.getattr("_fields")?.eq(PyTuple::new(py, fields)?)? {
        return Err(mismatch(&format!("{name}'s fields")));
    }
    Ok(class.unbind())
}

impl Vocab {
    fn import(py: Python<'_>) -> PyResult<Vocab> {
        let module = py.import(MODULE)?;
        let submit = module.getattr("SubmitStatus")?;
        let reason = module.getattr("Reason")?;
        let state = module.getattr("QueryState")?;
        let limits: [(&str, Bound<'_, PyAny>); 4] = [
            ("MAX_TIMEOUT", MAX_TIMEOUT.into_bound_py_any(py)?),
            (
                "MAX_RESULTS_LIMIT",
                MAX_RESULTS_LIMIT.into_bound_py_any(py)?,
            ),
            (
                "MAX_EXPECTED_PEERS",
                MAX_EXPECTED_PEERS.into_bound_py_any(py)?,
            ),
            ("MAX_NOW", MAX_NOW.into_bound_py_any(py)?),
        ];
        for (name, value) in limits {
            member(module.as_any(), name, value)?;
        }
        let finish = module.getattr("FINISH_REASONS")?;
        let finish_values = Reason::FINISH.map(Reason::value);
        if !finish.eq(PyTuple::new(py, finish_values)?)? {
            return Err(mismatch("FINISH_REASONS"));
        }
        let tuple_type = py.get_type::<PyTuple>();
        // SAFETY: PyType_GetSlot on a static type (tuple), allowed by the
        // limited API since 3.10; the slot of tuple is always set.
        let slot = unsafe { ffi::PyType_GetSlot(tuple_type.as_ptr().cast(), ffi::Py_tp_new) };
        if slot.is_null() {
            return Err(mismatch("tuple's tp_new"));
        }
        // SAFETY: the Py_tp_new slot holds a `newfunc`.
        let tuple_new = unsafe { std::mem::transmute::<*mut std::ffi::c_void, ffi::newfunc>(slot) };
        Ok(Vocab {
            statuses: try_map(Status::ALL, |s| member(&submit, s.name(), s as u8))?,
            reasons: try_map(Reason::ALL, |r| member(&reason, r.name(), r.value()))?,
            states: try_map(QueryState::ALL, |s| member(&state, s.name(), s as u8))?,
            reason_type: reason.cast_into::<PyType>()?.unbind(),
            batch_status: named_tuple(
                &module,
                "BatchStatus",
                &["status", "accepted", "duplicates"],
            )?,
            core_outcome: named_tuple(
                &module,
                "CoreOutcome",
                &[
                    "query_id",
                    "reason",
                    "results",
                    "duration",
                    "peers_ok",
                    "peers_failed",
                    "duplicates",
                ],
            )?,
            counters: named_tuple(
                &module,
                "Counters",
                &[
                    "total",
                    "successful",
                    "timed_out",
                    "cancelled",
                    "in_flight",
                    "results",
                    "duplicates",
                    "late",
                    "unknown",
                    "overflow",
                ],
            )?,
            latency: named_tuple(&module, "Latency", &["samples", "p50", "p95", "p99", "max"])?,
            batch_statuses: (0..Status::ALL.len() * SHARED_PER_STATUS)
                .map(|_| PyOnceLock::new())
                .collect(),
            tuple_new,
        })
    }

    /// The `SubmitStatus` member.
    #[must_use]
    pub fn status(&self, py: Python<'_>, status: Status) -> Py<PyAny> {
        self.statuses[status as usize].clone_ref(py)
    }

    /// The `Reason` member.
    #[must_use]
    pub fn reason<'py>(&self, py: Python<'py>, reason: Reason) -> &Bound<'py, PyAny> {
        self.reasons[reason as usize].bind(py)
    }

    /// The `QueryState` member.
    #[must_use]
    pub fn state(&self, py: Python<'_>, state: QueryState) -> Py<PyAny> {
        self.states[state as usize].clone_ref(py)
    }

    /// `reason` as a finish reason: a plain str (the fast path) or a
    /// `Reason` member (by identity), else anything equal to one of
    /// `FINISH_REASONS`, as `reason in FINISH_REASONS` decides it. None if it
    /// is none of them.
    ///
    /// # Errors
    /// If an `__eq__` raises.
    pub fn finish_reason(&self, reason: &Bound<'_, PyAny>) -> PyResult<Option<Reason>> {
        if let Ok(text) = reason.cast_exact::<PyString>() {
            let text = text.to_str().unwrap_or("");
            return Ok(Reason::FINISH.into_iter().find(|r| r.value() == text));
        }
        let py = reason.py();
        if reason.get_type().is(&self.reason_type) {
            return Ok(Reason::FINISH
                .into_iter()
                .find(|&r| self.reason(py, r).is(reason)));
        }
        for found in Reason::FINISH {
            let member = self.reason(py, found);
            if member.is(reason) || member.eq(reason)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// `cls` built from `values` as `tuple.__new__(cls, values)` would.
    fn build<'py>(
        &self,
        cls: &Py<PyType>,
        values: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        self.subtuple(cls.bind(values.py()), values)
    }

    /// An instance of `cls`, a subclass of tuple (else a `TypeError`),
    /// built from `values` as `tuple.__new__(cls, values)` builds it, with
    /// tuple's `tp_new` called directly: no `tuple.__new__` wrapper and
    /// its argument checks (the RPC table's entries: callgrind, `bench
    /// profile --sockets`, see `Requests::open_one`).
    ///
    /// # Errors
    /// If Python cannot allocate it.
    pub fn subtuple<'py>(
        &self,
        cls: &Bound<'py, PyType>,
        values: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let py = values.py();
        // (tuple's tp_new fills what it allocates as a tuple: a class that is
        // not a subclass of tuple is refused, as `tuple.__new__` refuses it;
        // one read of the type's flags)
        // SAFETY: `cls` is a live type object.
        let flags = unsafe { ffi::PyType_GetFlags(cls.as_ptr().cast()) };
        if flags & ffi::Py_TPFLAGS_TUPLE_SUBCLASS == 0 {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{} is not a subtype of tuple",
                cls.name()?
            )));
        }
        let args = PyTuple::new(py, [values])?;
        // SAFETY: tuple's tp_new, called with a subtype of tuple (checked at
        // import, or by the caller), a 1-tuple of arguments and no keywords,
        // as `tuple.__new__(cls, values)` calls it; it returns a new
        // reference or NULL with an exception set.
        let built = unsafe {
            let object = (self.tuple_new)(cls.as_ptr().cast(), args.as_ptr(), std::ptr::null_mut());
            Bound::from_owned_ptr_or_err(py, object)?
        };
        // SAFETY: an instance of cls, a subtype of tuple.
        Ok(unsafe { built.cast_into_unchecked::<PyTuple>() })
    }

    /// A `BatchStatus`: the shared one for a batch of up to `SHARED_BATCH`
    /// entries: three allocations and their frees a call fewer (a2 of
    /// `bench core`, interleaved with the per-call build: 208.9 -> 183.0
    /// ns/offer, median of 11).
    ///
    /// # Errors
    /// If Python cannot allocate it.
    pub fn batch_status<'py>(
        &self,
        py: Python<'py>,
        batch: BatchStatus,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let Some(index) = shared_index(batch) else {
            return self.new_batch_status(py, batch);
        };
        let shared = self.batch_statuses[index]
            .get_or_try_init(py, || self.new_batch_status(py, batch).map(Bound::unbind))?;
        Ok(shared.bind(py).clone())
    }

    fn new_batch_status<'py>(
        &self,
        py: Python<'py>,
        batch: BatchStatus,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let values = (
            self.statuses[batch.status as usize].bind(py),
            batch.accepted,
            batch.duplicates,
        )
            .into_pyobject(py)?;
        self.build(&self.batch_status, values)
    }

    /// A `CoreOutcome` from its fields' values, in order.
    ///
    /// # Errors
    /// If Python cannot allocate it.
    pub fn core_outcome<'py>(&self, values: Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyTuple>> {
        debug_assert_eq!(values.len(), 7, "CoreOutcome has 7 fields");
        self.build(&self.core_outcome, values)
    }

    /// A `Counters`.
    ///
    /// # Errors
    /// If Python cannot allocate it.
    pub fn counters<'py>(&self, py: Python<'py>, c: &Counters) -> PyResult<Bound<'py, PyTuple>> {
        let values = (
            c.total,
            c.successful,
            c.timed_out,
            c.cancelled,
            c.in_flight,
            c.results,
            c.duplicates,
            c.late,
            c.unknown,
            c.overflow,
        )
            .into_pyobject(py)?;
        self.build(&self.counters, values)
    }

    /// A `Latency`.
    ///
    /// # Errors
    /// If Python cannot allocate it.
    pub fn latency<'py>(
        &self,
        py: Python<'py>,
        l: &LatencySummary,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let values = (l.samples, l.p50, l.p95, l.p99, l.max).into_pyobject(py)?;
        self.build(&self.latency, values)
    }
}

/// `items.map(f)`, stopping at the first error.
fn try_map<T: Copy, U, const N: usize>(
    items: [T; N],
    mut f: impl FnMut(T) -> PyResult<U>,
) -> PyResult<[U; N]> {
    let mut out = Vec::with_capacity(N);
    for item in items {
        out.push(f(item)?);
    }
    Ok(out
        .try_into()
        .unwrap_or_else(|_| unreachable!("N items in, N out")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_index_is_one_slot_per_batch_status_up_to_shared_batch() {
        let mut seen = vec![false; Status::ALL.len() * SHARED_PER_STATUS];
        for status in Status::ALL {
            for accepted in 0..=SHARED_BATCH as u64 {
                for duplicates in 0..=SHARED_BATCH as u64 - accepted {
                    let batch = BatchStatus {
                        status,
                        accepted,
                        duplicates,
                    };
                    let index = shared_index(batch).expect("a shared batch size");
                    assert!(!seen[index], "{index} taken twice");
                    seen[index] = true;
                }
            }
        }
        assert!(seen.iter().all(|&taken| taken));
        let larger = BatchStatus {
            status: Status::New,
            accepted: 1,
            duplicates: SHARED_BATCH as u64,
        };
        assert_eq!(shared_index(larger), None);
        let huge = BatchStatus {
            status: Status::New,
            accepted: u64::MAX,
            duplicates: 1,
        };
        assert_eq!(shared_index(huge), None);
    }
}
