//! `FairShare`: which requests an overloaded node sheds (`dhtquery.dht.
//! fairness` says why and how; the pure-Python twin is
//! `_core_py.FairShare`, with the same answers). In the core so that the
//! `DatagramEngine` admits a request it answers without a Python call: the
//! twin's `admit` from the engine was a method call, a deque append and a
//! `Counter` update when warm (`Counter.__setitem__` alone ~1.4 k
//! instructions, callgrind). The load (`queued()`, a Python callable) is
//! still read once every `check_every` requests and before a shed.
//! (timeit, medians of 5 runs of 200,000 admits from 20 sources, the same
//! hour: `admit` called from Python, the twin's -> this one: 147 -> 79 ns
//! while the node keeps up, 992 -> 134 ns with the queue warm; a
//! `find_values` served by the Rust engine, `receive_at`: 735 -> 617 ns
//! cold, 1,471 -> 545 ns warm, ~450 ns with no fair share. Callgrind, the
//! fair share's instructions a `find_values` served, over the engine's
//! own: 1.72 k -> 0.09 k cold, 6.13 k -> 0.36 k warm.)
//!
//! The window keeps each request's source as the slot of its count (a
//! source with a request in the window has a count, so its slot is live):
//! a request counted is one lookup of its source, by Python's hash and
//! equality as the twin's `Counter` keys it.

use crate::errors::value_error;
use crate::peers::{hash_of, OrderedTable};
use pyo3::prelude::*;
use std::collections::VecDeque;

#[pyclass(module = "dhtquery._core", name = "FairShare")]
pub struct FairShare {
    queued: Py<PyAny>,
    mark: i64,
    /// source -> its requests in the window
    counts: OrderedTable<u32>,
    /// the window's requests, oldest first: their sources' slots in `counts`
    recent: VecDeque<u32>,
    window: usize,
    factor: f64,
    floor: i64,
    check_every: i64,
    since_check: i64,
    warm: bool,
    under_load: bool,
    /// requests shed so far
    #[pyo3(get, set)]
    shed: u64,
}

impl FairShare {
    /// `admit`'s work (the engine calls it directly).
    pub(crate) fn admit_source(&mut self, source: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.since_check += 1;
        if self.since_check >= self.check_every {
            self.look(source.py())?;
        }
        if !self.warm {
            return Ok(true);
        }
        let hash = hash_of(source)?;
        let slot = match self.counts.find(source, hash)? {
            Some(slot) => {
                *self.counts.value_mut(slot) += 1;
                slot
            }
            None => self.counts.insert(source, hash, 1),
        };
        self.recent.push_back(slot);
        if self.recent.len() > self.window {
            let oldest = self.recent.pop_front().expect("a request in the window");
            let left = self.counts.value_mut(oldest);
            *left -= 1;
            if *left == 0 {
                self.counts.remove(oldest);
            }
        }
        if !self.under_load {
            return Ok(true);
        }
        let sent = *self.counts.value(slot);
        #[allow(
            clippy::cast_precision_loss,
            reason = "counts and lengths below 2**32: exact in an f64"
        )]
        let share = self.factor * self.recent.len() as f64 / self.counts.len() as f64;
        if i64::from(sent) <= self.floor || f64::from(sent) <= share {
            return Ok(true);
        }
        if self.since_check != 0 {
            // About to shed on a look up to check_every requests old: look
            // again, or a source would be refused after the queue drained.
            self.look(source.py())?;
            if !self.under_load {
                return Ok(true);
            }
        }
        self.shed += 1;
        Ok(false)
    }

    fn look(&mut self, py: Python<'_>) -> PyResult<()> {
        self.since_check = 0;
        let queued: i64 = self.queued.bind(py).call0()?.extract()?;
        self.under_load = queued > self.mark;
        let warm = queued.saturating_mul(2) > self.mark;
        if self.warm && !warm {
            // cooled down: the next warm-up counts afresh
            self.recent.clear();
            self.counts = OrderedTable::new();
        }
        self.warm = warm;
        Ok(())
    }
}

#[pymethods]
impl FairShare {
    #[new]
    #[pyo3(signature = (queued, mark, *, window = 1024, factor = 1.5, floor = 64, check_every = 32))]
    fn new(
        queued: &Bound<'_, PyAny>,
        mark: i64,
        window: i64,
        factor: f64,
        floor: i64,
        check_every: i64,
    ) -> PyResult<Self> {
        // (factor's test as the twin's: a NaN passes both)
        if window < 1 || check_every < 1 || factor <= 0.0 || floor < 0 || mark < 0 {
            return Err(value_error(format!(
                "window ({window}) and check_every ({check_every}) must be >= 1, \
                 factor ({factor:?}) > 0, floor ({floor}) and mark ({mark}) >= 0"
            )));
        }
        Ok(FairShare {
            queued: queued.clone().unbind(),
            mark,
            counts: OrderedTable::new(),
            recent: VecDeque::new(),
            window: usize::try_from(window).unwrap_or(usize::MAX),
            factor,
            floor,
            check_every,
            since_check: check_every, // look at the first request
            warm: false,
            under_load: false,
            shed: 0,
        })
    }

    /// Count a request from `source`; False if it is to be shed.
    fn admit(&mut self, source: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.admit_source(source)
    }

    /// Whether the last look found the node overloaded.
    #[getter]
    fn under_load(&self) -> bool {
        self.under_load
    }

    /// `source`'s fraction of the window's requests.
    fn share(&self, source: &Bound<'_, PyAny>) -> PyResult<f64> {
        if self.recent.is_empty() {
            return Ok(0.0);
        }
        let sent = match self.counts.find(source, hash_of(source)?)? {
            Some(slot) => *self.counts.value(slot),
            None => 0,
        };
        #[allow(clippy::cast_precision_loss, reason = "a length below 2**32")]
        Ok(f64::from(sent) / self.recent.len() as f64)
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.queued)
    }
}
