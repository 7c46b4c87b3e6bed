//! `QueryId`: a query's identifier, a UUID v4 held as a u128.

use crate::errors::{repr, type_error, value_error};
use pyo3::basic::CompareOp;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple, PyType};
use uuid::Uuid;

static UUID_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn uuid_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    UUID_TYPE.import(py, "uuid", "UUID")
}

/// Python's hash of a non-negative int: n mod (2**61 - 1).
fn int_hash(value: u128) -> isize {
    const MODULUS: u128 = (1 << 61) - 1;
    (value % MODULUS) as isize
}

#[pyclass(frozen, module = "dhtquery._core", name = "QueryId")]
pub struct QueryId {
    pub(crate) value: u128,
}

impl QueryId {
    #[must_use]
    pub fn random() -> Self {
        QueryId {
            value: Uuid::new_v4().as_u128(),
        }
    }

    #[must_use]
    pub fn hyphenated(&self) -> String {
        Uuid::from_u128(self.value).hyphenated().to_string()
    }
}

#[pymethods]
impl QueryId {
    #[new]
    fn new(value: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = value.py();
        let uuid_type = uuid_type(py)?;
        if value.is_instance(uuid_type)? {
            return Ok(QueryId {
                value: value.getattr("int")?.extract()?,
            });
        }
        if let Ok(text) = value.cast::<PyString>() {
            // Fast path for the forms the uuid crate knows; anything else
            // goes to uuid.UUID, which decides what the Python twin accepts.
            if let Ok(Ok(parsed)) = text.to_str().map(Uuid::parse_str) {
                return Ok(QueryId {
                    value: parsed.as_u128(),
                });
            }
            return match uuid_type.call1((value,)) {
                Ok(parsed) => Ok(QueryId {
                    value: parsed.getattr("int")?.extract()?,
                }),
                Err(err) if err.is_instance_of::<PyValueError>(py) => Err(value_error(format!(
                    "value must be a UUID string, got {}",
                    repr(value)?
                ))),
                Err(err) => Err(err),
            };
        }
        Err(type_error(format!(
            "value must be a str or uuid.UUID, got {}",
            crate::errors::type_name(value)
        )))
    }

    /// The 16 bytes of the UUID, big-endian (``uuid.UUID.bytes``), without
    /// building a ``uuid.UUID``: a transport uses them as a message id.
    #[getter]
    fn bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.value.to_be_bytes())
    }

    /// The id whose ``bytes`` are ``data`` (16 bytes).
    #[classmethod]
    fn from_bytes(_cls: &Bound<'_, PyType>, data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let Ok(raw) = data.cast::<PyBytes>() else {
            return Err(type_error(format!(
                "data must be bytes, got {}",
                crate::errors::type_name(data)
            )));
        };
        let raw: [u8; 16] = raw.as_bytes().try_into().map_err(|_| {
            value_error(format!(
                "data must be 16 bytes, got {}",
                raw.as_bytes().len()
            ))
        })?;
        Ok(QueryId {
            value: u128::from_be_bytes(raw),
        })
    }

    #[getter]
    fn uuid<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kwargs = PyDict::new(py);
        kwargs.set_item("int", self.value)?;
        uuid_type(py)?.call((), Some(&kwargs))
    }

    fn __str__(&self) -> String {
        self.hyphenated()
    }

    fn __repr__(&self) -> String {
        format!("QueryId('{}')", self.hyphenated())
    }

    fn __hash__(&self) -> isize {
        int_hash(self.value)
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> Py<PyAny> {
        let py = other.py();
        let Ok(other) = other.cast_exact::<QueryId>() else {
            return py.NotImplemented();
        };
        let other = other.get().value;
        match op {
            CompareOp::Eq => (self.value == other)
                .into_pyobject(py)
                .unwrap()
                .to_owned()
                .into_any()
                .unbind(),
            CompareOp::Ne => (self.value != other)
                .into_pyobject(py)
                .unwrap()
                .to_owned()
                .into_any()
                .unbind(),
            _ => py.NotImplemented(),
        }
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let args = PyTuple::new(py, [slf.get().hyphenated()])?;
        Ok((slf.get_type(), args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_v4() {
        let id = QueryId::random();
        let parsed = Uuid::parse_str(&id.hyphenated()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.as_u128(), id.value);
        assert_ne!(QueryId::random().value, id.value);
    }

    #[test]
    fn hash_is_pythons_int_hash() {
        assert_eq!(int_hash(0), 0);
        assert_eq!(int_hash((1 << 61) - 1), 0);
        assert_eq!(int_hash(1 << 61), 1);
        assert_eq!(int_hash(12345), 12345);
    }
}
