//! `LookupAnswers`: the callback of a streaming lookup's requests
//! (`dhtquery.dht.lookup`), so that the common answer (a `find_values`
//! dict whose records were all verified before) is read and counted in one
//! native call from the protocol's `datagram_received`: its records taken
//! from the `RecordCache`, the peer's reputation told, the records offered
//! to the query and the peer done in the query core, the lookup's core told
//! and its counters kept. Python is called back only for what it must do:
//! wake the query's streams (`handle.wake()`), end the query
//! (`finish(query_id, None)`, the manager's), welcome a peer learnt from an
//! answer or act on the step (`lookup._answered_then`; with an `Asker`, the
//! step ASK's asks are sent from here, `lookup._welcome` called first for
//! a peer learnt from an answer: see `asker.rs`), and every other
//! answer (`lookup._answered`: not ok, after the end, not a `find_values`
//! dict, records to check in full), which reads the records and hands them
//! back to `settle`. `_core_py.LookupAnswers` is the reference.
//!
//! Why a callable and not a method the lookup calls: the lookup's
//! `_answered` frame was most of an answer's cost (with `submit_answer`'s
//! and six native calls' argument parsing): see README.md, "Client CPU per
//! lookup". It holds the lookup, which does not hold it (no reference
//! cycle: the requests' entries hold it, as they held the lookup's bound
//! method).

use crate::asker::Asker;
use crate::errors::{check_peer, type_error, type_name};
use crate::holder::HolderAnswer;
use crate::lookup::LookupCore;
use crate::lookup::{steps_ask, steps_quorum};
use crate::peers::PeerBook;
use crate::query_core::QueryCore;
use crate::query_id::QueryId;
use crate::records::RecordCache;
use crate::types::{Reason, Status};
use crate::vocab::vocab;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString, PyTuple};

/// The node's `RecordCache` (read in place), or any object with its `take`.
enum Cache {
    Native(Py<RecordCache>),
    Method(Py<PyAny>),
}

/// The node's `PeerBook` (written in place), or any object with `provided`.
enum Book {
    Native(Py<PeerBook>),
    Method(Py<PyAny>),
}

#[pyclass(frozen, module = "dhtquery._core", name = "LookupAnswers")]
pub struct LookupAnswers {
    lookup: Py<PyAny>,
    core: Py<LookupCore>,
    handle: Py<PyAny>,
    ended: Py<PyAny>,
    query_id: Py<QueryId>,
    id: u128,
    key: Py<PyBytes>,
    latest: Py<PyDict>,
    queries: Py<QueryCore>,
    now: Py<PyAny>,
    finish: Py<PyAny>,
    cache: Cache,
    book: Book,
    asking: Option<Asking>,
}

/// What sends an answer's asks from the core: the protocol's `Asker`, the
/// lookup's request bodies (by RPC name, the dict the lookup adds to) and
/// its budget (`rpc_timeout`).
struct Asking {
    asker: Py<Asker>,
    bodies: Py<PyDict>,
    budget: Py<PyAny>,
}

pub(crate) fn exact<'py, T: pyo3::PyTypeInfo>(
    value: &Bound<'py, PyAny>,
    name: &str,
    what: &str,
) -> PyResult<Bound<'py, T>> {
    match value.cast_exact::<T>() {
        Ok(value) => Ok(value.clone()),
        Err(_) => Err(type_error(format!(
            "{name} must be {what}, got {}",
            type_name(value)
        ))),
    }
}

pub(crate) fn callable(value: Bound<'_, PyAny>, name: &str) -> PyResult<Py<PyAny>> {
    if !value.is_callable() {
        return Err(type_error(format!(
            "{name} must be callable, got {}",
            type_name(&value)
        )));
    }
    Ok(value.unbind())
}

/// A request's answer, as its callback is given it: `(context, address,
/// name, ok, value)`.
pub(crate) struct Reply<'a, 'py> {
    pub context: &'a Bound<'py, PyAny>,
    pub address: &'a Bound<'py, PyAny>,
    pub name: &'a Bound<'py, PyAny>,
    pub ok: &'a Bound<'py, PyAny>,
    pub value: &'a Bound<'py, PyAny>,
}

impl LookupAnswers {
    /// The lookup's handle (its `_requests` counted by the `Asker`).
    pub(crate) fn handle<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.handle.bind(py)
    }

    /// A request's answer (see `__call__`).
    pub(crate) fn answer_to(slf: &Bound<'_, Self>, reply: &Reply<'_, '_>) -> PyResult<()> {
        let Reply {
            context,
            address,
            name,
            ok,
            value,
        } = *reply;
        let py = slf.py();
        let this = slf.get();
        let common = ok.is(PyBool::new(py, true)) && is_find_values(name);
        let Ok(answer) = value.cast_exact::<PyDict>() else {
            return Self::hand_over(slf, reply);
        };
        if !common || this.ended.bind(py).call0()?.is_truthy()? {
            return Self::hand_over(slf, reply);
        }
        let records = match answer.get_item(intern!(py, "records"))? {
            None => PyList::empty(py).into_any(),
            Some(raws) => {
                let (records, taken) = this.take(py, &raws, address)?;
                if taken != raws.len()? {
                    // Some to check in full: Python's (it takes the
                    // verified ones again, to the same effect: `take`
                    // notes in `latest` only what it returns).
                    return Self::hand_over(slf, reply);
                }
                records
            }
        };
        let contacts = match answer.get_item(intern!(py, "nodes"))? {
            Some(contacts) => contacts,
            None => PyTuple::empty(py).into_any(),
        };
        Self::settle(slf, context, address, &records, &contacts)
    }

    /// `answer_to` for an answer the engine read in place (`holder.rs`; the
    /// value a dict, its `records` a list, its `nodes` empty: `ok` True),
    /// its records taken from the native `RecordCache` as bytes: the same
    /// calls, in the same order, with the same records (each keyed by the
    /// signature the cache kept, an equal `bytes`). `decode` gives the
    /// body's value for any other way on (the cache not native, the answer
    /// not the common one, a record left to check in full), which goes on
    /// as before from the point reached (`take_wire` stops where `take`
    /// would have, with `wall()` called and `latest` noted alike, so the
    /// lookup's `_answered` is handed the same state): such a body is read
    /// twice, in place then decoded (~0.4 k instructions a record more
    /// than before, callgrind). (Instructions per `get_all`: see
    /// `DatagramEngine::receive_one`.)
    pub(crate) fn answer_holder<'py>(
        slf: &Bound<'py, Self>,
        context: &Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
        name: &Bound<'py, PyAny>,
        holder: &HolderAnswer<'_>,
        decode: impl Fn() -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let ok = PyBool::new(py, true);
        // The answer as it came, to `to` (`answer_to` or `hand_over`).
        let whole = |to: fn(&Bound<'py, Self>, &Reply<'_, 'py>) -> PyResult<()>| {
            let value = decode()?;
            let reply = Reply {
                context,
                address,
                name,
                ok: ok.as_any(),
                value: &value,
            };
            to(slf, &reply)
        };
        // (another cache's `take` reads the records as objects: all of it
        // as before, nothing done yet)
        let Cache::Native(cache) = &this.cache else {
            return whole(Self::answer_to);
        };
        if !is_find_values(name) || this.ended.bind(py).call0()?.is_truthy()? {
            return whole(Self::hand_over);
        }
        let (records, taken) = cache.bind(py).borrow().take_wire(
            py,
            holder.records(),
            holder.len(),
            this.key.bind(py),
            this.latest.bind(py),
            address,
        )?;
        if taken != holder.len() {
            // (as `answer_to`: `latest` noted only for those taken)
            return whole(Self::hand_over);
        }
        // (`nodes` empty: falsy, as the decoded empty list)
        Self::settle(
            slf,
            context,
            address,
            records.as_any(),
            PyTuple::empty(py).as_any(),
        )
    }

    /// Step ASK with `asks` (not empty): the peer of an answer welcomed
    /// first if learnt from an answer (`welcome`: `lookup._welcome`,
    /// Python's), then the asks sent by the `Asker` (no Python frame), or
    /// by the lookup's `_act` if the asker leaves them to Python; a stock
    /// peer's asks whose body is not packed yet by `lookup._ask_stock`.
    fn ask(
        slf: &Bound<'_, Self>,
        asking: &Asking,
        welcome: Option<&Bound<'_, PyAny>>,
        depth: u32,
        step: &Bound<'_, PyAny>,
        asks: &Bound<'_, PyList>,
    ) -> PyResult<()> {
        let py = slf.py();
        let lookup = slf.get().lookup.bind(py);
        if let Some(ask) = welcome {
            lookup.call_method1(intern!(py, "_welcome"), (ask,))?;
        }
        let asked = asking.asker.get().ask_for(
            slf,
            asks,
            asking.bodies.bind(py),
            asking.budget.bind(py),
        )?;
        match asked {
            None => {
                lookup.call_method1(intern!(py, "_act"), (slf, step, depth, asks))?;
            }
            Some(asked) if asked < asks.len() => {
                let rest = asks.get_slice(asked, asks.len());
                lookup.call_method1(intern!(py, "_ask_stock"), (slf, rest))?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// The answer to Python's `lookup._answered`, as it came.
    fn hand_over(slf: &Bound<'_, Self>, reply: &Reply<'_, '_>) -> PyResult<()> {
        let py = slf.py();
        slf.get().lookup.bind(py).call_method1(
            intern!(py, "_answered"),
            (
                slf,
                reply.context,
                reply.address,
                reply.name,
                reply.ok,
                reply.value,
            ),
        )?;
        Ok(())
    }

    fn take<'py>(
        &self,
        py: Python<'py>,
        raws: &Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, usize)> {
        let key = self.key.bind(py).as_any();
        let latest = self.latest.bind(py).as_any();
        match &self.cache {
            Cache::Native(cache) => {
                let (records, taken) = cache
                    .bind(py)
                    .borrow()
                    .take(py, raws, key, latest, address)?;
                Ok((records.into_any(), taken))
            }
            Cache::Method(take) => {
                let answer = take.bind(py).call1((raws, key, latest, address))?;
                answer.extract()
            }
        }
    }
}

#[pymethods]
impl LookupAnswers {
    #[new]
    #[pyo3(signature = (lookup, core, handle, key, latest, shared, asking=None))]
    fn new(
        lookup: &Bound<'_, PyAny>,
        core: &Bound<'_, PyAny>,
        handle: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        latest: &Bound<'_, PyAny>,
        shared: &Bound<'_, PyAny>,
        asking: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let py = lookup.py();
        let core = exact::<LookupCore>(core, "core", "a LookupCore of this core")?;
        let key = exact::<PyBytes>(key, "key", "bytes")?;
        let latest = exact::<PyDict>(latest, "latest", "a dict")?;
        let query_id = handle.getattr(intern!(py, "id"))?;
        let query_id = exact::<QueryId>(&query_id, "handle.id", "a QueryId of this core")?;
        let ended = callable(handle.getattr(intern!(py, "ended"))?, "handle.ended")?;
        let wrong = || {
            type_error(format!(
                "shared must be a (queries, now, finish, cache, book) tuple, got {}",
                type_name(shared)
            ))
        };
        let Ok(parts) = shared.cast_exact::<PyTuple>() else {
            return Err(wrong());
        };
        if parts.len() != 5 {
            return Err(wrong());
        }
        let queries =
            exact::<QueryCore>(&parts.get_item(0)?, "queries", "a QueryCore of this core")?;
        let now = callable(parts.get_item(1)?, "now")?;
        let finish = callable(parts.get_item(2)?, "finish")?;
        let cache = parts.get_item(3)?;
        let cache = match cache.cast_exact::<RecordCache>() {
            Ok(cache) => Cache::Native(cache.clone().unbind()),
            Err(_) => Cache::Method(callable(cache.getattr("take")?, "cache.take")?),
        };
        let book = parts.get_item(4)?;
        let book = match book.cast_exact::<PeerBook>() {
            Ok(book) => Book::Native(book.clone().unbind()),
            Err(_) => Book::Method(callable(book.getattr("provided")?, "book.provided")?),
        };
        let asking = match asking {
            Some(asking) if !asking.is_none() => Some(read_asking(asking)?),
            _ => None,
        };
        Ok(LookupAnswers {
            lookup: lookup.clone().unbind(),
            core: core.unbind(),
            handle: handle.clone().unbind(),
            ended,
            id: query_id.get().value,
            query_id: query_id.unbind(),
            key: key.unbind(),
            latest: latest.unbind(),
            queries: queries.unbind(),
            now,
            finish,
            cache,
            book,
            asking,
        })
    }

    /// A request's answer (the protocol's callback: `(context, address,
    /// name, ok, value)`, the context the ask `(node id, address)`). The
    /// requests are given this object: the RPC table's engine hands it the
    /// common answer itself (`DatagramEngine.dispatch_answers`), with no
    /// Python call; the protocol calls it with any other.
    fn __call__(
        slf: &Bound<'_, Self>,
        context: &Bound<'_, PyAny>,
        address: &Bound<'_, PyAny>,
        name: &Bound<'_, PyAny>,
        ok: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let reply = Reply {
            context,
            address,
            name,
            ok,
            value,
        };
        Self::answer_to(slf, &reply)
    }

    /// An answer's records (`(dedup key, record)` pairs) and contacts, read:
    /// the rest of its handling (see the module's docs).
    fn settle(
        slf: &Bound<'_, Self>,
        ask: &Bound<'_, PyAny>,
        address: &Bound<'_, PyAny>,
        records: &Bound<'_, PyAny>,
        contacts: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let node_id = ask.get_item(0)?;
        let count = records.len()?;
        if count > 0 {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            match &this.book {
                Book::Native(book) => book.bind(py).borrow_mut().provided(address, count)?,
                Book::Method(provided) => {
                    provided.bind(py).call1((address, count))?;
                }
            }
        }
        // QueryManager.submit_answer's work: the records offered, the
        // streams woken if some were new, the query ended if complete;
        // then the peer done (ok).
        let hash = check_peer(address)?;
        let queries = this.queries.get();
        if count > 0 {
            let now = crate::errors::check_now(&this.now.bind(py).call0()?)?;
            let batch = queries.offer_batch(py, this.id, address, records, now)?;
            if batch.status == Status::New {
                if batch.accepted > 0 {
                    this.handle.bind(py).call_method0(intern!(py, "wake"))?;
                }
            } else if batch.status == Status::Completed {
                this.finish
                    .bind(py)
                    .call1((this.query_id.bind(py), py.None()))?;
            }
        }
        if queries.peer_done_at(py, this.id, address, hash, true)? == Status::Completed {
            this.finish
                .bind(py)
                .call1((this.query_id.bind(py), py.None()))?;
        }
        let ended = this.ended.bind(py).call0()?.is_truthy()?;
        let (step, depth, asks, act) =
            this.core
                .bind(py)
                .borrow_mut()
                .settle(py, &node_id, contacts, count > 0, ended)?;
        if act && depth <= 1 && step.is(&steps_quorum(py)?) {
            // The quorum, by a peer of the table: the lookup's _act would
            // only finish the query (all_peers), done here without its
            // frames (_answered_then's and _act's).
            let reason = vocab(py)?.reason(py, Reason::AllPeers);
            this.finish
                .bind(py)
                .call1((this.query_id.bind(py), reason))?;
            return Ok(());
        }
        if act {
            if let Some(asking) = &this.asking {
                if step.is(&steps_ask(py)?) {
                    let learnt = (depth > 1).then_some(ask);
                    return Self::ask(slf, asking, learnt, depth, &step, &asks);
                }
            }
        }
        if depth > 1 || act {
            let step = if act { step } else { py.None().into_bound(py) };
            this.lookup
                .bind(py)
                .call_method1(intern!(py, "_answered_then"), (slf, ask, depth, step, asks))?;
        }
        Ok(())
    }

    /// A request of the lookup passed its RTO (the protocol's `overdue`
    /// callback): `lookup._overdue(self, ask)`; with an `Asker`, its work
    /// done here (the lookup's `_resent` counted, the core told, the next
    /// asks sent as after an answer).
    fn overdue(slf: &Bound<'_, Self>, ask: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(asking) = &this.asking else {
            this.lookup
                .bind(py)
                .call_method1(intern!(py, "_overdue"), (slf, ask))?;
            return Ok(());
        };
        if this.ended.bind(py).call0()?.is_truthy()? {
            return Ok(());
        }
        let handle = this.handle.bind(py);
        let resent = handle.getattr(intern!(py, "_resent"))?.add(1)?;
        handle.setattr(intern!(py, "_resent"), resent)?;
        let answer =
            this.core
                .bind(py)
                .borrow_mut()
                .overdue(py, &ask.get_item(0)?, &ask.get_item(1)?)?;
        let step = answer.get_item(0)?;
        let depth: u32 = answer.get_item(1)?.extract()?;
        let asks = answer.get_item(2)?.cast_into_exact::<PyList>()?;
        if step.is(&steps_ask(py)?) {
            if asks.is_empty() {
                return Ok(());
            }
            return Self::ask(slf, asking, None, depth, &step, &asks);
        }
        this.lookup
            .bind(py)
            .call_method1(intern!(py, "_act"), (slf, step, depth, asks))?;
        Ok(())
    }
}

/// Whether `name` (a request's RPC) is `find_values`: the interned word
/// the engine's entries hold, or any equal str.
fn is_find_values(name: &Bound<'_, PyAny>) -> bool {
    let py = name.py();
    name.is(intern!(py, "find_values"))
        || name
            .cast_exact::<PyString>()
            .is_ok_and(|name| name.to_str().is_ok_and(|text| text == "find_values"))
}

/// `asking`: `(asker, bodies, budget)`.
fn read_asking(asking: &Bound<'_, PyAny>) -> PyResult<Asking> {
    let wrong = || {
        type_error(format!(
            "asking must be an (asker, bodies, budget) tuple or None, got {}",
            type_name(asking)
        ))
    };
    let Ok(parts) = asking.cast_exact::<PyTuple>() else {
        return Err(wrong());
    };
    if parts.len() != 3 {
        return Err(wrong());
    }
    let asker = exact::<Asker>(&parts.get_item(0)?, "asker", "an Asker of this core")?;
    let bodies = exact::<PyDict>(&parts.get_item(1)?, "bodies", "a dict")?;
    Ok(Asking {
        asker: asker.unbind(),
        bodies: bodies.unbind(),
        budget: parts.get_item(2)?.unbind(),
    })
}
