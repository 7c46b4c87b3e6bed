//! `dhtquery._core`: the Rust query core. `_core.pyi` is the contract and
//! `_core_py.py` the reference it must agree with.

pub mod buffer;
pub mod dedup;
pub mod errors;
pub mod latency;
pub mod query_core;
pub mod query_id;
pub mod table;
pub mod wheel;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _core {
    use pyo3::prelude::*;
    use pyo3::types::PyTuple;

    #[pymodule_export]
    use crate::query_core::QueryCore;
    #[pymodule_export]
    use crate::query_id::QueryId;

    #[pymodule_export]
    const NEW: u8 = crate::table::NEW;
    #[pymodule_export]
    const COMPLETED: u8 = crate::table::COMPLETED;
    #[pymodule_export]
    const DUPLICATE: u8 = crate::table::DUPLICATE;
    #[pymodule_export]
    const FULL: u8 = crate::table::FULL;
    #[pymodule_export]
    const LATE: u8 = crate::table::LATE;
    #[pymodule_export]
    const UNKNOWN: u8 = crate::table::UNKNOWN;
    #[pymodule_export]
    const MAX_TIMEOUT: f64 = crate::errors::MAX_TIMEOUT;
    #[pymodule_export]
    const MAX_RESULTS_LIMIT: u32 = crate::errors::MAX_RESULTS_LIMIT;
    #[pymodule_export]
    const MAX_EXPECTED_PEERS: u32 = crate::errors::MAX_EXPECTED_PEERS;
    #[pymodule_export]
    const MAX_NOW: f64 = crate::errors::MAX_NOW;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        m.add("REASONS", PyTuple::new(py, crate::table::REASON_NAMES)?)?;
        // The same public names as the Python twin (pyo3 lists every add).
        let public = [
            "COMPLETED",
            "DUPLICATE",
            "FULL",
            "LATE",
            "MAX_EXPECTED_PEERS",
            "MAX_NOW",
            "MAX_RESULTS_LIMIT",
            "MAX_TIMEOUT",
            "NEW",
            "REASONS",
            "UNKNOWN",
            "QueryCore",
            "QueryId",
        ];
        m.setattr("__all__", pyo3::types::PyList::new(py, public)?)?;
        Ok(())
    }
}
