//! `dhtquery._core`: the Rust query core. `_core.pyi` is the contract and
//! `_core_py.py` the reference it must agree with; both return the objects
//! of `dhtquery.query.types`.
//!
//! Modules, one job each:
//! - `types`: the vocabulary (statuses, reasons, states, named shapes,
//!   limits) on the Rust side; `vocab`: the same as Python objects.
//! - `slab`, `index`, `wheel`: where queries live, how an id finds one, when
//!   one is due.
//! - `query`: one query's own state; `table`: the state machine over all.
//! - `dedup`, `buffer`, `latency`: a query's seen keys and results, the
//!   duration histogram.
//! - `cache`: prefetch hints for the hot paths.
//! - `errors`: the argument checks; `query_id`, `query_core`: the classes.
//! - `lookup`: a streaming lookup's decisions (whom to ask, when it is
//!   over); `answers`: its requests' callback, reading the common answer;
//!   `asker`: its asks sent (`ask_many`'s fast path) without Python frames.
//! - `peers`: every peer's RTT estimator and reputation record (`PeerBook`),
//!   which the lookup reads directly.
//! - `datagram`: the engine reading each arriving datagram (framing,
//!   msgpack, matching an answer to its request, serving the common
//!   request) in one call; `holder`: a holder's `find_values` answer read
//!   in place (no Python object); `replay`: the answers kept for resent
//!   requests;
//!   `fairness`: which requests an overloaded node sheds;
//!   `batch`:
//!   many datagrams per system call (`recvmmsg`), measured, not used yet.

pub mod answers;
pub mod asker;
pub mod batch;
pub mod buffer;
pub mod cache;
pub mod datagram;
pub mod dedup;
pub mod errors;
pub mod fairness;
pub mod holder;
pub mod index;
pub mod latency;
pub mod lookup;
pub mod outbox;
pub mod peers;
pub mod query;
pub mod query_core;
pub mod query_id;
pub mod records;
pub mod replay;
pub mod slab;
pub mod table;
pub mod types;
pub mod vocab;
pub mod wheel;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _core {
    use pyo3::prelude::*;
    use pyo3::types::PyList;

    #[pymodule_export]
    use crate::answers::LookupAnswers;
    #[pymodule_export]
    use crate::asker::Asker;
    #[pymodule_export]
    use crate::batch::BatchReceiver;
    #[pymodule_export]
    use crate::datagram::DatagramEngine;
    #[pymodule_export]
    use crate::fairness::FairShare;
    #[pymodule_export]
    use crate::lookup::Candidates;
    #[pymodule_export]
    use crate::lookup::LookupCore;
    #[pymodule_export]
    use crate::outbox::DatagramSocket;
    #[pymodule_export]
    use crate::peers::PeerBook;
    #[pymodule_export]
    use crate::query_core::QueryCore;
    #[pymodule_export]
    use crate::query_id::QueryId;
    #[pymodule_export]
    use crate::records::RecordCache;
    #[pymodule_export]
    use crate::replay::ReplayCache;

    #[pymodule_export]
    const MAX_TIMEOUT: f64 = crate::types::MAX_TIMEOUT;
    #[pymodule_export]
    const MAX_RESULTS_LIMIT: u32 = crate::types::MAX_RESULTS_LIMIT;
    #[pymodule_export]
    const MAX_EXPECTED_PEERS: u32 = crate::types::MAX_EXPECTED_PEERS;
    #[pymodule_export]
    const MAX_NOW: f64 = crate::types::MAX_NOW;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        // Import dhtquery.query.types now: a mismatch fails this import,
        // not a later call.
        crate::vocab::vocab(py)?;
        // The same public names as the Python twin (pyo3 lists every add).
        let public = [
            "MAX_EXPECTED_PEERS",
            "MAX_NOW",
            "MAX_RESULTS_LIMIT",
            "MAX_TIMEOUT",
            "Asker",
            "BatchReceiver",
            "Candidates",
            "DatagramEngine",
            "DatagramSocket",
            "FairShare",
            "LookupAnswers",
            "LookupCore",
            "PeerBook",
            "QueryCore",
            "QueryId",
            "RecordCache",
            "ReplayCache",
        ];
        m.setattr("__all__", PyList::new(py, public)?)?;
        Ok(())
    }
}
