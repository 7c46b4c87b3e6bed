//! `DatagramEngine`: one call per arriving datagram. It reads rpcudp's
//! framing (a kind byte, a 20-byte message id, a msgpack body), decodes the
//! body straight into Python objects, and for a response matches it to its
//! outstanding request in the RPC table's `pending` dict (a `dict[bytes,
//! tuple]` whose tuples hold the address asked at index 1), taking it out
//! when the answer comes from that address. What Python gets is one tuple
//! `(status, first, value, pending)`:
//!
//! - `DROP, kind, None, None`: framing or msgpack wrong (`short`,
//!   `bad_kind`, `oversize_request`, `malformed`, `bad_utf8`, as
//!   `dhtquery.dht.wire.decode` names them);
//! - `REQUEST, msg_id, body, None`: a request to serve;
//! - `ANSWERED, msg_id, value, pending`: the answer to `pending`, which
//!   has left the dict;
//! - `WRONG_ADDRESS, msg_id, value, pending`: the id of a request out, from
//!   another address (the request stays);
//! - `NOT_PENDING, msg_id, value, None`: no request out with this id
//!   (late, duplicate or unknown: the table tells which);
//! - `CHECKED` or `BAD_SHAPE, msg_id, value, pending`: as `ANSWERED`, the
//!   RPC (item 2 of `pending`) being one whose answer's shape the engine
//!   checks (the `shapes` dict maps its name to a shape code of
//!   `dhtquery.query.shapes`), and the answer has that shape, or not.
//!
//! Given the RPC table's core (`requests`), the engine also opens the
//! table's requests (`open`: the one-result query registered, the message
//! id made, the datagram framed, the entry kept) and ends an answered one
//! in the call that reads it (`receive_at`: the query finished, the RTT
//! measured), so that a request and its answer cost Python one call each.
//!
//! The decoder gives what `msgpack.unpackb(body, raw=False,
//! strict_map_key=False, use_list=True)` gives, errors included (its size
//! limits, its stack of 1,024 containers, its `ExtType` and `Timestamp`):
//! the pure-Python twin is that call, and the equivalence test feeds both
//! the same bytes. Hand-written rather than `rmpv`: that decodes into its
//! own tree first, which would then be walked again into Python objects,
//! and its limits and errors are not msgpack-python's.

use crate::answers::{callable, LookupAnswers, Reply};
use crate::batch::BatchReceiver;
use crate::errors::{check_float, check_now, float_repr, type_error, type_name, value_error};
use crate::fairness::FairShare;
use crate::holder::{holder_answer, HolderAnswer};
use crate::outbox::{DatagramSocket, Reply as Answer};
use crate::peers::{same_address, OrderedTable, PeerBook};
use crate::query_core::{check_timeout, QueryCore};
use crate::query_id::QueryId;
use crate::replay::ReplayCache;
use crate::types::MAX_TIMEOUT;
use crate::vocab::{vocab, Vocab};
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PySet, PyString, PyTuple, PyType,
};
use pyo3::{ffi, PyTypeInfo};
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

pub const DROP: u8 = 0;
pub const REQUEST: u8 = 1;
pub const ANSWERED: u8 = 2;
pub const WRONG_ADDRESS: u8 = 3;
pub const NOT_PENDING: u8 = 4;
pub const CHECKED: u8 = 5;
pub const BAD_SHAPE: u8 = 6;
/// A `CHECKED` answer handed to its request's callback, a
/// `LookupAnswers`, in the call (see `dispatch_answers`).
pub const HANDLED: u8 = 7;
/// A request shed by the fair share (`serve`'s): the protocol counts it.
pub const SHED: u8 = 8;
/// A resent request, answered again from the replay cache.
pub const REPLAYED: u8 = 9;
/// A request answered in the engine: a `find_values` or `find_value` from
/// its kept answer, or a ping.
pub const SERVED: u8 = 10;
/// `receive_batch`: handling a datagram raised (the value: the exception).
pub const FAILED: u8 = 11;

const KIND_REQUEST: u8 = 0x00;
const KIND_RESPONSE: u8 = 0x01;
const MSG_ID_SIZE: usize = 20;
const HEADER_SIZE: usize = 1 + MSG_ID_SIZE;
/// rpcudp refuses to send a request body over 8 KiB; so do we to read one.
const MAX_REQUEST_BODY: usize = 8192;
/// msgpack-python's unpacker stack: this many containers open at once.
const STACK_SIZE: usize = 1024;

/// Why a body is not one msgpack value.
enum DecodeError {
    /// `malformed`: truncated, reserved byte, over a limit, too deep, an
    /// unhashable map key, trailing bytes
    Malformed,
    /// `bad_utf8`: a str that is not UTF-8
    BadUtf8,
}

impl From<PyErr> for DecodeError {
    fn from(_: PyErr) -> Self {
        DecodeError::Malformed
    }
}

type Decoded<'py> = Result<Bound<'py, PyAny>, DecodeError>;

/// The strs the wire repeats: the map keys of the answers (`records`,
/// `nodes`, `more`, `value`) and the RPC names a request starts with. Each
/// is made once, interned (so it is the very object a Python constant of
/// that text is), and handed out again wherever a body holds that text:
/// no allocation, no UTF-8 check, and a hash already cached for the dict it
/// keys and for every lookup of it. A fixed list, so no datagram can grow
/// it; any other str is made anew, as before. Equal to a fresh str in every
/// way a caller can see but `is` (msgpack-python interns map keys too).
/// (With the lists below and the shape check's keys: `receive_at` 9.95 k
/// -> 7.1 k instructions an answer, 318.8 k -> 308.3 k a `get_all`,
/// callgrind, bench profile.)
const WORDS: [&str; 11] = [
    "records",
    "nodes",
    "more",
    "value",
    "stun",
    "ping",
    "store",
    "find_node",
    "find_value",
    "find_values",
    "store_record",
];
const WORD_RECORDS: usize = 0;
const WORD_NODES: usize = 1;
const WORD_VALUE: usize = 3;
/// The words whose values in a body's top-level map the shape check reads.
const TOP_WORDS: [usize; 3] = [WORD_RECORDS, WORD_NODES, WORD_VALUE];
const TOP_RECORDS: usize = 0;
const TOP_NODES: usize = 1;
const TOP_VALUE: usize = 2;

/// The values a body's top-level map holds under `TOP_WORDS` (the last of
/// each, as the dict keeps it), noted while it is decoded: the shape check
/// reads them there rather than looking them up in the dict again (two
/// lookups, ~245 instructions an answer, callgrind).
type Top<'py> = [Option<Bound<'py, PyAny>>; TOP_WORDS.len()];

static WORD_OBJECTS: PyOnceLock<[Py<PyString>; WORDS.len()]> = PyOnceLock::new();

/// The interned objects of `WORDS`, in its order.
fn words(py: Python<'_>) -> &[Py<PyString>; WORDS.len()] {
    WORD_OBJECTS.get_or_init(py, || WORDS.map(|word| PyString::intern(py, word).unbind()))
}

/// Where `text` is in `WORDS` (a match on the bytes: its length first, then
/// at most a comparison or two).
fn word_index(text: &[u8]) -> Option<usize> {
    Some(match text {
        b"records" => 0,
        b"nodes" => 1,
        b"more" => 2,
        b"value" => 3,
        b"stun" => 4,
        b"ping" => 5,
        b"store" => 6,
        b"find_node" => 7,
        b"find_value" => 8,
        b"find_values" => 9,
        b"store_record" => 10,
        _ => return None,
    })
}

fn unsigned(py: Python<'_>, value: u64) -> Bound<'_, PyAny> {
    let Ok(int) = value.into_pyobject(py);
    int.into_any()
}

fn signed(py: Python<'_>, value: i64) -> Bound<'_, PyAny> {
    let Ok(int) = value.into_pyobject(py);
    int.into_any()
}

struct Decoder<'a, 'py> {
    py: Python<'py>,
    words: &'py [Py<PyString>; WORDS.len()],
    data: &'a [u8],
    pos: usize,
    /// msgpack-python's defaults for `unpackb`: every limit is the
    /// buffer's length (maps: half of it)
    limit: usize,
    top: Top<'py>,
}

impl<'a, 'py> Decoder<'a, 'py> {
    fn take(&mut self, size: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(size).ok_or(DecodeError::Malformed)?;
        let bytes = self.data.get(self.pos..end).ok_or(DecodeError::Malformed)?;
        self.pos = end;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn length(&mut self, width: usize) -> Result<usize, DecodeError> {
        Ok(match width {
            1 => usize::from(self.fixed::<1>()?[0]),
            2 => usize::from(u16::from_be_bytes(self.fixed()?)),
            _ => u32::from_be_bytes(self.fixed()?) as usize,
        })
    }

    fn str(&mut self, size: usize) -> Decoded<'py> {
        if size > self.limit {
            return Err(DecodeError::Malformed);
        }
        let bytes = self.take(size)?;
        if let Some(index) = word_index(bytes) {
            return Ok(self.words[index].bind(self.py).clone().into_any());
        }
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::BadUtf8)?;
        Ok(PyString::new(self.py, text).into_any())
    }

    fn bin(&mut self, size: usize) -> Decoded<'py> {
        if size > self.limit {
            return Err(DecodeError::Malformed);
        }
        Ok(PyBytes::new(self.py, self.take(size)?).into_any())
    }

    fn array(&mut self, size: usize, open: usize) -> Decoded<'py> {
        if open >= STACK_SIZE || size > self.limit {
            return Err(DecodeError::Malformed);
        }
        // Made at its size and filled in place, as msgpack-python does:
        // appending grew it (a reallocation at 1, 5, 9... items) and cost
        // ~60 instructions an item (callgrind). A list left part empty by
        // an error is only dropped (its empty slots are NULL, which
        // `list_dealloc` and the GC's traversal skip).
        let length = ffi::Py_ssize_t::try_from(size).map_err(|_| DecodeError::Malformed)?;
        // SAFETY: PyList_New returns a new reference or NULL with an error set.
        let list = unsafe { Bound::from_owned_ptr_or_err(self.py, ffi::PyList_New(length))? };
        for index in 0..length {
            let item = self.value(open + 1)?;
            // SAFETY: `list` is a list of `length` slots, `index` one of
            // them, still empty; PyList_SetItem takes the item's reference.
            unsafe { ffi::PyList_SetItem(list.as_ptr(), index, item.into_ptr()) };
        }
        Ok(list)
    }

    fn map(&mut self, size: usize, open: usize) -> Decoded<'py> {
        if open >= STACK_SIZE || size > self.limit / 2 {
            return Err(DecodeError::Malformed);
        }
        let dict = PyDict::new(self.py);
        for _ in 0..size {
            let key = self.value(open + 1)?;
            let value = self.value(open + 1)?;
            if open == 0 {
                // (a str of a word's text is always the word's object)
                let word = TOP_WORDS
                    .iter()
                    .position(|&word| key.as_ptr() == self.words[word].as_ptr());
                if let Some(index) = word {
                    self.top[index] = Some(value.clone());
                }
            }
            // (unhashable key: TypeError, as msgpack's)
            dict.set_item(key, value)?;
        }
        Ok(dict.into_any())
    }

    /// An ext value as msgpack-python makes it: `Timestamp.from_bytes` for
    /// type -1, else `ExtType(code, data)`. Rare (no RPC sends one): the
    /// classes are looked up when met.
    fn ext(&mut self, size: usize) -> Decoded<'py> {
        if size > self.limit {
            return Err(DecodeError::Malformed);
        }
        let code = i8::from_be_bytes(self.fixed()?);
        let data = PyBytes::new(self.py, self.take(size)?);
        let msgpack = self.py.import("msgpack")?;
        if code == -1 {
            Ok(msgpack
                .getattr("Timestamp")?
                .call_method1("from_bytes", (data,))?)
        } else {
            Ok(msgpack.getattr("ExtType")?.call1((code, data))?)
        }
    }

    /// The value at `pos`, `open` containers being open around it.
    fn value(&mut self, open: usize) -> Decoded<'py> {
        let py = self.py;
        let byte = self.fixed::<1>()?[0];
        match byte {
            0x00..=0x7f => Ok(unsigned(self.py, u64::from(byte))),
            0x80..=0x8f => self.map(usize::from(byte & 0x0f), open),
            0x90..=0x9f => self.array(usize::from(byte & 0x0f), open),
            0xa0..=0xbf => self.str(usize::from(byte & 0x1f)),
            0xc0 => Ok(py.None().into_bound(py)),
            // 0xc1: never used
            0xc1 => Err(DecodeError::Malformed),
            0xc2 => Ok(PyBool::new(py, false).to_owned().into_any()),
            0xc3 => Ok(PyBool::new(py, true).to_owned().into_any()),
            0xc4..=0xc9 | 0xd9..=0xdf => self.sized(byte, open),
            0xca..=0xd3 => self.number(byte),
            // fixext 1, 2, 4, 8, 16
            0xd4..=0xd8 => self.ext(1 << (byte - 0xd4)),
            0xe0..=0xff => Ok(signed(self.py, i64::from(i8::from_be_bytes([byte])))),
        }
    }

    /// A value whose size follows its type byte in 1, 2 or 4 bytes: bin,
    /// ext, str, array, map.
    fn sized(&mut self, byte: u8, open: usize) -> Decoded<'py> {
        let width = match byte {
            0xc4 | 0xc7 | 0xd9 => 1,
            0xc5 | 0xc8 | 0xda | 0xdc | 0xde => 2,
            _ => 4,
        };
        let size = self.length(width)?;
        match byte {
            0xc4..=0xc6 => self.bin(size),
            0xc7..=0xc9 => self.ext(size),
            0xd9..=0xdb => self.str(size),
            0xdc | 0xdd => self.array(size, open),
            _ => self.map(size, open),
        }
    }

    /// float 32 and 64, uint 8 to 64, int 8 to 64 (0xca to 0xd3).
    fn number(&mut self, byte: u8) -> Decoded<'py> {
        Ok(match byte {
            0xca => PyFloat::new(self.py, f64::from(f32::from_be_bytes(self.fixed()?))).into_any(),
            0xcb => PyFloat::new(self.py, f64::from_be_bytes(self.fixed()?)).into_any(),
            0xcc => unsigned(self.py, u64::from(self.fixed::<1>()?[0])),
            0xcd => unsigned(self.py, u64::from(u16::from_be_bytes(self.fixed()?))),
            0xce => unsigned(self.py, u64::from(u32::from_be_bytes(self.fixed()?))),
            0xcf => unsigned(self.py, u64::from_be_bytes(self.fixed()?)),
            0xd0 => signed(self.py, i64::from(i8::from_be_bytes(self.fixed()?))),
            0xd1 => signed(self.py, i64::from(i16::from_be_bytes(self.fixed()?))),
            0xd2 => signed(self.py, i64::from(i32::from_be_bytes(self.fixed()?))),
            _ => signed(self.py, i64::from_be_bytes(self.fixed()?)),
        })
    }
}

/// One msgpack value filling `body` exactly, and what its top-level map
/// (if it is one) holds under `TOP_WORDS`.
fn decode_body<'py>(
    py: Python<'py>,
    body: &[u8],
) -> Result<(Bound<'py, PyAny>, Top<'py>), DecodeError> {
    let mut decoder = Decoder {
        py,
        words: words(py),
        data: body,
        pos: 0,
        limit: body.len(),
        top: [None, None, None],
    };
    let value = decoder.value(0)?;
    if decoder.pos != body.len() {
        return Err(DecodeError::Malformed);
    }
    Ok((value, decoder.top))
}

/// A body as `read` leaves it: decoded (with its `Top`), or a holder's
/// `find_values` answer read in place (`holder.rs`), decoded only if its
/// value is wanted after all.
enum Body<'a, 'py> {
    Value(Bound<'py, PyAny>, Top<'py>),
    Holder(&'a [u8], HolderAnswer<'a>),
}

impl<'py> Body<'_, 'py> {
    /// The body's value (and `Top`), decoded now if it was read in place.
    fn decoded(self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Top<'py>)> {
        match self {
            Body::Value(value, top) => Ok((value, top)),
            Body::Holder(body, _) => decode_later(py, body),
        }
    }

    fn value(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.decoded(py)?.0)
    }
}

/// A body `holder_answer` read, decoded: this cannot fail (see
/// `holder.rs`) but by a Python error while decoding (out of memory), then
/// an error, since it is too late to count the datagram as dropped.
fn decode_later<'py>(py: Python<'py>, body: &[u8]) -> PyResult<(Bound<'py, PyAny>, Top<'py>)> {
    decode_body(py, body)
        .map_err(|_| value_error("a holder's answer read in place did not decode".to_owned()))
}

// -- the shapes of answers (dhtquery.query.shapes is the reference) ------

/// kademlia's node ids are 20 bytes, but stock reads ids of 1 to 64.
const MAX_NODE_ID_SIZE: usize = 64;
const SHAPE_ANY: i64 = 0;
const SHAPE_BOOL: i64 = 1;
const SHAPE_NODE_ID: i64 = 2;
const SHAPE_CONTACTS: i64 = 3;
const SHAPE_FOUND_VALUE: i64 = 4;
const SHAPE_FOUND_VALUES: i64 = 5;

fn node_id(value: &Bound<'_, PyAny>) -> bool {
    value
        .cast_exact::<PyBytes>()
        .is_ok_and(|id| (1..=MAX_NODE_ID_SIZE).contains(&id.as_bytes().len()))
}

/// int (bool too), float, str or bytes, subclasses included (`isinstance`)
fn plain(value: &Bound<'_, PyAny>) -> bool {
    value.is_instance_of::<PyInt>()
        || value.is_instance_of::<PyFloat>()
        || value.is_instance_of::<PyString>()
        || value.is_instance_of::<PyBytes>()
}

/// An IPv4 or IPv6 literal, as `inet_pton` reads them (no names, no
/// zone, no leading zeros in an IPv4 part).
fn ip_literal(host: &str) -> bool {
    host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok()
}

fn contact(contact: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Ok(contact) = contact.cast_exact::<PyList>() else {
        return Ok(false);
    };
    if contact.len() != 3 || !node_id(&contact.get_item(0)?) {
        return Ok(false);
    }
    let host = contact.get_item(1)?;
    // (a str with a lone surrogate has no UTF-8: inet_pton refuses it)
    let Ok(host) = host.cast_exact::<PyString>() else {
        return Ok(false);
    };
    if !host.to_str().is_ok_and(ip_literal) {
        return Ok(false);
    }
    let port = contact.get_item(2)?;
    let Ok(port) = port.cast_exact::<PyInt>() else {
        return Ok(false);
    };
    Ok(port
        .extract::<i64>()
        .is_ok_and(|port| 0 < port && port < 65536))
}

fn contacts(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Ok(list) = value.cast_exact::<PyList>() else {
        return Ok(false);
    };
    for item in list.iter() {
        if !contact(&item)? {
            return Ok(false);
        }
    }
    Ok(true)
}

// (`top`: what `value`, if a dict, holds under `TOP_WORDS`: a dict made
// by the decoder, which noted them; a str made from "records" per call,
// hashed and compared, had cost ~700 instructions a lookup, callgrind)

fn found_value(value: &Bound<'_, PyAny>, top: &Top<'_>) -> PyResult<bool> {
    if value.is_exact_instance_of::<PyDict>() && top[TOP_VALUE].as_ref().is_some_and(plain) {
        return Ok(true);
    }
    contacts(value)
}

fn found_values(value: &Bound<'_, PyAny>, top: &Top<'_>) -> PyResult<bool> {
    if !value.is_exact_instance_of::<PyDict>() {
        return Ok(false);
    }
    if !top[TOP_RECORDS]
        .as_ref()
        .is_some_and(PyAnyMethods::is_exact_instance_of::<PyList>)
    {
        return Ok(false);
    }
    match &top[TOP_NODES] {
        Some(nodes) => contacts(nodes),
        None => Ok(true),
    }
}

/// Has `value` (decoded, `top` noted with it) the shape `code` names?
/// (`code` checked by the caller.)
fn shape_ok(code: i64, value: &Bound<'_, PyAny>, top: &Top<'_>) -> PyResult<bool> {
    match code {
        SHAPE_ANY => Ok(true),
        SHAPE_BOOL => Ok(value.is_exact_instance_of::<PyBool>()),
        SHAPE_NODE_ID => Ok(node_id(value)),
        SHAPE_CONTACTS => contacts(value),
        SHAPE_FOUND_VALUE => found_value(value, top),
        _ => found_values(value, top),
    }
}

/// The shape code `shapes` gives the RPC `request` was (its item 2), if
/// any; `InvalidArgumentError` for a code that names no shape.
fn shape_of(shapes: &Bound<'_, PyDict>, request: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    let name = entry_field(request, ENTRY_NAME)?;
    let Some(code) = shapes.get_item(&name)? else {
        return Ok(None);
    };
    match code
        .cast_exact::<PyInt>()
        .ok()
        .and_then(|c| c.extract::<i64>().ok())
    {
        Some(code) if (SHAPE_ANY..=SHAPE_FOUND_VALUES).contains(&code) => Ok(Some(code)),
        _ => Err(value_error(format!(
            "the shape of {} must be an int from 0 to 5, got {}",
            name.repr()?,
            code.repr()?
        ))),
    }
}

/// Field `index` of a request's entry: a tuple (or a subclass's) read in
/// place, not through `__getitem__` with the index made an int (any other
/// sequence still read by index). (Address and name read so in `read`:
/// ~145 -> ~40 instructions each, callgrind.)
fn entry_field<'py>(request: &Bound<'py, PyAny>, index: usize) -> PyResult<Bound<'py, PyAny>> {
    match request.cast::<PyTuple>() {
        Ok(tuple) => Ok(tuple.get_borrowed_item(index)?.to_owned()),
        Err(_) => request.get_item(index),
    }
}

/// `value`, the last 4 bytes of a message id (a pad), else
/// `InvalidArgumentError` ("{name} must be 4 bytes").
fn pad_of(value: &Bound<'_, PyAny>, name: &str) -> PyResult<[u8; MSG_ID_SIZE - 16]> {
    match value.cast_exact::<PyBytes>() {
        Ok(bytes) if bytes.as_bytes().len() == MSG_ID_SIZE - 16 => {
            let mut out = [0u8; MSG_ID_SIZE - 16];
            out.copy_from_slice(bytes.as_bytes());
            Ok(out)
        }
        _ => Err(value_error(format!(
            "{name} must be 4 bytes, got {}",
            value.repr()?
        ))),
    }
}

/// What `read_body` makes of a datagram: its status, its first part (a
/// message id, or a drop's kind), its body, its request's entry (None
/// if not an answer to one) and whether the answer's source is that
/// request's address or an equal exact tuple.
type BodyRead<'a, 'py> = (
    u8,
    Bound<'py, PyAny>,
    Body<'a, 'py>,
    Bound<'py, PyAny>,
    bool,
);

/// What an engine given the RPC table's core (`requests`) keeps to open
/// requests (`open`) and to end them as their answers arrive (`receive_at`).
struct Requests {
    core: Py<QueryCore>,
    /// the last 4 bytes of every message id (the table's pad)
    pad: [u8; MSG_ID_SIZE - 16],
    /// the tuple subclass a request's entry is made as (None: a tuple)
    entry: Option<Py<PyType>>,
    /// to make one of `entry` as `tuple.__new__(entry, fields)` does,
    /// through tuple's own `tp_new` (`Vocab::subtuple`; before, a call of
    /// `tuple.__new__`: cachegrind, `bench profile --sockets`, one run,
    /// 213.4 k -> 210.8 k instructions a `get_all`, three requests; runs
    /// differ by up to 1.6 k). Allocating the subclass with `PyType_GenericAlloc`
    /// and filling it would save more, but from Python 3.14 a tuple caches
    /// its hash (`ob_hash`, which tuple's `tp_new` resets to -1 after the
    /// allocation, and the allocator leaves 0): an entry made that way
    /// would hash as 0 on 3.14, which the abi3 wheel runs on.
    vocab: &'static Vocab,
    /// core query id (16 bytes) of a request registered again (sent again
    /// or granted lag) -> its message id: an answer ends its entry here
    resent: Py<PyDict>,
}

// Where a request's entry (the RPC table's _Pending) keeps what the engine
// reads, and where its retry list keeps the tries made.
const ENTRY_QUERY_ID: usize = 0;
const ENTRY_ADDRESS: usize = 1;
const ENTRY_NAME: usize = 2;
const ENTRY_CALLBACK: usize = 4;
const ENTRY_CONTEXT: usize = 5;
const ENTRY_SENT: usize = 6;
const ENTRY_RETRY: usize = 7;
const ENTRY_LAG: usize = 8;
const ENTRY_LAGGED: usize = 10;
const RETRY_TRIES: usize = 2;
/// The RTT of an answer to a request sent more than once (Karn's rule:
/// which copy was answered is unknown, so no sample).
const AMBIGUOUS_RTT: f64 = -1.0;

#[pyclass(frozen, module = "dhtquery._core", name = "DatagramEngine")]
pub struct DatagramEngine {
    pub(crate) pending: Py<PyDict>,
    shapes: Option<Py<PyDict>>,
    requests: Option<Requests>,
    dispatch: OnceLock<Dispatch>,
    /// what `receive_at` serves requests with (`serve`); None: it hands
    /// every request over
    serving: Mutex<Option<Arc<Serving>>>,
    /// `find_values` answers kept packed, by key (`keep_answer`)
    kept: Mutex<KeptAnswers>,
    /// `find_value` answers (a plain value found) kept packed, by key
    /// (`keep_answer(rpc="find_value")`)
    kept_values: Mutex<KeptAnswers>,
}

/// What the protocol reads before it hands an answer to its callback (see
/// `DhtProtocol.datagram_received`): while both queues of requests waiting
/// for the window are empty, no request failed lately, and the peer is
/// known to answer our RPCs, the protocol would only call the callback.
struct Dispatch {
    waiting: Py<PyAny>,
    waiting_background: Py<PyAny>,
    recently_failed: Py<PyDict>,
    extensions: Py<PyDict>,
}

/// What became of an answer `Dispatch` was given.
enum Dispatched {
    /// not handed over (the protocol's)
    Not,
    /// handed to its callback, which returned
    Returned,
    /// handed to its callback, which raised
    Raised(PyErr),
}

impl Dispatch {
    /// `request`'s callback called with the answer `body` from `address`,
    /// if it is a `LookupAnswers` and the protocol would do nothing else.
    fn answer(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyAny>,
        address: &Bound<'_, PyAny>,
        body: &Body<'_, '_>,
    ) -> PyResult<Dispatched> {
        let Ok(entry) = request.cast::<PyTuple>() else {
            return Ok(Dispatched::Not);
        };
        if entry.len() <= ENTRY_CONTEXT {
            return Ok(Dispatched::Not);
        }
        let callback = entry.get_borrowed_item(ENTRY_CALLBACK)?;
        let Ok(answers) = callback.cast_exact::<LookupAnswers>() else {
            return Ok(Dispatched::Not);
        };
        if !self.recently_failed.bind(py).is_empty()
            || self.waiting.bind(py).len()? != 0
            || self.waiting_background.bind(py).len()? != 0
        {
            return Ok(Dispatched::Not);
        }
        let known = self.extensions.bind(py).get_item(address)?;
        if !known.is_some_and(|known| known.is(PyBool::new(py, true))) {
            return Ok(Dispatched::Not);
        }
        let name = entry.get_borrowed_item(ENTRY_NAME)?;
        let context = entry.get_borrowed_item(ENTRY_CONTEXT)?;
        let answered = match body {
            Body::Value(value, _) => {
                let ok = PyBool::new(py, true);
                LookupAnswers::answer_to(
                    &answers,
                    &Reply {
                        context: &context,
                        address,
                        name: &name,
                        ok: &ok,
                        value,
                    },
                )
            }
            Body::Holder(bytes, holder) => {
                LookupAnswers::answer_holder(&answers, &context, address, &name, holder, || {
                    Ok(decode_later(py, bytes)?.0)
                })
            }
        };
        Ok(match answered {
            Ok(()) => Dispatched::Returned,
            Err(error) => Dispatched::Raised(error),
        })
    }
}

/// The fair share a request answered here is admitted by: the core's own
/// (admitted in Rust, no Python call: see `fairness.rs`), or any object's
/// `admit` method.
enum Fair {
    Core(Py<FairShare>),
    Other(Py<PyAny>),
}

/// What the engine serves requests with (`serve`).
struct Serving {
    replay: Py<ReplayCache>,
    records: Py<PyAny>,
    client_pad: [u8; MSG_ID_SIZE - 16],
    fair_share: Option<Fair>,
    /// the body of the answer to a ping (this node's id packed), if the
    /// engine answers pings
    ping: Option<Py<PyBytes>>,
    /// the plain-value store whose `generation` validates the kept
    /// `find_value` answers, if the engine answers `find_value`
    values: Option<Py<PyAny>>,
    /// the protocol's counters (a dict, or a subclass's: a `Counter`)
    stats: Option<Py<PyDict>>,
}

/// `stats[name] += 1`, the dict's own storage written (a `Counter`'s item
/// assignment from Python goes through its class's `__setitem__` slot,
/// there because `Counter` defines `__delitem__`: ~1.4 k instructions an
/// increment, callgrind, against ~0.1 k here).
fn count(stats: Option<&Py<PyDict>>, name: &Bound<'_, PyString>) -> PyResult<()> {
    let Some(stats) = stats else {
        return Ok(());
    };
    let py = name.py();
    let stats = stats.bind(py);
    let total = match stats.get_item(name)? {
        // (an int's add made here: PyNumber_Add's dispatch cost ~70
        // instructions an increment, callgrind)
        Some(value) => match value
            .cast_exact::<PyInt>()
            .ok()
            .and_then(|int| int.extract::<i64>().ok())
        {
            Some(total) if total < i64::MAX => (total + 1).into_pyobject(py)?.into_any(),
            _ => value.add(1)?,
        },
        None => 1u8.into_pyobject(py)?.into_any(),
    };
    stats.set_item(name, total)
}

/// A key's `find_values` (or `find_value`) answer, packed: valid while the
/// store's `generation` is `generation` and the time is before `until`.
struct Kept {
    generation: i64,
    until: f64,
    body: Py<PyBytes>,
    size: usize,
}

/// The kept answers, bounded by count and bytes (the oldest made leave
/// first, as the protocol's dict did). Keyed by the key's bytes, hashed
/// here: a request's key is looked up from its datagram, no bytes object
/// made (~350 instructions a request served with Python's hash, callgrind).
struct KeptAnswers {
    table: OrderedTable<Kept>,
    /// the keys' hasher (seeded per engine: keys are the askers')
    hasher: foldhash::fast::RandomState,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl KeptAnswers {
    fn new() -> Self {
        KeptAnswers {
            table: OrderedTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            bytes: 0,
            max_count: 0,
            max_bytes: 0,
        }
    }

    fn find(&self, py: Python<'_>, key: &[u8]) -> PyResult<(Option<u32>, u64)> {
        let hash = self.hasher.hash_one(key);
        let slot = self.table.find_with(hash, |kept, _| {
            Ok(kept
                .bind(py)
                .cast::<PyBytes>()
                .is_ok_and(|kept| kept.as_bytes() == key))
        })?;
        Ok((slot, hash))
    }

    fn forget(&mut self, key: &Bound<'_, PyBytes>) -> PyResult<u64> {
        let (slot, hash) = self.find(key.py(), key.as_bytes())?;
        if let Some(slot) = slot {
            self.bytes -= self.table.remove(slot).size;
        }
        Ok(hash)
    }

    fn keep(&mut self, key: &Bound<'_, PyBytes>, kept: Kept) -> PyResult<()> {
        let hash = self.forget(key)?;
        if kept.size > self.max_bytes {
            return Ok(());
        }
        self.bytes += kept.size;
        self.table.insert(key.as_any(), hash, kept);
        while self.table.len() > self.max_count || self.bytes > self.max_bytes {
            match self.table.pop_oldest() {
                Some(old) => self.bytes -= old.size,
                None => break,
            }
        }
        Ok(())
    }

    /// The key's answer if it is still valid at `now` with the store at
    /// `generation`.
    fn valid<'py>(
        &self,
        py: Python<'py>,
        key: &[u8],
        generation: Option<i64>,
        now: f64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let Some(slot) = self.find(py, key)?.0 else {
            return Ok(None);
        };
        let kept = self.table.value(slot);
        if Some(kept.generation) != generation
            || now.partial_cmp(&kept.until) != Some(std::cmp::Ordering::Less)
        {
            return Ok(None);
        }
        Ok(Some(kept.body.bind(py).clone()))
    }
}

/// The store's `generation` as the kept answers compare it: an exact int
/// that fits in 64 bits, else None (no kept answer is valid).
fn generation_of(records: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    let generation = records.getattr(intern!(records.py(), "generation"))?;
    Ok(generation
        .cast_exact::<PyInt>()
        .ok()
        .and_then(|int| int.extract::<i64>().ok()))
}

/// Where a `ping` request's body, as msgpack packs `["ping", [id]]` (stock
/// rpcudp's and ours: fixarray, fixstr, fixarray, bin 8), has its sender's
/// id (1 to 64 bytes): a range of the body. Any other encoding is decoded
/// and served by the protocol.
fn ping_request(body: &[u8]) -> Option<Range<usize>> {
    const HEAD: &[u8] = b"\x92\xa4ping\x91\xc4";
    if body.len() < HEAD.len() + 1 || &body[..HEAD.len()] != HEAD {
        return None;
    }
    let id_start = HEAD.len() + 1;
    let id_size = usize::from(body[HEAD.len()]);
    if !(1..=MAX_NODE_ID_SIZE).contains(&id_size) || body.len() != id_start + id_size {
        return None;
    }
    Some(id_start..body.len())
}

/// Where a `find_values` request's body, as msgpack packs `["find_values",
/// [id, key]]` (stock rpcudp's and ours: fixarray, fixstr, fixarray, bin 8
/// each), has its sender's id and its key, both 1 to 64 bytes: `(id, key)`
/// as ranges of the body. Any other encoding (valid msgpack of the same
/// value too) is decoded and served by the protocol as before.
fn find_values_request(body: &[u8]) -> Option<(Range<usize>, Range<usize>)> {
    id_and_key(body, b"\x92\xabfind_values\x92\xc4")
}

/// `find_values_request` for a `find_value` request (stock `Server.get`'s):
/// `["find_value", [id, key]]` packed the same way.
fn find_value_request(body: &[u8]) -> Option<(Range<usize>, Range<usize>)> {
    id_and_key(body, b"\x92\xaafind_value\x92\xc4")
}

/// The `(id, key)` ranges of a request's body that starts with `head` (the
/// RPC's name and the arguments' array, up to the id's bin 8 marker) and
/// holds its two arguments as bin 8 of 1 to 64 bytes each, nothing after.
fn id_and_key(body: &[u8], head: &[u8]) -> Option<(Range<usize>, Range<usize>)> {
    if body.len() < head.len() + 1 || &body[..head.len()] != head {
        return None;
    }
    let id_size = usize::from(body[head.len()]);
    let id_start = head.len() + 1;
    let id_end = id_start + id_size;
    if !(1..=MAX_NODE_ID_SIZE).contains(&id_size) || body.len() < id_end + 2 {
        return None;
    }
    if body[id_end] != 0xc4 {
        return None;
    }
    let key_size = usize::from(body[id_end + 1]);
    let key_start = id_end + 2;
    if !(1..=MAX_NODE_ID_SIZE).contains(&key_size) || body.len() != key_start + key_size {
        return None;
    }
    Some((id_start..id_end, key_start..body.len()))
}

fn answer<'py>(
    py: Python<'py>,
    status: u8,
    first: Bound<'py, PyAny>,
    value: Bound<'py, PyAny>,
    pending: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [status.into_pyobject(py)?.into_any(), first, value, pending],
    )
}

/// `receive`'s answer in parts: (status, first, value, pending).
type Parts<'py> = (u8, Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>);

fn dropped<'py>(py: Python<'py>, kind: &str) -> Parts<'py> {
    let none = py.None().into_bound(py);
    (DROP, PyString::new(py, kind).into_any(), none.clone(), none)
}

#[pymethods]
impl DatagramEngine {
    #[new]
    #[pyo3(signature = (pending, shapes = None, *, requests = None))]
    fn new(
        pending: &Bound<'_, PyAny>,
        shapes: Option<&Bound<'_, PyAny>>,
        requests: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let Ok(pending) = pending.cast_exact::<PyDict>() else {
            return Err(type_error(format!(
                "pending must be a dict, got {}",
                type_name(pending)
            )));
        };
        let shapes = match shapes {
            None => None,
            Some(shapes) if shapes.is_none() => None,
            Some(shapes) => match shapes.cast_exact::<PyDict>() {
                Ok(shapes) => Some(shapes.clone().unbind()),
                Err(_) => {
                    return Err(type_error(format!(
                        "shapes must be a dict or None, got {}",
                        type_name(shapes)
                    )))
                }
            },
        };
        let requests = match requests {
            None => None,
            Some(requests) if requests.is_none() => None,
            Some(requests) => Some(Requests::check(requests)?),
        };
        Ok(DatagramEngine {
            pending: pending.clone().unbind(),
            shapes,
            requests,
            dispatch: OnceLock::new(),
            serving: Mutex::new(None),
            kept: Mutex::new(KeptAnswers::new()),
            kept_values: Mutex::new(KeptAnswers::new()),
        })
    }

    #[getter]
    fn shapes(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        self.shapes.as_ref().map(|shapes| shapes.clone_ref(py))
    }

    #[getter]
    fn pending(&self, py: Python<'_>) -> Py<PyDict> {
        self.pending.clone_ref(py)
    }

    fn receive<'py>(
        &self,
        py: Python<'py>,
        datagram: &Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (status, first, value, request) = self.read(py, datagram, address)?;
        answer(py, status, first, value, request)
    }

    /// `receive`, and an answer's request ended too: its query in the
    /// table's core finished at `now` and its round trip measured; given
    /// `peers` (a `PeerBook`), an answer whose shape was judged here is
    /// fed to it as `peers.answered` would be (see `_core.pyi`).
    #[pyo3(signature = (datagram, address, now, lag, peers = None))]
    fn receive_at<'py>(
        &self,
        py: Python<'py>,
        datagram: &Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
        now: &Bound<'py, PyAny>,
        lag: &Bound<'py, PyAny>,
        peers: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let now = check_now(now)?;
        let lag = check_float("lag", lag, true)?;
        let peers = peers.filter(|peers| !peers.is_none());
        let parts = self.receive_one(py, datagram, address, now, lag, peers)?;
        PyTuple::new(
            py,
            [
                parts.status.into_pyobject(py)?.into_any(),
                parts.first,
                parts.value,
                parts.request,
                PyFloat::new(py, parts.rtt).into_any(),
            ],
        )
    }

    /// Every datagram waiting in `socket`'s socket (at most `receiver`'s
    /// count, one `recvmmsg`), each handled as `receive_at` handles it at
    /// `now`, in the order they came. An answer served to a client, or to a
    /// node whose id is in `known` (the routing table's contacts: nothing
    /// to welcome), or served again (`REPLAYED`) is sent back through
    /// `socket` after the batch (one `sendmmsg`); a `HANDLED` answer is
    /// done; any other outcome is given to `dispatch(status, first, value,
    /// request, rtt, address)` as `receive_at` would have returned it, and
    /// a datagram whose handling raised as `(FAILED, None, the exception,
    /// None, 0.0, address)`. A falsy return of `dispatch` stops the batch
    /// (the transport closed). Returns how many were read. (See
    /// `_core.pyi`; why: README, "A wake-up in one core call".)
    #[pyo3(signature = (receiver, socket, now, lag, peers, dispatch, known = None))]
    #[allow(clippy::too_many_arguments)]
    fn receive_batch<'py>(
        &self,
        py: Python<'py>,
        receiver: &Bound<'py, PyAny>,
        socket: &Bound<'py, PyAny>,
        now: &Bound<'py, PyAny>,
        lag: &Bound<'py, PyAny>,
        peers: &Bound<'py, PyAny>,
        dispatch: &Bound<'py, PyAny>,
        known: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<usize> {
        let receiver =
            exact_argument::<BatchReceiver>(receiver, "receiver", "a BatchReceiver of this core")?;
        let socket =
            exact_argument::<DatagramSocket>(socket, "socket", "a DatagramSocket of this core")?;
        self.requests()?;
        let now = check_now(now)?;
        let lag = check_float("lag", lag, true)?;
        let peers = Some(peers).filter(|peers| !peers.is_none());
        callable(dispatch.clone(), "dispatch")?;
        let known = match known.filter(|known| !known.is_none()) {
            None => None,
            Some(known) => Some(exact_argument::<PySet>(known, "known", "a set or None")?),
        };
        let socket = socket.get();
        if socket.is_closed() {
            return Ok(0);
        }
        let batch = receiver.get().read(py, socket.fd(), true)?;
        let count = batch.len();
        // The answers served here, sent together after the batch: one
        // sendmmsg, not a sendto each (see README, "Batch receiving").
        let mut replies: Vec<Answer<'py>> = Vec::new();
        // (what Python is handed: true to go on with the batch)
        let hand_over = |parts: Parts5<'py>, address: &Bound<'py, PyAny>| -> PyResult<bool> {
            dispatch
                .call1((
                    parts.status,
                    parts.first,
                    parts.value,
                    parts.request,
                    PyFloat::new(py, parts.rtt),
                    address,
                ))?
                .is_truthy()
        };
        for received in batch {
            let address = received.address.as_any();
            let parts = match self.receive_one(py, received.data.as_any(), address, now, lag, peers)
            {
                Ok(parts) => parts,
                Err(error) => {
                    let error = error.into_value(py).into_bound(py).into_any();
                    if !hand_over(five(py, FAILED, py.None().into_bound(py), error), address)? {
                        break;
                    }
                    continue;
                }
            };
            let status = parts.status;
            // (an answer handled as its request's address: that peer's
            // datagrams from now on carry the request's object; see `adopt`.
            // With `receive_one`'s swap, callgrind, `bench profile --sockets`,
            // slope 1,000-3,000 lookups, one run: `same_address` 6.0 k ->
            // 0.6 k instructions a `get_all`. An optimisation: nothing in it
            // may fail the batch)
            if let Some(asked) = &parts.asked {
                if !asked.is(address) {
                    if let Ok(asked) = asked.cast_exact::<PyTuple>() {
                        receiver.get().adopt(&received.source, true, asked).ok();
                    }
                }
            }
            // (served to a client, or to a node known already: Python
            // would only send it; a new node is Python's to welcome)
            let nobody_to_welcome = || -> PyResult<bool> {
                Ok(parts.first.is_none()
                    || match known {
                        Some(known) => known.contains(&parts.first)?,
                        None => false,
                    })
            };
            if (status == REPLAYED || (status == SERVED && nobody_to_welcome()?))
                && parts.value.is_exact_instance_of::<PyBytes>()
            {
                replies.push(Answer {
                    // (cast checked above)
                    datagram: parts.value.cast_into_exact::<PyBytes>()?,
                    source: received.source,
                    source_len: received.source_len,
                    address: received.address.into_any(),
                });
                continue;
            }
            if status == HANDLED && parts.value.is_none() {
                continue;
            }
            if !hand_over(parts, address)? {
                break;
            }
        }
        socket.answer_many(py, &replies)?;
        Ok(count)
    }

    /// From now on, `receive_at` hands a `CHECKED` answer (not
    /// retransmitted: Karn's rule, which the protocol applies first) whose
    /// request's callback is a `LookupAnswers` to it in the call, and says
    /// `HANDLED` (the value: None, or what the callback raised), while
    /// `waiting` and `waiting_background` (the protocol's queues) are empty,
    /// `recently_failed` too, and `extensions` holds True for the address:
    /// what `DhtProtocol.datagram_received` would have done (see
    /// `_core.pyi`). Once per engine.
    fn dispatch_answers(
        &self,
        waiting: &Bound<'_, PyAny>,
        waiting_background: &Bound<'_, PyAny>,
        recently_failed: &Bound<'_, PyAny>,
        extensions: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let dict = |value: &Bound<'_, PyAny>, name: &str| -> PyResult<Py<PyDict>> {
            match value.cast_exact::<PyDict>() {
                Ok(dict) => Ok(dict.clone().unbind()),
                Err(_) => Err(type_error(format!(
                    "{name} must be a dict, got {}",
                    type_name(value)
                ))),
            }
        };
        let dispatch = Dispatch {
            waiting: waiting.clone().unbind(),
            waiting_background: waiting_background.clone().unbind(),
            recently_failed: dict(recently_failed, "recently_failed")?,
            extensions: dict(extensions, "extensions")?,
        };
        if self.dispatch.set(dispatch).is_err() {
            return Err(value_error(
                "this engine dispatches answers already".to_owned(),
            ));
        }
        Ok(())
    }

    /// Serve requests in `receive_at` (see `_core.pyi`): shed by
    /// `fair_share`, answered again from `replay`, a `find_values` answered
    /// from its kept answer while `records`' generation holds, a
    /// `find_value` from its kept answer while `values`' generation holds
    /// (given `values`), a ping (given `ping`).
    #[pyo3(signature = (replay, records, client_pad, fair_share = None, *, stats = None, max_answers = 1024, max_answer_bytes = 1_048_576, ping = None, values = None))]
    #[allow(clippy::too_many_arguments)]
    fn serve(
        &self,
        replay: &Bound<'_, PyAny>,
        records: &Bound<'_, PyAny>,
        client_pad: &Bound<'_, PyAny>,
        fair_share: Option<&Bound<'_, PyAny>>,
        stats: Option<&Bound<'_, PyAny>>,
        max_answers: usize,
        max_answer_bytes: usize,
        ping: Option<&Bound<'_, PyAny>>,
        values: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.requests()?;
        let values = values
            .filter(|values| !values.is_none())
            .map(|values| values.clone().unbind());
        let ping = match ping.filter(|ping| !ping.is_none()) {
            None => None,
            Some(ping) => Some(
                exact_argument::<PyBytes>(ping, "ping", "bytes or None")?
                    .clone()
                    .unbind(),
            ),
        };
        let replay = exact_argument::<ReplayCache>(replay, "replay", "a ReplayCache of this core")?;
        let pad = pad_of(client_pad, "client_pad")?;
        let fair_share = fair_share.filter(|fair| !fair.is_none());
        let stats = match stats.filter(|stats| !stats.is_none()) {
            None => None,
            Some(stats) => Some(
                stats
                    .cast::<PyDict>()
                    .map_err(|_| {
                        type_error(format!(
                            "stats must be a dict or None, got {}",
                            type_name(stats)
                        ))
                    })?
                    .clone()
                    .unbind(),
            ),
        };
        *self.serving.lock() = Some(Arc::new(Serving {
            replay: replay.clone().unbind(),
            records: records.clone().unbind(),
            client_pad: pad,
            fair_share: fair_share.map(|fair| match fair.cast_exact::<FairShare>() {
                Ok(core) => Fair::Core(core.clone().unbind()),
                Err(_) => Fair::Other(fair.clone().unbind()),
            }),
            stats,
            ping,
            values,
        }));
        for kept in [&self.kept, &self.kept_values] {
            let mut kept = kept.lock();
            kept.max_count = max_answers;
            kept.max_bytes = max_answer_bytes;
        }
        Ok(())
    }

    /// Keep `body` as `key`'s packed answer to `rpc` (`find_values` or
    /// `find_value`), valid while the store's generation is `generation`
    /// and before `until`.
    #[pyo3(signature = (key, generation, until, body, *, rpc = None))]
    fn keep_answer(
        &self,
        key: &Bound<'_, PyAny>,
        generation: &Bound<'_, PyAny>,
        until: f64,
        body: &Bound<'_, PyAny>,
        rpc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let kept = self.kept_of(rpc)?;
        let key = exact_argument::<PyBytes>(key, "key", "bytes")?;
        let body = exact_argument::<PyBytes>(body, "body", "bytes")?;
        let generation = exact_argument::<PyInt>(generation, "generation", "an int")?.extract()?;
        kept.lock().keep(
            key,
            Kept {
                generation,
                until,
                body: body.clone().unbind(),
                size: body.as_bytes().len(),
            },
        )
    }

    /// Forget `key`'s kept answer to `rpc`, if any.
    #[pyo3(signature = (key, *, rpc = None))]
    fn forget_answer(
        &self,
        key: &Bound<'_, PyAny>,
        rpc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let kept = self.kept_of(rpc)?;
        let key = exact_argument::<PyBytes>(key, "key", "bytes")?;
        kept.lock().forget(key)?;
        Ok(())
    }

    /// Forget every kept answer (to both RPCs).
    fn forget_answers(&self) {
        for kept in [&self.kept, &self.kept_values] {
            let mut kept = kept.lock();
            kept.table = OrderedTable::new();
            kept.bytes = 0;
        }
    }

    /// `key`'s kept answer to `rpc` if it is valid at `now` with the store
    /// at `generation`.
    #[pyo3(signature = (key, generation, now, *, rpc = None))]
    fn kept_answer<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        generation: &Bound<'py, PyAny>,
        now: f64,
        rpc: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let kept = self.kept_of(rpc)?;
        let key = exact_argument::<PyBytes>(key, "key", "bytes")?;
        let generation = generation
            .cast_exact::<PyInt>()
            .ok()
            .and_then(|int| int.extract::<i64>().ok());
        kept.lock().valid(key.py(), key.as_bytes(), generation, now)
    }

    /// The kept answers to `rpc`, oldest first: key -> (generation, until,
    /// body).
    #[pyo3(signature = (*, rpc = None))]
    fn kept_answers<'py>(
        &self,
        py: Python<'py>,
        rpc: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let kept = self.kept_of(rpc)?;
        let out = PyDict::new(py);
        let kept = kept.lock();
        for (key, entry) in kept.table.in_order() {
            out.set_item(
                key.bind(py),
                (entry.generation, entry.until, entry.body.bind(py)),
            )?;
        }
        Ok(out)
    }

    /// Bytes of the kept answers (to both RPCs).
    #[getter]
    fn kept_bytes(&self) -> usize {
        self.kept.lock().bytes + self.kept_values.lock().bytes
    }

    /// Open a request to `address`: its one-result query registered in the
    /// table's core (due in `timeout`), its message id made, its entry kept
    /// in `pending`; returns the request's datagram (see `_core.pyi`).
    #[pyo3(signature = (timeout, now, lag, address, name, future, callback, context, body, deadline = None, overdue = None))]
    #[allow(clippy::too_many_arguments)]
    fn open<'py>(
        &self,
        py: Python<'py>,
        timeout: &Bound<'py, PyAny>,
        now: &Bound<'py, PyAny>,
        lag: &Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
        name: &Bound<'py, PyAny>,
        future: &Bound<'py, PyAny>,
        callback: &Bound<'py, PyAny>,
        context: &Bound<'py, PyAny>,
        body: &Bound<'py, PyAny>,
        deadline: Option<&Bound<'py, PyAny>>,
        overdue: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let requests = self.requests()?;
        let timeout = check_timeout(py, timeout)?;
        let now = check_now(now)?;
        let lag = check_float("lag", lag, true)?;
        let Ok(body) = body.cast_exact::<PyBytes>() else {
            return Err(type_error(format!(
                "body must be bytes, got {}",
                type_name(body)
            )));
        };
        let deadline = match deadline {
            Some(deadline) if !deadline.is_none() => Some(check_float("deadline", deadline, true)?),
            _ => None,
        };
        let none = py.None().into_bound(py);
        let request = Request {
            address,
            name,
            future,
            callback,
            context,
            body: body.as_bytes(),
        };
        requests.open_one(
            self.pending.bind(py),
            &request,
            timeout,
            &Times::new(py, now, lag),
            deadline,
            overdue.unwrap_or(&none),
        )
    }

    /// Open, frame and send a lookup's asks in one call (see `_core.pyi`):
    /// per ask, the RPC and its timeout by the peer's timing in `peers`
    /// (as `DhtProtocol._request` reads it for an overdue request), the
    /// request opened as `open` opens it and its datagram given to `send`.
    #[pyo3(signature = (asks, names, bodies, now, lag, peers, extensions, budget, span, first_span, callback, overdue, send))]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open_asks<'py>(
        &self,
        py: Python<'py>,
        asks: &Bound<'py, PyAny>,
        names: &Bound<'py, PyAny>,
        bodies: &Bound<'py, PyAny>,
        now: &Bound<'py, PyAny>,
        lag: &Bound<'py, PyAny>,
        peers: &Bound<'py, PyAny>,
        extensions: &Bound<'py, PyAny>,
        budget: &Bound<'py, PyAny>,
        span: &Bound<'py, PyAny>,
        first_span: &Bound<'py, PyAny>,
        callback: &Bound<'py, PyAny>,
        overdue: &Bound<'py, PyAny>,
        send: &Bound<'py, PyAny>,
    ) -> PyResult<(f64, u32, usize)> {
        let requests = self.requests()?;
        let asks = exact_argument::<PyList>(asks, "asks", "a list")?;
        let names = exact_argument::<PyTuple>(names, "names", "a tuple (ours, stock)")?;
        if names.len() != 2 {
            return Err(type_error(format!(
                "names must be a tuple (ours, stock), got {} items",
                names.len()
            )));
        }
        let bodies = exact_argument::<PyDict>(bodies, "bodies", "a dict")?;
        let extensions = exact_argument::<PyDict>(extensions, "extensions", "a dict")?;
        let now = check_now(now)?;
        let lag = check_float("lag", lag, true)?;
        let budget = if budget.is_none() {
            None
        } else {
            Some(check_timeout(py, budget)?)
        };
        let span = check_float("span", span, false)?;
        let first_span = check_float("first_span", first_span, false)?;
        // (a DatagramSocket sends with no Python call: see outbox.rs)
        let native = send.cast_exact::<DatagramSocket>().ok();
        if native.is_none() && !send.is_callable() {
            return Err(type_error(format!(
                "send must be a DatagramSocket or callable, got {}",
                type_name(send)
            )));
        }
        let book = peers.cast_exact::<PeerBook>().ok();
        let pending = self.pending.bind(py);
        let none = py.None().into_bound(py);
        let (ours, stock) = (names.get_item(0)?, names.get_item(1)?);
        // (the batch's floats made once: they are immutable)
        let times = Times::new(py, now, lag);
        let mut earliest = f64::INFINITY;
        let mut refused = 0u32;
        for (index, ask) in asks.iter().enumerate() {
            let address = ask.get_item(1)?;
            let known = extensions
                .get_item(&address)?
                .filter(|known| !known.is_none());
            let is_stock = known
                .as_ref()
                .is_some_and(|known| known.is(PyBool::new(py, false)));
            let name = if is_stock { &stock } else { &ours };
            let Some(body) = bodies.get_item(name)? else {
                // (its body is not packed yet: the caller packs it and
                // sends the rest)
                return Ok((earliest, refused, index));
            };
            let Ok(body) = body.cast_exact::<PyBytes>() else {
                return Err(type_error(format!(
                    "a body must be bytes, got {}",
                    type_name(&body)
                )));
            };
            let (first, timeout) = ask_timing(
                peers,
                book,
                &address,
                !is_stock && known.is_none(),
                budget,
                (span, first_span),
            )?;
            let request = Request {
                address: &address,
                name,
                future: &none,
                callback,
                context: &ask,
                body: body.as_bytes(),
            };
            let datagram = requests.open_one(
                pending,
                &request,
                first,
                &times,
                Some(now + timeout),
                overdue,
            )?;
            if first < earliest {
                earliest = first;
            }
            let outcome = match native {
                Some(native) => DatagramSocket::send_to(native, &datagram, &address),
                None => send.call1((datagram, &address)).map(|_| ()),
            };
            if let Err(error) = outcome {
                // uvloop: an address of another family than the socket's
                if !error.is_instance_of::<PyValueError>(py) {
                    return Err(error);
                }
                refused += 1;
            }
        }
        Ok((earliest, refused, asks.len()))
    }
}

/// When an ask to `address` is overdue and when it is given up, `(first,
/// timeout)`, as `DhtProtocol._request` times an overdue request: from the
/// peer's `timing` in `peers` (read in place if it is `book`), given up at
/// `due` if `ours_unknown` (our RPC, `extensions` silent on the peer) and
/// the peer answered before, else within `budget`, else `spans.0` of its
/// base RTOs if measured, else `spans.1`.
fn ask_timing(
    peers: &Bound<'_, PyAny>,
    book: Option<&Bound<'_, PeerBook>>,
    address: &Bound<'_, PyAny>,
    ours_unknown: bool,
    budget: Option<f64>,
    (span, first_span): (f64, f64),
) -> PyResult<(f64, f64)> {
    // (the book borrowed per ask and let go: `send` may run Python code)
    let (due, measured, answered_before) = if let Some(book) = book {
        let mut book = book.borrow_mut();
        let (_, due, measured) = book.timing_of(address)?;
        (
            due,
            measured,
            ours_unknown && book.successes_of(address)? > 0,
        )
    } else {
        let (_, due, measured): (f64, f64, bool) =
            peers.call_method1("timing", (address,))?.extract()?;
        let answered = ours_unknown
            && peers
                .call_method1("successes", (address,))?
                .extract::<u64>()?
                > 0;
        (due, measured, answered)
    };
    let timeout = if answered_before {
        // an extension RPC to a peer that answered others: one try at its
        // RTO (a stock peer, most likely: see DhtProtocol._request)
        due
    } else {
        match budget {
            Some(budget) => budget,
            None if measured => span * due,
            None => first_span,
        }
    };
    let first = if due < timeout { due } else { timeout };
    if !(first > 0.0 && first <= MAX_TIMEOUT) {
        // (only a PeerBook of Python's own could say so)
        let py = address.py();
        return Err(value_error(format!(
            "timeout must be > 0 and <= {}, got {}",
            float_repr(py, MAX_TIMEOUT)?,
            float_repr(py, first)?
        )));
    }
    Ok((first, timeout))
}

/// The time a request is opened at, and the floats its entry keeps of it
/// (made once for a batch of requests: floats are immutable).
struct Times<'py> {
    now: f64,
    now_float: Bound<'py, PyAny>,
    lag: Bound<'py, PyAny>,
    zero: Bound<'py, PyAny>,
}

impl<'py> Times<'py> {
    fn new(py: Python<'py>, now: f64, lag: f64) -> Self {
        Times {
            now,
            now_float: PyFloat::new(py, now).into_any(),
            lag: PyFloat::new(py, lag).into_any(),
            zero: PyFloat::new(py, 0.0).into_any(),
        }
    }
}

/// One request to open: where, which RPC, who hears its end, its body.
struct Request<'a, 'py> {
    address: &'a Bound<'py, PyAny>,
    name: &'a Bound<'py, PyAny>,
    future: &'a Bound<'py, PyAny>,
    callback: &'a Bound<'py, PyAny>,
    context: &'a Bound<'py, PyAny>,
    body: &'a [u8],
}

/// `value`, an argument, as exactly a `T`, else `InvalidArgumentTypeError`
/// ("{name} must be {what}").
fn exact_argument<'a, 'py, T: PyTypeInfo>(
    value: &'a Bound<'py, PyAny>,
    name: &str,
    what: &str,
) -> PyResult<&'a Bound<'py, T>> {
    value
        .cast_exact::<T>()
        .map_err(|_| type_error(format!("{name} must be {what}, got {}", type_name(value))))
}

/// `value`, one of the `requests` tuple's parts, as exactly a `T`, else
/// `InvalidArgumentTypeError` ("requests' {name} must be {what}").
fn exact<'py, T: PyTypeInfo>(
    value: Bound<'py, PyAny>,
    name: &str,
    what: &str,
) -> PyResult<Bound<'py, T>> {
    if !value.is_exact_instance_of::<T>() {
        return Err(type_error(format!(
            "requests' {name} must be {what}, got {}",
            type_name(&value)
        )));
    }
    Ok(value.cast_into_exact::<T>()?)
}

impl Requests {
    /// Open one request (`open`'s work, its arguments checked): its query
    /// registered (due in `timeout`), its message id made, its datagram
    /// framed and its entry kept in `pending`; returns the datagram.
    fn open_one<'py>(
        &self,
        pending: &Bound<'py, PyDict>,
        request: &Request<'_, 'py>,
        timeout: f64,
        times: &Times<'py>,
        deadline: Option<f64>,
        overdue: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let py = pending.py();
        let query_id = self
            .core
            .get()
            .register_checked(py, timeout, 1, 1, times.now);
        let body = request.body;
        let datagram = PyBytes::new_with(py, HEADER_SIZE + body.len(), |buffer| {
            buffer[0] = KIND_REQUEST;
            buffer[1..17].copy_from_slice(&query_id.value.to_be_bytes());
            buffer[17..HEADER_SIZE].copy_from_slice(&self.pad);
            buffer[HEADER_SIZE..].copy_from_slice(body);
            Ok(())
        })?;
        let msg_id = PyBytes::new(py, &datagram.as_bytes()[1..HEADER_SIZE]);
        let none = py.None().into_bound(py);
        let retry = match deadline {
            None => none.clone(),
            Some(deadline) => PyList::new(
                py,
                [
                    datagram.clone().into_any(),
                    PyFloat::new(py, deadline).into_any(),
                    1u8.into_pyobject(py)?.into_any(),
                    PyFloat::new(py, timeout).into_any(),
                    times.now_float.clone(),
                    overdue.clone(),
                ],
            )?
            .into_any(),
        };
        let fields = [
            Bound::new(py, query_id)?.into_any(),
            request.address.clone(),
            request.name.clone(),
            request.future.clone(),
            request.callback.clone(),
            request.context.clone(),
            times.now_float.clone(),
            retry,
            times.lag.clone(),
            times.zero.clone(),
            times.zero.clone(),
        ];
        let entry = match &self.entry {
            Some(entry) => self
                .vocab
                .subtuple(entry.bind(py), PyTuple::new(py, fields)?)?
                .into_any(),
            None => PyTuple::new(py, fields)?.into_any(),
        };
        pending.set_item(msg_id, entry)?;
        Ok(datagram)
    }

    fn check(requests: &Bound<'_, PyAny>) -> PyResult<Self> {
        let wrong = || {
            type_error(format!(
                "requests must be a (core, pad, resent, entry) tuple, got {}",
                type_name(requests)
            ))
        };
        let Ok(parts) = requests.cast_exact::<PyTuple>() else {
            return Err(wrong());
        };
        if parts.len() != 4 {
            return Err(wrong());
        }
        let core = exact::<QueryCore>(parts.get_item(0)?, "core", "a QueryCore of this core")?;
        let pad = pad_of(&parts.get_item(1)?, "requests' pad")?;
        let resent = exact::<PyDict>(parts.get_item(2)?, "resent", "a dict")?;
        let entry = parts.get_item(3)?;
        let entry = if entry.is_none() {
            None
        } else {
            match entry.cast_exact::<PyType>() {
                Ok(cls) if cls.is_subclass_of::<PyTuple>()? => Some(cls.clone().unbind()),
                _ => {
                    return Err(type_error(format!(
                        "requests' entry must be a subclass of tuple or None, got {}",
                        entry.repr()?
                    )))
                }
            }
        };
        Ok(Requests {
            vocab: vocab(requests.py())?,
            core: core.clone().unbind(),
            pad,
            entry,
            resent: resent.clone().unbind(),
        })
    }

    /// `request` (an entry taken out of `pending`) was answered at `now`:
    /// its query finished, its id out of `resent`; its round trip, the
    /// loop's lag since it was sent (`lag`, the timer's, against the one
    /// the entry kept) left out, or `AMBIGUOUS_RTT` if it was sent more than
    /// once.
    fn end(&self, py: Python<'_>, request: &Bound<'_, PyAny>, now: f64, lag: f64) -> PyResult<f64> {
        // An entry is a tuple (or a subclass's): its fields read in place,
        // not through `__getitem__` with each index made an int (any other
        // sequence still read by index).
        let tuple = request.cast::<PyTuple>().ok();
        let field = |index: usize| -> PyResult<Bound<'_, PyAny>> {
            match tuple {
                Some(tuple) => Ok(tuple.get_borrowed_item(index)?.to_owned()),
                None => request.get_item(index),
            }
        };
        let query_id = field(ENTRY_QUERY_ID)?;
        let Ok(query_id) = query_id.cast_exact::<QueryId>() else {
            return Err(type_error(format!(
                "a request's query id must be a QueryId, got {}",
                type_name(&query_id)
            )));
        };
        let id = query_id.get().value;
        self.core.get().finish_answered(py, id, now);
        let resent = self.resent.bind(py);
        if !resent.is_empty() {
            let key = PyBytes::new(py, &id.to_be_bytes());
            if resent.contains(&key)? {
                resent.del_item(key)?;
            }
        }
        let retry = field(ENTRY_RETRY)?;
        if !retry.is_none() {
            let tries = match retry.cast::<PyList>() {
                Ok(list) => list.get_item(RETRY_TRIES)?,
                Err(_) => retry.get_item(RETRY_TRIES)?,
            };
            if tries.extract::<i64>()? > 1 {
                return Ok(AMBIGUOUS_RTT);
            }
        }
        let rtt = now - field(ENTRY_SENT)?.extract::<f64>()?;
        let lagged =
            lag - field(ENTRY_LAG)?.extract::<f64>()? + field(ENTRY_LAGGED)?.extract::<f64>()?;
        if lagged == 0.0 {
            return Ok(rtt);
        }
        // the time this node's loop was late is not the peer's round trip
        Ok(if rtt > lagged { rtt - lagged } else { 0.0 })
    }
}

/// What `receive_at` returns, as its five parts.
pub(crate) struct Parts5<'py> {
    pub status: u8,
    pub first: Bound<'py, PyAny>,
    pub value: Bound<'py, PyAny>,
    pub request: Bound<'py, PyAny>,
    pub rtt: f64,
    /// an answer's request's address, when the answer's source was found
    /// to be it or an equal exact tuple and was handled as it (see
    /// `receive_one`); None otherwise
    pub asked: Option<Bound<'py, PyAny>>,
}

/// A request the engine may answer itself, read in place from its body in
/// msgpack's usual encoding (`serve_request`): ranges of the body.
enum InPlace {
    /// a `find_values`' sender id and key
    FindValues(Range<usize>, Range<usize>),
    /// a `find_value`'s sender id and key
    FindValue(Range<usize>, Range<usize>),
    /// a ping's sender id
    Ping(Range<usize>),
}

impl InPlace {
    /// The request `body` holds, if the engine may answer it: a
    /// `find_values` always, a `find_value` given the store of plain values
    /// (`serve(values=)`), a ping given its answer (`serve(ping=)`).
    fn read(serving: &Serving, body: &[u8]) -> Option<InPlace> {
        if let Some((id, key)) = find_values_request(body) {
            return Some(InPlace::FindValues(id, key));
        }
        if serving.values.is_some() {
            if let Some((id, key)) = find_value_request(body) {
                return Some(InPlace::FindValue(id, key));
            }
        }
        if serving.ping.is_some() {
            return ping_request(body).map(InPlace::Ping);
        }
        None
    }
}

/// `receive_at`'s five items for a request the fair share shed.
fn shed5(py: Python<'_>) -> Parts5<'_> {
    let kind = PyString::new(py, "fair_share").into_any();
    five(py, SHED, kind, py.None().into_bound(py))
}

/// `receive_at`'s five items for a datagram dropped as `kind`.
fn dropped5<'py>(py: Python<'py>, kind: &str) -> Parts5<'py> {
    let (status, kind, value, _) = dropped(py, kind);
    five(py, status, kind, value)
}

/// `receive_at`'s five items for a request (no request entry, rtt 0.0).
fn five<'py>(
    py: Python<'py>,
    status: u8,
    first: Bound<'py, PyAny>,
    value: Bound<'py, PyAny>,
) -> Parts5<'py> {
    Parts5 {
        status,
        first,
        value,
        request: py.None().into_bound(py),
        rtt: 0.0,
        asked: None,
    }
}

impl DatagramEngine {
    /// `receive_at` for a request (its datagram `data`, longer than its
    /// header) while serving: read, shed by the fair share, answered again
    /// from the replay cache, answered from a kept `find_values` or
    /// `find_value` answer or as a ping (the answer framed and kept for a
    /// resend), or handed over (`REQUEST`).
    /// (A client's `find_values` of a kept key: 31.7 k -> see README
    /// instructions a request served, bench profile --serve, callgrind.)
    fn serve_request<'py>(
        &self,
        py: Python<'py>,
        serving: &Serving,
        data: &[u8],
        address: &Bound<'py, PyAny>,
        now: f64,
    ) -> PyResult<Parts5<'py>> {
        let none = py.None().into_bound(py);
        let body = &data[HEADER_SIZE..];
        if body.len() > MAX_REQUEST_BODY {
            return Ok(dropped5(py, "oversize_request"));
        }
        // (a request the engine may answer, in the common encoding, is read
        // in place: no list, str or bytes made unless it is handed over)
        let own = InPlace::read(serving, body);
        let mut value = None;
        if own.is_none() {
            match decode_body(py, body) {
                Ok((decoded, _)) => value = Some(decoded),
                Err(error) => {
                    let kind = match error {
                        DecodeError::Malformed => "malformed",
                        DecodeError::BadUtf8 => "bad_utf8",
                    };
                    return Ok(dropped5(py, kind));
                }
            }
        }
        // The fair share is asked about a request answered here, before it
        // is; one handed over is asked about by the protocol (`_serve`), so
        // each request once, in the order they came.
        let admitted = || -> PyResult<bool> {
            match &serving.fair_share {
                Some(Fair::Core(fair_share)) => {
                    fair_share.bind(py).try_borrow_mut()?.admit_source(address)
                }
                Some(Fair::Other(fair_share)) => fair_share
                    .bind(py)
                    .call_method1(intern!(py, "admit"), (address,))?
                    .is_truthy(),
                None => Ok(true),
            }
        };
        let msg_id = &data[1..HEADER_SIZE];
        let replay = serving.replay.bind(py);
        let (answered, replay_hash, found) = {
            let replay = replay.try_borrow()?;
            let hash = replay.hash(address, msg_id)?;
            let (answered, found) = replay.get_at(address, msg_id, hash, now)?;
            (answered, hash, found)
        };
        if let Some(answered) = answered {
            if !admitted()? {
                return Ok(shed5(py));
            }
            count(serving.stats.as_ref(), intern!(py, "replayed"))?;
            return Ok(five(py, REPLAYED, none, answered.into_any()));
        }
        if let Some((id, kept)) = self.own_answer(py, serving, body, own.as_ref(), now)? {
            if !admitted()? {
                return Ok(shed5(py));
            }
            let kept = kept.as_bytes();
            let datagram = PyBytes::new_with(py, HEADER_SIZE + kept.len(), |buffer| {
                buffer[0] = KIND_RESPONSE;
                buffer[1..HEADER_SIZE].copy_from_slice(&data[1..HEADER_SIZE]);
                buffer[HEADER_SIZE..].copy_from_slice(kept);
                Ok(())
            })?;
            replay.try_borrow_mut()?.put_at(
                address,
                msg_id,
                replay_hash,
                &datagram,
                now,
                Some(found),
            )?;
            // a client (its id carries the marker) is never welcomed
            let stats = serving.stats.as_ref();
            count(stats, intern!(py, "served"))?;
            let sender = if data[1 + 16..HEADER_SIZE] == serving.client_pad {
                count(stats, intern!(py, "client_requests"))?;
                none
            } else {
                PyBytes::new(py, &body[id]).into_any()
            };
            return Ok(five(py, SERVED, sender, datagram.into_any()));
        }
        if own.is_some() {
            match decode_body(py, body) {
                Ok((decoded, _)) => value = Some(decoded),
                Err(_) => unreachable!("a request read in place is msgpack"),
            }
        }
        let value = value.unwrap_or(none);
        Ok(five(
            py,
            REQUEST,
            PyBytes::new(py, msg_id).into_any(),
            value,
        ))
    }

    /// `receive_at`'s work, its parts not made into a tuple (see there).
    fn receive_one<'py>(
        &self,
        py: Python<'py>,
        datagram: &Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
        now: f64,
        lag: f64,
        peers: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Parts5<'py>> {
        let requests = self.requests()?;
        if let Ok(bytes) = datagram.cast_exact::<PyBytes>() {
            let data = bytes.as_bytes();
            if data.len() > HEADER_SIZE && data[0] == KIND_REQUEST {
                // (shared out of the lock: the fair share is Python code)
                let serving = self.serving.lock().clone();
                if let Some(serving) = serving {
                    return self.serve_request(py, &serving, data, address, now);
                }
            }
        }
        // A holder's answer is read in place when an answer may be handed to
        // its lookup here (`dispatch_answers`): its records are taken from
        // the cache as bytes, no Python object decoded (see `holder.rs`).
        // Instructions per `get_all` (cachegrind of `bench profile
        // --count-only --frozen-clock`, slope between 1,000 and 3,000
        // lookups of 3 answers each): 233.8 k -> 222.1 k (-5.0 %, ~3.9 k an
        // answer; the decoder's dict, lists, strs, bytes and ints, and
        // `take` comparing them, gone).
        let in_place = self.dispatch.get().is_some();
        let (status, first, body, request, exact) =
            self.read_body(py, datagram, address, in_place)?;
        let matched = status == ANSWERED || status >= CHECKED;
        // An answer's source is its request's address, or an equal exact
        // tuple (`read_body`'s `same_address`): the request's object from
        // here on, the one the peer book and the lookup were given when it
        // was asked, so that their look-ups of the peer find it the same
        // object (the first test of `same_address`) rather than an equal one
        // compared item by item. (An address found equal only by Python's
        // `==` goes on as it came.) callgrind, `bench profile --sockets`, one
        // run: the peer book's `find_with` 5.5 k -> 1.3 k instructions a
        // `get_all`.
        let asked = if matched && exact {
            Some(entry_field(&request, ENTRY_ADDRESS)?)
        } else {
            None
        };
        let address = asked.as_ref().unwrap_or(address);
        let rtt = if matched {
            requests.end(py, &request, now, lag)?
        } else {
            0.0
        };
        if status >= CHECKED {
            if let Some(peers) = peers {
                // (the protocol's one call per answer to its book, made
                // here: a Python call less per answer)
                let ok = status == CHECKED;
                match peers.cast_exact::<PeerBook>() {
                    Ok(book) => book.try_borrow_mut()?.answered_at(address, rtt, ok, now)?,
                    Err(_) => {
                        peers.call_method1(intern!(py, "answered"), (address, rtt, ok, now))?;
                    }
                }
            }
        }
        let (status, value) = match self.dispatch.get() {
            Some(dispatch) if status == CHECKED && rtt >= 0.0 => {
                match dispatch.answer(py, &request, address, &body)? {
                    Dispatched::Not => (status, body.value(py)?),
                    Dispatched::Returned => (HANDLED, py.None().into_bound(py)),
                    Dispatched::Raised(error) => {
                        (HANDLED, error.into_value(py).into_bound(py).into_any())
                    }
                }
            }
            _ => (status, body.value(py)?),
        };
        Ok(Parts5 {
            status,
            first,
            value,
            request,
            rtt,
            asked,
        })
    }

    /// What the engine answers itself (a request not answered from the
    /// replay cache): a `find_values` or a `find_value` of a kept key (its
    /// sender's id, the kept answer), a `ping` given its answer (its sender's id, this node's
    /// id packed); the sender's id as a range of `body`.
    fn own_answer<'py>(
        &self,
        py: Python<'py>,
        serving: &Serving,
        body: &[u8],
        request: Option<&InPlace>,
        now: f64,
    ) -> PyResult<Option<(Range<usize>, Bound<'py, PyBytes>)>> {
        let (id, kept, key, store) = match request {
            None => return Ok(None),
            Some(InPlace::Ping(id)) => {
                return Ok(serving
                    .ping
                    .as_ref()
                    .map(|ping| (id.clone(), ping.bind(py).clone())))
            }
            Some(InPlace::FindValues(id, key)) => (id, &self.kept, key, Some(&serving.records)),
            Some(InPlace::FindValue(id, key)) => {
                (id, &self.kept_values, key, serving.values.as_ref())
            }
        };
        let Some(store) = store else {
            return Ok(None);
        };
        let generation = generation_of(store.bind(py))?;
        let kept = kept.lock().valid(py, &body[key.clone()], generation, now)?;
        Ok(kept.map(|kept| (id.clone(), kept)))
    }

    /// The kept answers to `rpc`: `"find_values"` (or None) or `"find_value"`.
    fn kept_of(&self, rpc: Option<&Bound<'_, PyAny>>) -> PyResult<&Mutex<KeptAnswers>> {
        let Some(rpc) = rpc.filter(|rpc| !rpc.is_none()) else {
            return Ok(&self.kept);
        };
        match rpc.cast_exact::<PyString>().map(|rpc| rpc.to_str()) {
            Ok(Ok("find_values")) => Ok(&self.kept),
            Ok(Ok("find_value")) => Ok(&self.kept_values),
            Ok(_) => Err(value_error(format!(
                "rpc must be \"find_values\" or \"find_value\", got {}",
                rpc.repr()?
            ))),
            Err(_) => Err(type_error(format!(
                "rpc must be a str, got {}",
                type_name(rpc)
            ))),
        }
    }

    fn requests(&self) -> PyResult<&Requests> {
        self.requests.as_ref().ok_or_else(|| {
            type_error("this engine opens no requests: it was made without requests=".to_owned())
        })
    }

    /// What `receive` returns, as its four parts.
    fn read<'py>(
        &self,
        py: Python<'py>,
        datagram: &Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
    ) -> PyResult<Parts<'py>> {
        let (status, first, body, request, _) = self.read_body(py, datagram, address, false)?;
        Ok((status, first, body.value(py)?, request))
    }

    /// `read`, a holder's `find_values` answer in its canonical encoding
    /// left undecoded if `in_place` and it is `CHECKED` (its shape
    /// `found_values`', which a body `holder_answer` reads always has);
    /// and whether an answer's source is its request's address or an equal
    /// exact tuple (`same_address`; false if Python's `==` said so).
    fn read_body<'a, 'py>(
        &self,
        py: Python<'py>,
        datagram: &'a Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
        in_place: bool,
    ) -> PyResult<BodyRead<'a, 'py>> {
        let Ok(datagram) = datagram.cast_exact::<PyBytes>() else {
            return Err(type_error(format!(
                "datagram must be bytes, got {}",
                type_name(datagram)
            )));
        };
        let data = datagram.as_bytes();
        let none = py.None().into_bound(py);
        let drop = |kind: &str| {
            let (status, kind, value, request) = dropped(py, kind);
            Ok((
                status,
                kind,
                Body::Value(value, [None, None, None]),
                request,
                false,
            ))
        };
        if data.len() <= HEADER_SIZE {
            return drop("short");
        }
        let kind = data[0];
        if kind == KIND_REQUEST {
            if data.len() - HEADER_SIZE > MAX_REQUEST_BODY {
                return drop("oversize_request");
            }
        } else if kind != KIND_RESPONSE {
            return drop("bad_kind");
        }
        let bytes = &data[HEADER_SIZE..];
        let holder = match kind {
            KIND_RESPONSE if in_place => holder_answer(bytes),
            _ => None,
        };
        let mut body = match holder {
            Some(holder) => Body::Holder(bytes, holder),
            None => match decode_body(py, bytes) {
                Ok((value, top)) => Body::Value(value, top),
                Err(DecodeError::Malformed) => return drop("malformed"),
                Err(DecodeError::BadUtf8) => return drop("bad_utf8"),
            },
        };
        let msg_id = PyBytes::new(py, &data[1..HEADER_SIZE]).into_any();
        if kind == KIND_REQUEST {
            return Ok((REQUEST, msg_id, body, none, false));
        }
        let pending = self.pending.bind(py);
        let Some(request) = pending.get_item(&msg_id)? else {
            return Ok((NOT_PENDING, msg_id, body, none, false));
        };
        let asked = entry_field(&request, ENTRY_ADDRESS)?;
        let (same, exact) = match same_address(&asked, address) {
            Some(same) => (same, same),
            None => (asked.eq(address)?, false),
        };
        if !same {
            return Ok((WRONG_ADDRESS, msg_id, body, request, false));
        }
        let shape = match &self.shapes {
            Some(shapes) => shape_of(shapes.bind(py), &request)?,
            None => None,
        };
        pending.del_item(&msg_id)?;
        let status = match shape {
            None => ANSWERED,
            Some(SHAPE_FOUND_VALUES) if matches!(body, Body::Holder(..)) => CHECKED,
            Some(code) => {
                let (value, top) = body.decoded(py)?;
                let ok = shape_ok(code, &value, &top)?;
                body = Body::Value(value, top);
                if ok {
                    CHECKED
                } else {
                    BAD_SHAPE
                }
            }
        };
        Ok((status, msg_id, body, request, exact))
    }
}

#[cfg(test)]
mod tests {
    use super::{find_value_request, find_values_request};

    fn body(id: &[u8], key: &[u8]) -> Vec<u8> {
        request(b"\x92\xabfind_values\x92", id, key)
    }

    fn request(head: &[u8], id: &[u8], key: &[u8]) -> Vec<u8> {
        let mut out = head.to_vec();
        for part in [id, key] {
            out.push(0xc4);
            out.push(u8::try_from(part.len()).expect("a short part"));
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn a_find_values_in_the_usual_encoding_is_read_in_place() {
        let data = body(&[1; 20], &[2; 7]);
        let (id, key) = find_values_request(&data).expect("read");
        assert_eq!((&data[id], &data[key]), (&[1u8; 20][..], &[2u8; 7][..]));
    }

    #[test]
    fn anything_else_is_left_to_the_decoder() {
        assert!(find_values_request(&body(&[], &[2; 20])).is_none()); // no id
        assert!(find_values_request(&body(&[1; 20], &[])).is_none()); // no key
        assert!(find_values_request(&body(&[1; 65], &[2; 20])).is_none()); // too long
        let mut extra = body(&[1; 20], &[2; 20]);
        extra.push(0);
        assert!(find_values_request(&extra).is_none());
        let whole = body(&[1; 20], &[2; 20]);
        for end in 0..whole.len() {
            assert!(find_values_request(&whole[..end]).is_none(), "{end}");
        }
        let mut other = whole.clone();
        other[2] = b'F';
        assert!(find_values_request(&other).is_none());
    }

    #[test]
    fn a_find_value_in_the_usual_encoding_is_read_in_place() {
        let data = request(b"\x92\xaafind_value\x92", &[1; 20], &[2; 64]);
        let (id, key) = find_value_request(&data).expect("read");
        assert_eq!((&data[id], &data[key]), (&[1u8; 20][..], &[2u8; 64][..]));
        // each RPC's reader takes its own name only
        assert!(find_values_request(&data).is_none());
        assert!(find_value_request(&body(&[1; 20], &[2; 20])).is_none());
        for end in 0..data.len() {
            assert!(find_value_request(&data[..end]).is_none(), "{end}");
        }
        let too_long = request(b"\x92\xaafind_value\x92", &[1; 20], &[2; 65]);
        assert!(find_value_request(&too_long).is_none());
    }
}
