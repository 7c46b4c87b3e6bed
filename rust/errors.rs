//! The package's exceptions (defined in Python, in `dhtquery.errors`) and
//! the argument checks, with the Python twin's rules and messages.

use crate::dedup::KeyRef;
use crate::types::MAX_NOW;
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};
use std::borrow::Cow;

pyo3::import_exception!(dhtquery.errors, InvalidArgumentError);
pyo3::import_exception!(dhtquery.errors, InvalidArgumentTypeError);

#[must_use]
pub fn value_error(message: String) -> PyErr {
    InvalidArgumentError::new_err(message)
}

#[must_use]
pub fn type_error(message: String) -> PyErr {
    InvalidArgumentTypeError::new_err(message)
}

/// `type(value).__name__`
#[must_use]
pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// `repr(value)`
///
/// # Errors
/// What `__repr__` raises.
pub fn repr(value: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(value.repr()?.to_string_lossy().into_owned())
}

/// `repr(value)` of a float.
///
/// # Errors
/// If the float cannot be made.
pub fn float_repr(py: Python<'_>, value: f64) -> PyResult<String> {
    repr(PyFloat::new(py, value).as_any())
}

/// A finite number of seconds, >= 0 (> 0 unless `allow_zero`); bool is
/// refused, int and float (and their subclasses) are taken.
///
/// # Errors
/// `InvalidArgumentTypeError` for another type, `InvalidArgumentError` for
/// a bad value, both naming `name`.
pub fn check_float(name: &str, value: &Bound<'_, PyAny>, allow_zero: bool) -> PyResult<f64> {
    let number = if value.is_exact_instance_of::<PyFloat>() {
        value.cast_exact::<PyFloat>()?.value()
    } else if value.is_instance_of::<PyBool>()
        || !(value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>())
    {
        return Err(type_error(format!(
            "{name} must be a number of seconds, got {}",
            type_name(value)
        )));
    } else {
        // float(value), as the Python twin does; an int too large for a
        // float is a bad value, not an OverflowError.
        match value.py().get_type::<PyFloat>().call1((value,)) {
            Ok(number) => number.extract::<f64>()?,
            Err(err) if err.is_instance_of::<PyOverflowError>(value.py()) => f64::INFINITY,
            Err(err) => return Err(err),
        }
    };
    if !number.is_finite() || number < 0.0 || (number == 0.0 && !allow_zero) {
        let bound = if allow_zero { ">= 0" } else { "> 0" };
        return Err(value_error(format!(
            "{name} must be finite and {bound}, got {}",
            repr(value)?
        )));
    }
    Ok(number)
}

/// A `now`: as `check_float`, and at most `MAX_NOW`.
///
/// # Errors
/// As `check_float`, and `InvalidArgumentError` past `MAX_NOW`.
pub fn check_now(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    let now = check_float("now", value, true)?;
    if now > MAX_NOW {
        return Err(value_error(format!(
            "now must be <= {}, got {}",
            float_repr(value.py(), MAX_NOW)?,
            repr(value)?
        )));
    }
    Ok(now)
}

/// An int in [low, high]; bool is refused.
///
/// # Errors
/// `InvalidArgumentTypeError` for a non-int, `InvalidArgumentError` out of
/// range, both naming `name`.
pub fn check_int(name: &str, value: &Bound<'_, PyAny>, low: u32, high: u32) -> PyResult<u32> {
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(type_error(format!(
            "{name} must be an int, got {}",
            type_name(value)
        )));
    }
    match value.extract::<i64>().map(u32::try_from) {
        Ok(Ok(n)) if (low..=high).contains(&n) => Ok(n),
        _ => Err(value_error(format!(
            "{name} must be in [{low}, {high}], got {}",
            repr(value)?
        ))),
    }
}

/// A checked key's dedup bytes, borrowed from the key object.
pub enum KeyBytes<'a> {
    /// A str's UTF-8, or with lone surrogates its surrogatepass encoding.
    Str(Cow<'a, [u8]>),
    Bytes(&'a [u8]),
}

impl KeyBytes<'_> {
    #[must_use]
    pub fn key(&self) -> KeyRef<'_> {
        match self {
            KeyBytes::Str(utf8) => KeyRef::str(utf8),
            KeyBytes::Bytes(bytes) => KeyRef::bytes(bytes),
        }
    }
}

/// A key must be exactly str or bytes. `name` names it in the error
/// (built only then: this is a hot path).
///
/// # Errors
/// `InvalidArgumentTypeError` for another type.
pub fn check_key_type(key: &Bound<'_, PyAny>, name: impl FnOnce() -> String) -> PyResult<()> {
    if key.is_exact_instance_of::<PyString>() || key.is_exact_instance_of::<PyBytes>() {
        return Ok(());
    }
    Err(key_type_error(key, name))
}

fn key_type_error(key: &Bound<'_, PyAny>, name: impl FnOnce() -> String) -> PyErr {
    type_error(format!(
        "{} must be str or bytes, got {}",
        name(),
        type_name(key)
    ))
}

/// A str's UTF-8 (kept in the str), or None (its error taken) if it has
/// lone surrogates. `extract::<&str>` checked the type again first (a
/// `PyType_GetFlags` call through the limited API, and a call of its own
/// that is not inlined). a2 of `bench core` at `--quick`'s size, 201 reps
/// interleaved in one process: main / this 1.058, against 1.037 for the
/// build before it.
fn str_utf8<'a>(s: Borrowed<'a, '_, PyString>) -> Option<&'a [u8]> {
    let mut size: pyo3::ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a str, alive for 'a; the UTF-8 it returns is kept in
    // the str (alive as long as it is) and `size` bytes long.
    let data = unsafe { pyo3::ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &raw mut size) };
    if data.is_null() {
        drop(PyErr::take(s.py()));
        return None;
    }
    let len = usize::try_from(size).ok()?;
    // SAFETY: as above: `len` bytes at `data`, valid while `s` is.
    Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// A key must be exactly str or bytes; returns its exact dedup bytes,
/// borrowed from the key for as long as it is (a str's UTF-8 is kept in
/// the str), or with lone surrogates their encoding.
///
/// # Errors
/// As `check_key_type`; what encoding a str with lone surrogates raises.
pub fn check_key<'a>(
    key: Borrowed<'a, '_, PyAny>,
    name: impl FnOnce() -> String,
) -> PyResult<KeyBytes<'a>> {
    if let Ok(s) = key.cast_exact::<PyString>() {
        return Ok(KeyBytes::Str(if let Some(utf8) = str_utf8(s) {
            Cow::Borrowed(utf8)
        } else {
            // Lone surrogates: this encoding is still injective.
            let encoded = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
            Cow::Owned(encoded.cast_exact::<PyBytes>()?.as_bytes().to_vec())
        }));
    }
    if let Ok(b) = key.cast_exact::<PyBytes>() {
        return Ok(KeyBytes::Bytes(b.extract::<&'a [u8]>()?));
    }
    Err(key_type_error(&key, name))
}

/// `hash(peer)`; a `TypeError` from it means the peer is unhashable.
///
/// # Errors
/// `InvalidArgumentTypeError` for an unhashable peer; what `__hash__`
/// raises otherwise.
pub fn check_peer(peer: &Bound<'_, PyAny>) -> PyResult<isize> {
    peer.hash().map_err(|err| {
        if err.is_instance_of::<PyTypeError>(peer.py()) {
            type_error(format!("peer must be hashable, got {}", type_name(peer)))
        } else {
            err
        }
    })
}

/// `{value!r:.80}`: a repr cut to 80 characters.
///
/// # Errors
/// What `__repr__` raises.
pub fn short_repr(value: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(repr(value)?.chars().take(80).collect())
}
