//! `Asker`: a streaming lookup's asks opened, framed and sent from the core
//! (`DatagramEngine.open_asks`), with what `DhtProtocol.ask_many` and the
//! lookup's `_act` do around it, so that an answer that leads to new asks
//! (`LookupAnswers.settle`, step ASK) sends them with no Python frame: it
//! took four (`_answered_then`, `_act`, `ask_many` and its checks) plus
//! the transport's. One per protocol, shared by its lookups (as
//! `LookupSetup.shared`). `_core_py.Asker` is the reference.
//!
//! It takes `ask_many`'s fast path only: the protocol's own queue empty,
//! the window with room for every ask, the transport open, the RPC table's
//! engine of this core; else it says `None` and the caller takes the Python
//! path (`lookup._act`), which queues, refuses or sends one by one as
//! before. The protocol's attributes that are replaced at run time (by
//! tests, benches and the multi-host harness: `transport`,
//! `max_outstanding`, `_requests`) are read per call; the rest once.
//!
//! Measured (cachegrind, instructions per `get_all`, slope between 1,000
//! and 3,000 lookups, frozen clock, two pairs of runs, base = main at
//! deb6e79's Python with this build's `_core`): `bench profile` 235.4 k ->
//! 233.3 k and 234.9 k -> 232.2 k (its lookups ask three holders: only the
//! first asks, from `start`, take this path); `benches/profile_empty_peers.py`
//! (half the peers hold nothing: 5.46 requests a lookup, 2.46 answers
//! that lead to an ask) 350.0 k -> 334.2 k and 350.0 k -> 334.6 k, about
//! 5.6 k an answer that leads to asks.

use crate::answers::{callable, exact, LookupAnswers};
use crate::datagram::DatagramEngine;
use crate::errors::{check_float, check_now, type_error, type_name};
use crate::outbox::DatagramSocket;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString, PyTuple};

#[pyclass(frozen, module = "dhtquery._core", name = "Asker")]
pub struct Asker {
    protocol: Py<PyAny>,
    /// the protocol's queue of its own requests waiting for the window
    waiting: Py<PyAny>,
    peers: Py<PyAny>,
    extensions: Py<PyDict>,
    stats: Py<PyDict>,
    timer: Py<PyAny>,
    now: Py<PyAny>,
    drop: Py<PyAny>,
    names: Py<PyTuple>,
    span: Py<PyFloat>,
    first_span: Py<PyFloat>,
}

impl Asker {
    /// `ask`, from the core (`LookupAnswers.settle`): `answers` known to be
    /// ours, `asks` and `bodies` of their types.
    pub(crate) fn ask_for<'py>(
        &self,
        answers: &Bound<'py, LookupAnswers>,
        asks: &Bound<'py, PyList>,
        bodies: &Bound<'py, PyDict>,
        budget: &Bound<'py, PyAny>,
    ) -> PyResult<Option<usize>> {
        let py = answers.py();
        let protocol = self.protocol.bind(py);
        // ask_many's conditions for one engine call (else _ask_each, which
        // queues or refuses: Python's)
        if self.waiting.bind(py).len()? > 0 {
            return Ok(None);
        }
        let requests = protocol.getattr(intern!(py, "_requests"))?;
        if requests.is_none() {
            return Ok(None);
        }
        let engine = requests.getattr(intern!(py, "engine"))?;
        let Ok(engine) = engine.cast_exact::<DatagramEngine>() else {
            return Ok(None);
        };
        let engine = engine.get();
        let on_wire = engine.pending.bind(py).len();
        let wanted = on_wire + asks.len();
        let room = protocol.getattr(intern!(py, "max_outstanding"))?;
        let full = match room.extract::<usize>() {
            Ok(room) => wanted > room,
            // (not a size: compared as Python compares it)
            Err(_) => room.lt(wanted)?,
        };
        if full {
            return Ok(None);
        }
        let transport = protocol.getattr(intern!(py, "transport"))?;
        // The batched transport's core socket, while the protocol's
        // transport is that one itself (not a wrapper): its state read and
        // the asks sent with no Python call (see outbox.rs).
        let native = match protocol.getattr(intern!(py, "_native_transport")) {
            Ok(native) if native.is(&transport) => protocol
                .getattr(intern!(py, "_native_socket"))?
                .cast_into_exact::<DatagramSocket>()
                .ok(),
            _ => None,
        };
        let closing = match &native {
            Some(native) => native.get().is_closed(),
            None => transport
                .call_method0(intern!(py, "is_closing"))?
                .is_truthy()?,
        };
        if closing {
            return Ok(None);
        }
        let send = match native {
            Some(native) => native.into_any(),
            None => transport.getattr(intern!(py, "sendto"))?,
        };
        // the lookup's _act: its requests counted (sent or not)
        let handle = answers.get().handle(py);
        let counted = handle.getattr(intern!(py, "_requests"))?.add(asks.len())?;
        handle.setattr(intern!(py, "_requests"), counted)?;
        let now = self.now.bind(py).call0()?;
        let at = check_now(&now)?;
        let timer = self.timer.bind(py);
        let (earliest, refused, asked) = engine.open_asks(
            py,
            asks.as_any(),
            self.names.bind(py).as_any(),
            bodies.as_any(),
            &now,
            &timer.getattr(intern!(py, "lag"))?,
            self.peers.bind(py),
            self.extensions.bind(py).as_any(),
            budget,
            self.span.bind(py).as_any(),
            self.first_span.bind(py).as_any(),
            answers.as_any(),
            &answers.getattr(intern!(py, "overdue"))?,
            &send,
        )?;
        let stats = self.stats.bind(py);
        let key = intern!(py, "requests");
        let before = match stats.get_item(key)? {
            Some(count) => count,
            None => 0i64.into_pyobject(py)?.into_any(),
        };
        stats.set_item(key, before.add(asked)?)?;
        let due = at + earliest;
        let armed: f64 = timer.getattr(intern!(py, "armed_until"))?.extract()?;
        if armed > due {
            timer.call_method1(intern!(py, "arm"), (due,))?;
        }
        // (uvloop: an address of another family than the socket's; the
        // request times out)
        let drop = self.drop.bind(py);
        for _ in 0..refused {
            drop.call1((intern!(py, "socket_error"),))?;
        }
        Ok(Some(asked))
    }
}

#[pymethods]
impl Asker {
    #[new]
    fn new(
        protocol: &Bound<'_, PyAny>,
        names: &Bound<'_, PyAny>,
        span: &Bound<'_, PyAny>,
        first_span: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let py = protocol.py();
        let wrong_names = || {
            type_error(format!(
                "names must be a tuple of two str (ours, stock), got {}",
                type_name(names)
            ))
        };
        let Ok(parts) = names.cast_exact::<PyTuple>() else {
            return Err(wrong_names());
        };
        if parts.len() != 2
            || parts
                .iter()
                .any(|name| !name.is_exact_instance_of::<PyString>())
        {
            return Err(wrong_names());
        }
        let span = PyFloat::new(py, check_float("span", span, false)?);
        let first_span = PyFloat::new(py, check_float("first_span", first_span, false)?);
        let waiting = protocol.getattr(intern!(py, "_waiting"))?;
        // (a deque: only its length is read)
        waiting.len()?;
        let extensions = protocol.getattr(intern!(py, "extensions"))?;
        let Ok(extensions) = extensions.cast_exact::<PyDict>() else {
            return Err(type_error(format!(
                "protocol.extensions must be a dict, got {}",
                type_name(&extensions)
            )));
        };
        let stats = protocol.getattr(intern!(py, "stats"))?;
        let Ok(stats) = stats.cast::<PyDict>() else {
            return Err(type_error(format!(
                "protocol.stats must be a dict, got {}",
                type_name(&stats)
            )));
        };
        let now = callable(
            protocol
                .getattr(intern!(py, "clock"))?
                .getattr(intern!(py, "now"))?,
            "protocol.clock.now",
        )?;
        let drop = callable(protocol.getattr(intern!(py, "drop"))?, "protocol.drop")?;
        Ok(Asker {
            protocol: protocol.clone().unbind(),
            waiting: waiting.unbind(),
            peers: protocol.getattr(intern!(py, "_peers"))?.unbind(),
            extensions: extensions.clone().unbind(),
            stats: stats.clone().unbind(),
            timer: protocol.getattr(intern!(py, "_timer"))?.unbind(),
            now,
            drop,
            names: parts.clone().unbind(),
            span: span.unbind(),
            first_span: first_span.unbind(),
        })
    }

    /// A lookup's `asks` sent as `DhtProtocol.ask_many` sends them when
    /// the window has room (see `_core.pyi`): how many were asked, or None
    /// (nothing done: the caller takes the Python path).
    fn ask(
        &self,
        answers: &Bound<'_, PyAny>,
        asks: &Bound<'_, PyAny>,
        bodies: &Bound<'_, PyAny>,
        budget: &Bound<'_, PyAny>,
    ) -> PyResult<Option<usize>> {
        let answers = exact::<LookupAnswers>(answers, "answers", "a LookupAnswers of this core")?;
        let asks = exact::<PyList>(asks, "asks", "a list")?;
        let bodies = exact::<PyDict>(bodies, "bodies", "a dict")?;
        self.ask_for(&answers, &asks, &bodies, budget)
    }
}
