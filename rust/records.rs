//! `RecordCache`: the signed records a node has verified, by signature
//! (`dht.records.RecordVerifier`'s memory), and a lookup's read of an
//! answer's records through it in one call (`take`). The record objects
//! are the caller's (`dht.records.Record`); the core keeps them with the
//! wire fields they were verified with, and hands a record back only for a
//! wire array whose every field equals those (so a copy costs a hash lookup
//! and six comparisons, not an Ed25519 verification). `_core_py.RecordCache`
//! is the reference: the same calls give the same answers.

use crate::errors::{check_int, type_error, type_name, value_error};
use crate::holder::WireRecord;
use foldhash::fast::RandomState;
use hashbrown::HashMap;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};
use std::collections::VecDeque;

/// An Ed25519 signature's size: the only signatures a verified record has.
const SIGNATURE_SIZE: usize = 64;
/// The wire array's fields: public key, target, name, seq, expires, data,
/// signature.
const WIRE_FIELDS: usize = 7;

type Signature = [u8; SIGNATURE_SIZE];

/// A record verified, with the wire fields it was verified with.
struct Entry {
    record: Py<PyAny>,
    public_key: Py<PyBytes>,
    target: Py<PyBytes>,
    name: Py<PyString>,
    /// `(public_key, name)`: the record's key in a lookup's `latest`, made
    /// once here rather than per `take` (the twin makes an equal tuple each
    /// time; only `is` tells them apart). ~175 instructions a record taken
    /// (callgrind).
    slot: Py<PyTuple>,
    seq: Py<PyInt>,
    seq_value: u64,
    expires: Py<PyInt>,
    expires_value: u64,
    data: Py<PyBytes>,
    /// the signature, an exact `bytes`: a record taken from an answer read
    /// in place (`take_wire`) is keyed by it, no `bytes` made per answer
    signature: Py<PyBytes>,
}

/// A wire field read as it must be: an exact `bytes` (msgpack's bin).
fn exact_bytes<'a, 'py>(value: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyBytes>> {
    value.cast_exact::<PyBytes>().ok()
}

/// An exact `int` in [0, 2**64), else None.
fn exact_u64(value: &Bound<'_, PyAny>) -> Option<u64> {
    if !value.is_exact_instance_of::<PyInt>() {
        return None;
    }
    value.extract::<u64>().ok()
}

/// The seven wire fields of `value` (a list or tuple of 7), else None.
/// (One cast, then the items: casting again for each field cost ~25
/// instructions a field, callgrind.)
fn wire_fields<'py>(value: &Bound<'py, PyAny>) -> Option<[Bound<'py, PyAny>; WIRE_FIELDS]> {
    if let Ok(list) = value.cast_exact::<PyList>() {
        // (no Python code runs between the length and the items)
        seven(list.len(), |index| list.get_item(index))
    } else {
        let tuple = value.cast_exact::<PyTuple>().ok()?;
        seven(tuple.len(), |index| tuple.get_item(index))
    }
}

/// Items 0 to 6 of a sequence of `len` read by `item`, if it has 7.
fn seven<'py>(
    len: usize,
    item: impl Fn(usize) -> PyResult<Bound<'py, PyAny>>,
) -> Option<[Bound<'py, PyAny>; WIRE_FIELDS]> {
    if len != WIRE_FIELDS {
        return None;
    }
    Some([
        item(0).ok()?,
        item(1).ok()?,
        item(2).ok()?,
        item(3).ok()?,
        item(4).ok()?,
        item(5).ok()?,
        item(6).ok()?,
    ])
}

fn signature_of(value: &Bound<'_, PyAny>) -> Option<Signature> {
    exact_bytes(value)?.as_bytes().try_into().ok()
}

impl Entry {
    /// Whether wire fields `fields` are the ones this record was verified
    /// with: each of its type (exact) and equal.
    fn matches(&self, py: Python<'_>, fields: &[Bound<'_, PyAny>; WIRE_FIELDS]) -> bool {
        let same_bytes = |given: &Bound<'_, PyAny>, kept: &Py<PyBytes>| {
            exact_bytes(given).is_some_and(|given| given.as_bytes() == kept.bind(py).as_bytes())
        };
        let same_name = || {
            let Ok(given) = fields[2].cast_exact::<PyString>() else {
                return false;
            };
            if given.as_ptr() == self.name.as_ptr() {
                return true;
            }
            match (given.to_str(), self.name.bind(py).to_str()) {
                (Ok(given), Ok(kept)) => given == kept,
                // (lone surrogates have no UTF-8: Python's own ==)
                _ => PyAnyMethods::eq(given.as_any(), self.name.bind(py)).unwrap_or(false),
            }
        };
        same_bytes(&fields[5], &self.data)
            && same_bytes(&fields[1], &self.target)
            && same_bytes(&fields[0], &self.public_key)
            && same_name()
            && exact_u64(&fields[3]) == Some(self.seq_value)
            && exact_u64(&fields[4]) == Some(self.expires_value)
    }

    /// `matches` for the fields of an answer read in place: bytes and ints
    /// compared as such (a str decoded from them would equal the name kept
    /// exactly when its UTF-8 does; a lone surrogate kept has none and
    /// equals no decoded str).
    fn matches_wire(&self, py: Python<'_>, record: &WireRecord<'_>) -> bool {
        record.data == self.data.bind(py).as_bytes()
            && record.target == self.target.bind(py).as_bytes()
            && record.public_key == self.public_key.bind(py).as_bytes()
            && self
                .name
                .bind(py)
                .to_str()
                .is_ok_and(|kept| kept.as_bytes() == record.name)
            && record.seq == self.seq_value
            && record.expires == self.expires_value
    }
}

#[pyclass(module = "dhtquery._core", name = "RecordCache")]
pub struct RecordCache {
    kept: usize,
    wall: Py<PyAny>,
    entries: HashMap<Signature, Entry, RandomState>,
    /// the signatures, oldest first (each once: a record put again under a
    /// signature kept stays where it was, as in an `OrderedDict`)
    order: VecDeque<Signature>,
}

impl RecordCache {
    /// The entry of wire array `value` if every field is the one verified.
    fn hit<'a>(
        &'a self,
        py: Python<'_>,
        fields: &[Bound<'_, PyAny>; WIRE_FIELDS],
    ) -> Option<&'a Entry> {
        let entry = self.entries.get(&signature_of(&fields[6])?)?;
        entry.matches(py, fields).then_some(entry)
    }

    /// `hit` for a record of an answer read in place.
    fn hit_wire(&self, py: Python<'_>, record: &WireRecord<'_>) -> Option<&Entry> {
        let signature: &Signature = record.signature.try_into().ok()?;
        let entry = self.entries.get(signature)?;
        entry.matches_wire(py, record).then_some(entry)
    }

    /// `take`'s rule over records read by `next(index)` (the entry of the
    /// record at `index` and the signature to key it by, or None: not
    /// kept, the read stops there) while `index < count()`.
    fn take_each<'s, 'py>(
        &'s self,
        py: Python<'py>,
        target: &[u8],
        latest: &Bound<'py, PyDict>,
        address: &Bound<'py, PyAny>,
        count: impl Fn() -> usize,
        mut next: impl FnMut(usize) -> PyResult<Option<(&'s Entry, Bound<'py, PyAny>)>>,
    ) -> PyResult<(Bound<'py, PyList>, usize)> {
        let taken = PyList::empty(py);
        let mut index = 0;
        while index < count() {
            let Some((entry, signature)) = next(index)? else {
                return Ok((taken, index));
            };
            if entry.target.bind(py).as_bytes() != target {
                return Ok((taken, index));
            }
            if entry.expires_value != 0
                && entry.expires.bind(py).le(self.wall.bind(py).call0()?)?
            {
                return Ok((taken, index));
            }
            let slot = entry.slot.bind(py);
            match latest.get_item(slot)? {
                None => {
                    let seen = PyTuple::new(py, [entry.seq.bind(py).as_any(), address])?;
                    latest.set_item(slot, seen)?;
                }
                Some(seen) => {
                    // (another sequence than the one seen: the caller's)
                    let Ok(seen) = seen.cast_exact::<PyTuple>() else {
                        return Ok((taken, index));
                    };
                    if seen.len() != 2 || seen.get_item(0)?.ne(entry.seq.bind(py))? {
                        return Ok((taken, index));
                    }
                }
            }
            taken.append((signature, entry.record.bind(py)))?;
            index += 1;
        }
        Ok((taken, count()))
    }

    /// `take` of an answer's records read in place (`holder.rs`): the same
    /// records taken, `latest` noted alike, `wall()` called as often; each
    /// taken keyed by the signature kept (an equal `bytes`).
    pub(crate) fn take_wire<'a, 'py>(
        &self,
        py: Python<'py>,
        records: impl Iterator<Item = WireRecord<'a>>,
        count: usize,
        target: &Bound<'py, PyBytes>,
        latest: &Bound<'py, PyDict>,
        address: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, usize)> {
        let mut records = records;
        self.take_each(
            py,
            target.as_bytes(),
            latest,
            address,
            || count,
            |_| {
                Ok(records.next().and_then(|record| {
                    let entry = self.hit_wire(py, &record)?;
                    Some((entry, entry.signature.bind(py).clone().into_any()))
                }))
            },
        )
    }
}

fn check_bytes<'a, 'py>(
    name: &str,
    value: &'a Bound<'py, PyAny>,
) -> PyResult<&'a Bound<'py, PyBytes>> {
    value.cast::<PyBytes>().map_err(|_| {
        type_error(format!(
            "value's {name} must be bytes, got {}",
            type_name(value)
        ))
    })
}

fn check_u64(name: &str, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(type_error(format!(
            "value's {name} must be an int, got {}",
            type_name(value)
        )));
    }
    value.extract::<u64>().map_err(|_| {
        value_error(format!(
            "value's {name} must be in [0, 2**64), got {}",
            value
                .repr()
                .map_or_else(|_| "?".to_owned(), |r| r.to_string())
        ))
    })
}

#[pymethods]
impl RecordCache {
    #[new]
    fn new(kept: &Bound<'_, PyAny>, wall: &Bound<'_, PyAny>) -> PyResult<Self> {
        let kept = check_int("kept", kept, 0, u32::MAX)? as usize;
        if !wall.is_callable() {
            return Err(type_error(format!(
                "wall must be callable, got {}",
                type_name(wall)
            )));
        }
        Ok(RecordCache {
            kept,
            wall: wall.clone().unbind(),
            entries: HashMap::with_hasher(RandomState::default()),
            order: VecDeque::new(),
        })
    }

    /// The record verified with wire array `value` (a list or tuple of the
    /// seven fields), if every field is the one it was verified with; else
    /// None (not kept, another record's signature, not a wire array).
    fn get(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
        let fields = wire_fields(value)?;
        self.hit(py, &fields)
            .map(|entry| entry.record.clone_ref(py))
    }

    /// Remember `record`, verified with wire array `value`; the oldest
    /// leaves once more than `kept` are kept.
    fn put(&mut self, value: &Bound<'_, PyAny>, record: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(fields) = wire_fields(value) else {
            return Err(type_error(format!(
                "value must be a list or tuple of the 7 wire fields, got {}",
                type_name(value)
            )));
        };
        let signature = check_bytes("signature", &fields[6])?;
        let Ok(key) = Signature::try_from(signature.as_bytes()) else {
            return Err(value_error(format!(
                "value's signature must be {SIGNATURE_SIZE} bytes, got {}",
                signature.as_bytes().len()
            )));
        };
        let Ok(name) = fields[2].cast::<PyString>() else {
            return Err(type_error(format!(
                "value's name must be a str, got {}",
                type_name(&fields[2])
            )));
        };
        let public_key = check_bytes("public key", &fields[0])?;
        let entry = Entry {
            record: record.clone().unbind(),
            public_key: public_key.clone().unbind(),
            target: check_bytes("target", &fields[1])?.clone().unbind(),
            name: name.clone().unbind(),
            slot: PyTuple::new(value.py(), [public_key.as_any(), name.as_any()])?.unbind(),
            seq_value: check_u64("seq", &fields[3])?,
            seq: fields[3].cast::<PyInt>()?.clone().unbind(),
            expires_value: check_u64("expires", &fields[4])?,
            expires: fields[4].cast::<PyInt>()?.clone().unbind(),
            data: check_bytes("data", &fields[5])?.clone().unbind(),
            signature: match signature.cast_exact::<PyBytes>() {
                Ok(exact) => exact.clone().unbind(),
                // (a subclass's: an exact copy, as the wire's would be)
                Err(_) => PyBytes::new(value.py(), signature.as_bytes()).unbind(),
            },
        };
        if self.entries.insert(key, entry).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.kept {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        Ok(())
    }

    /// A lookup's read of one answer's records, `values` (wire arrays),
    /// served under DHT key `target` by `address`: each in turn that is
    /// kept, of that target, not expired (`wall()`), and of the sequence
    /// `latest` holds for its slot (or of a slot new to it, then noted
    /// there as `(seq, address)`) is taken as `(signature, record)`. Stops
    /// at the first that is not: `(taken, index)`, `index` the position of
    /// the first value left for the caller to check in full
    /// (`len(values)`: none; 0 if `values` is not a list or tuple).
    pub(crate) fn take<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
        target: &Bound<'py, PyAny>,
        latest: &Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, usize)> {
        let Ok(target) = target.cast_exact::<PyBytes>() else {
            return Err(type_error(format!(
                "target must be bytes, got {}",
                type_name(target)
            )));
        };
        let Ok(latest) = latest.cast_exact::<PyDict>() else {
            return Err(type_error(format!(
                "latest must be a dict, got {}",
                type_name(latest)
            )));
        };
        // The values read in place, as the twin's `enumerate` does (its
        // length read again at each step): collecting them first into a Vec
        // cost an allocation a call (~150 instructions, callgrind).
        let list = values.cast_exact::<PyList>().ok();
        let tuple = match list {
            Some(_) => None,
            None => match values.cast_exact::<PyTuple>() {
                Ok(tuple) => Some(tuple),
                Err(_) => return Ok((PyList::empty(py), 0)),
            },
        };
        let len = || match (list, tuple) {
            (Some(list), _) => list.len(),
            (_, Some(tuple)) => tuple.len(),
            _ => 0,
        };
        self.take_each(py, target.as_bytes(), latest, address, len, |index| {
            let value = match (list, tuple) {
                (Some(list), _) => list.get_item(index)?,
                (_, Some(tuple)) => tuple.get_item(index)?,
                _ => return Ok(None),
            };
            let Some(fields) = wire_fields(&value) else {
                return Ok(None);
            };
            Ok(self
                .hit(py, &fields)
                .map(|entry| (entry, fields[6].clone())))
        })
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    fn __len__(&self) -> usize {
        self.entries.len()
    }

    #[getter]
    fn kept(&self) -> usize {
        self.kept
    }
}
