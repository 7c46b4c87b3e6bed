//! `LookupCore`: the decisions of one streaming lookup
//! (`dhtquery.dht.lookup`), which candidates are the k closest, whom to ask
//! next, when the lookup is over. The lookup sends, times and reads
//! answers; each call here returns `(step, depth, asks)`, what it must do
//! next. `_core_py.LookupCore` is the reference: the same calls (and seed)
//! give the same answers, step by step.
//!
//! Node ids are read as big-endian integers, as kademlia's `Node.long_id`
//! does: kademlia's are 20 bytes, but stock reads any id of 1 to 64 bytes
//! (`shapes.MAX_NODE_ID_SIZE`), so an id and a distance are four u128
//! words (512 bits), compared word by word; a 20-byte id fills the last
//! two. Python ints cost an allocation per XOR and per comparison.

use crate::errors::{check_int, repr, type_error, type_name, value_error};
use crate::peers::{hash_of, PeerBook, SrttSlots};
use foldhash::fast::RandomState;
use hashbrown::{HashSet, HashTable};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyTuple};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Mutex, OnceLock};

/// Round trips this close (seconds) count as equal (`types.RTT_BAND`).
const RTT_BAND: f64 = 0.01;
/// Requests kept in flight beyond the quorum's needs while some go to peers
/// of unknown round trip (`types.HEDGE`).
const HEDGE: i64 = 2;
const MAX_ID_SIZE: usize = 64;
/// `types.MAX_EXPECTED_PEERS`: the bound of alpha, ksize, quorum, holders.
const MAX_COUNT: u32 = crate::types::MAX_EXPECTED_PEERS;

// `LookupStep`'s values (checked against `dhtquery.query.types` on first use)
const ASK: usize = 0;
const QUORUM: usize = 1;
const EXHAUSTED: usize = 2;
const ADAPTIVE: usize = 3;
const GIVE_UP: usize = 4;
const ENDED: usize = 5;
const STEP_NAMES: [&str; 6] = ["ASK", "QUORUM", "EXHAUSTED", "ADAPTIVE", "GIVE_UP", "ENDED"];

// `LookupFailure`'s values
const BAD_RESPONSE: u32 = 0;
const STOCK: u32 = 1;
const TIMEOUT: u32 = 2;

static STEPS: PyOnceLock<[Py<PyAny>; 6]> = PyOnceLock::new();

/// `LookupStep.ASK`.
pub(crate) fn steps_ask(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    Ok(steps(py)?[ASK].bind(py).clone())
}

/// `LookupStep.QUORUM`.
pub(crate) fn steps_quorum(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    Ok(steps(py)?[QUORUM].bind(py).clone())
}

fn steps(py: Python<'_>) -> PyResult<&'static [Py<PyAny>; 6]> {
    STEPS.get_or_try_init(py, || {
        let types = py.import("dhtquery.query.types")?;
        let step = types.getattr("LookupStep")?;
        let member = |index: usize| -> PyResult<Py<PyAny>> {
            let value = step.getattr(STEP_NAMES[index])?;
            if value.extract::<usize>()? != index {
                return Err(pyo3::exceptions::PyImportError::new_err(format!(
                    "dhtquery._core does not match dhtquery.query.types: LookupStep.{} differs",
                    STEP_NAMES[index]
                )));
            }
            Ok(value.unbind())
        };
        Ok([
            member(0)?,
            member(1)?,
            member(2)?,
            member(3)?,
            member(4)?,
            member(5)?,
        ])
    })
}

/// An integer of up to 512 bits, big-endian words: an id or a distance.
type Words = [u128; 4];

/// A node id: its bytes' length and their value (two ids of different
/// lengths may read as the same integer).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Id {
    len: u8,
    words: Words,
}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The words as integers, five folded multiplies: derived, the
        // array went through foldhash's byte path (its 64 bytes), 141
        // instructions an id (callgrind, LookupCore.start of 20 candidates).
        state.write_u8(self.len);
        for word in self.words {
            state.write_u128(word);
        }
    }
}

fn read_id(value: &Bound<'_, PyAny>) -> PyResult<Id> {
    let Ok(bytes) = value.cast_exact::<PyBytes>() else {
        return Err(type_error(format!(
            "node id must be bytes, got {}",
            type_name(value)
        )));
    };
    let data = bytes.as_bytes();
    if data.is_empty() || data.len() > MAX_ID_SIZE {
        return Err(value_error(format!(
            "node id must be 1 to 64 bytes, got {}",
            data.len()
        )));
    }
    let mut padded = [0u8; MAX_ID_SIZE];
    padded[MAX_ID_SIZE - data.len()..].copy_from_slice(data);
    let mut words = [0u128; 4];
    for (word, chunk) in words.iter_mut().zip(padded.chunks_exact(16)) {
        let mut buffer = [0u8; 16];
        buffer.copy_from_slice(chunk);
        *word = u128::from_be_bytes(buffer);
    }
    #[allow(
        clippy::cast_possible_truncation,
        reason = "at most MAX_ID_SIZE (64), checked above"
    )]
    let len = data.len() as u8;
    Ok(Id { len, words })
}

fn xor(a: &Words, b: &Words) -> Words {
    [a[0] ^ b[0], a[1] ^ b[1], a[2] ^ b[2], a[3] ^ b[3]]
}

/// An id's hash in every lookup's index: one hasher per process (its seed
/// random), so that `Candidates` hash their ids once for every lookup.
fn hash_id(id: &Id) -> u64 {
    static HASHER: OnceLock<RandomState> = OnceLock::new();
    HASHER.get_or_init(RandomState::default).hash_one(id)
}

/// A candidate of a `Candidates` snapshot, read once.
struct SnapshotEntry {
    id: Id,
    /// `hash_id(id)`
    id_hash: u64,
    py_id: Py<PyBytes>,
    address: Py<PyAny>,
    /// the address's `PeerBook` hash (None: its `hash()` raised; raised
    /// again where a book reads it)
    hash: Option<u64>,
}

/// Where the book `layout` names found each entry's round trip.
struct BookSlots {
    layout: (u64, u64),
    slots: Vec<SrttSlots>,
}

/// The candidates a lookup starts from (a routing table's, `ContactTable.
/// lookup_candidates`), read once for every lookup until the table
/// changes: ids as integers, checked distinct, addresses with their hash,
/// and where the `PeerBook` keeps their round trips. Read per lookup, 20
/// candidates cost `start` 28.6 k instructions, 7.9 k of them reading the
/// ids and addresses and 6.3 k hashing and finding the addresses in the
/// book (callgrind, `bench profile --frozen-clock`).
#[pyclass(module = "dhtquery._core", name = "Candidates", frozen)]
pub struct Candidates {
    entries: Vec<SnapshotEntry>,
    /// (a lock: a snapshot is shared, and read by each lookup's start)
    book: Mutex<BookSlots>,
}

/// `candidates`' `(ids, addresses)` lists.
fn candidate_lists<'py>(
    candidates: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let pair = match candidates.cast_exact::<PyTuple>() {
        Ok(pair) if pair.len() == 2 => pair,
        _ => {
            return Err(type_error(format!(
                "candidates must be a Candidates or a tuple (ids, addresses), got {}",
                type_name(candidates)
            )))
        }
    };
    checked_lists(&pair.get_item(0)?, &pair.get_item(1)?)
}

fn checked_lists<'py>(
    ids: &Bound<'py, PyAny>,
    addresses: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let (Ok(ids), Ok(addresses)) = (ids.cast_exact::<PyList>(), addresses.cast_exact::<PyList>())
    else {
        return Err(type_error(
            "candidates' ids and addresses must be lists".to_owned(),
        ));
    };
    if ids.len() != addresses.len() {
        return Err(value_error(format!(
            "candidates: {} ids but {} addresses",
            ids.len(),
            addresses.len()
        )));
    }
    Ok((ids.clone(), addresses.clone()))
}

impl Candidates {
    /// `ids` and `addresses` (lists of the same length) read.
    fn read(ids: &Bound<'_, PyList>, addresses: &Bound<'_, PyList>) -> PyResult<Self> {
        let mut entries = Vec::with_capacity(ids.len());
        for (node_id, address) in ids.iter().zip(addresses.iter()) {
            let id = read_id(&node_id)?;
            entries.push(SnapshotEntry {
                id,
                id_hash: hash_id(&id),
                py_id: node_id.cast_into_exact::<PyBytes>()?.unbind(),
                hash: hash_of(&address).ok(),
                address: address.unbind(),
            });
        }
        let mut seen: HashSet<&Id, RandomState> =
            HashSet::with_capacity_and_hasher(entries.len(), RandomState::default());
        for entry in &entries {
            if !seen.insert(&entry.id) {
                return Err(value_error("candidates: an id is there twice".to_owned()));
            }
        }
        drop(seen);
        Ok(Candidates {
            entries,
            book: Mutex::new(BookSlots {
                layout: (u64::MAX, 0),
                slots: Vec::new(),
            }),
        })
    }

    /// The SRTTs `book` has for the entries at `positions`, in order: looked
    /// for where this snapshot has not found them in the book as it is.
    fn srtts(
        &self,
        py: Python<'_>,
        book: &PeerBook,
        positions: &[u32],
    ) -> PyResult<Vec<Option<f64>>> {
        let srtt = |position: u32, slots: &mut SrttSlots| {
            let entry = &self.entries[position as usize];
            book.srtt_at(entry.address.bind(py), entry.hash, slots)
        };
        // (sized once: collected through `?`, the vector grew 4, 8, 16, 32,
        // 1.2 k instructions of 20 candidates' start: callgrind)
        let mut srtts = Vec::with_capacity(positions.len());
        let Ok(mut kept) = self.book.try_lock() else {
            // (read by another thread's lookup now: looked for, not kept)
            for &position in positions {
                srtts.push(srtt(position, &mut SrttSlots::UNRESOLVED.clone())?);
            }
            return Ok(srtts);
        };
        let layout = book.layout();
        if kept.layout != layout {
            kept.layout = layout;
            kept.slots.clear();
            kept.slots.resize(self.entries.len(), SrttSlots::UNRESOLVED);
        }
        for &position in positions {
            srtts.push(srtt(position, &mut kept.slots[position as usize])?);
        }
        Ok(srtts)
    }
}

#[pymethods]
impl Candidates {
    #[new]
    fn new(ids: &Bound<'_, PyAny>, addresses: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (ids, addresses) = checked_lists(ids, addresses)?;
        Self::read(&ids, &addresses)
    }

    fn __len__(&self) -> usize {
        self.entries.len()
    }
}

/// A candidate's id as the lookup's index reads it: its length, its
/// `hash_id` and its distance to the key (the id: distance ^ key).
#[derive(Clone, Copy)]
struct Key {
    len: u8,
    hash: u64,
    distance: Words,
}

/// One candidate the lookup has known (kept once known: the Python twin's
/// dicts and sets keyed by id, as flags and fields).
struct Candidate {
    distance: Words,
    /// its id's `hash_id` and length (the id: `distance` ^ target)
    hash: u64,
    len: u8,
    py_id: Py<PyBytes>,
    address: Py<PyAny>,
    srtt: Rtt,
    /// learnt from an answer at this depth (0: from the table, depth 1)
    depth: u32,
    place: Place,
    asked: bool,
    /// asked while of unknown round trip, and still in flight
    unmeasured: bool,
}

/// A candidate's SRTT when it became one (the twin's `_srtts`).
#[derive(Clone, Copy, PartialEq)]
enum Rtt {
    /// never a candidate in the k closest (no entry)
    Unset,
    /// never measured (None)
    Unknown,
    Measured(f64),
}

impl Rtt {
    fn seconds(self) -> Option<f64> {
        match self {
            Rtt::Measured(rtt) => Some(rtt),
            _ => None,
        }
    }
}

/// Where a candidate is kept (the twin's `_ranked` and `_skipped`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// in neither: failed, or asked as a last resort
    Out,
    Ranked,
    Skipped,
}

/// A request past its RTO and still out (kept in arrival order).
struct Late {
    id: Id,
    py_id: Py<PyBytes>,
    address: Py<PyAny>,
}

type Answer<'py> = PyResult<Bound<'py, PyTuple>>;

#[pyclass(module = "dhtquery._core", name = "LookupCore")]
pub struct LookupCore {
    own: Id,
    target: Words,
    alpha: i64,
    ksize: usize,
    quorum: i64,
    adaptive: bool,
    fair_score: f64,
    rng: u64,
    peers: Peers,
    clock: Py<PyAny>,
    failed_recently: Py<PyAny>,
    recently_failed: Py<PyAny>,
    candidates: Vec<Candidate>,
    /// candidates by id (`hash_id`)
    index: HashTable<u32>,
    /// candidates not failed, closest first (equal distances in arrival
    /// order); the first ksize are "the k closest"
    ranked: Vec<u32>,
    /// candidates left out as failed lately, in arrival order
    skipped: Vec<u32>,
    late: Vec<Late>,
    slowest: f64,
    in_flight: i64,
    unmeasured: i64,
    holders: i64,
    failed_by_rto: bool,
    /// answers counted (`settle`): the handle's `peers_answered`
    answers: i64,
    /// the deepest of their depths
    max_depth: u32,
    /// the depth at which the lookup was complete (-1: not yet)
    final_depth: i64,
}

/// Where a lookup reads round trips and scores: the core's `PeerBook`,
/// read in place (no Python call per candidate), or any object with the
/// same `srtt(address)` and `scores(addresses, now)` methods.
enum Peers {
    Book(Py<PeerBook>),
    Methods { srtt: Py<PyAny>, scores: Py<PyAny> },
}

fn check_peers(peers: &Bound<'_, PyAny>) -> PyResult<Peers> {
    if let Ok(book) = peers.cast_exact::<PeerBook>() {
        return Ok(Peers::Book(book.clone().unbind()));
    }
    let method = |name: &str| -> PyResult<Py<PyAny>> {
        match peers.getattr(name) {
            Ok(method) if method.is_callable() => Ok(method.unbind()),
            _ => Err(type_error(format!(
                "peers must be a PeerBook or have srtt() and scores(), got {}",
                type_name(peers)
            ))),
        }
    };
    Ok(Peers::Methods {
        srtt: method("srtt")?,
        scores: method("scores")?,
    })
}

fn check_callable(name: &str, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    if !value.is_callable() {
        return Err(type_error(format!(
            "{name} must be callable, got {}",
            type_name(value)
        )));
    }
    Ok(value.clone().unbind())
}

fn check_seed(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(type_error(format!(
            "seed must be an int, got {}",
            type_name(value)
        )));
    }
    value.extract::<u64>().map_err(|_| match repr(value) {
        Ok(text) => value_error(format!("seed must be in [0, {}], got {text}", u64::MAX)),
        Err(err) => err,
    })
}

/// splitmix64 (Steele, Lea, Flood 2014), as the Python twin's `_draw`:
/// the next draw of the generator at `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The positions of `distances` ordered by (distance, position): equal
/// distances in order; the `keep` first alone if given (selected, then those
/// sorted: O(n)).
///
/// Sorted as one u64 per candidate, the first bits of its distance (from
/// the highest bit any distance has) over its position: for distinct ids
/// of one length those bits all but always tell the distances apart, and a
/// run of equal ones is ordered by the whole distances after. (Sorted as
/// (word, word, position) tuples, ranking 20 candidates cost 3.7 k
/// instructions, as u128 or u64 keys 2.6 k, 2.1 k with runs of equal bits
/// looked for in one pass: callgrind of `bench profile --frozen-clock`,
/// inclusive.)
fn ranked_positions(distances: &[Words], keep: Option<usize>) -> Vec<u32> {
    // bits a key's position takes, at its bottom
    let low = usize::BITS - distances.len().saturating_sub(1).leading_zeros();
    if low > 32 {
        return ranked_exactly(distances, keep);
    }
    let mask = (1u64 << low) - 1;
    let mut any = [0u128; 4];
    for distance in distances {
        for (bits, word) in any.iter_mut().zip(distance) {
            *bits |= word;
        }
    }
    let shift = leading_zeros(&any).min(448);
    let mut keys: Vec<u64> = distances
        .iter()
        .zip(0u64..)
        .map(|(distance, position)| (bits_at(distance, shift) & !mask) | position)
        .collect();
    if let Some(keep) = keep {
        if keys.len() > keep {
            keys.select_nth_unstable(keep - 1);
            let last = keys[keep - 1] >> low;
            if keys[keep..].iter().any(|&key| key >> low == last) {
                // (the cut falls inside a run of equal bits: the whole
                // distances decide who is in)
                return ranked_exactly(distances, Some(keep));
            }
            keys.truncate(keep);
        }
    }
    keys.sort_unstable();
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a position, of at most 32 bits"
    )]
    let position = |key: u64| (key & mask) as u32;
    // (runs of equal bits are rare: looked for in one pass first)
    let mut start = if keys.windows(2).any(|pair| pair[0] >> low == pair[1] >> low) {
        0
    } else {
        keys.len()
    };
    while start < keys.len() {
        let bits = keys[start] >> low;
        let end = start
            + keys[start..]
                .iter()
                .take_while(|&&key| key >> low == bits)
                .count();
        if end - start > 1 {
            keys[start..end].sort_unstable_by(|&a, &b| {
                distances[position(a) as usize]
                    .cmp(&distances[position(b) as usize])
                    .then(a.cmp(&b))
            });
        }
        start = end;
    }
    keys.iter().map(|&key| position(key)).collect()
}

/// Bits above the highest set one of `words` (512: none set).
fn leading_zeros(words: &Words) -> u32 {
    let mut zeros = 0;
    for word in words {
        if *word != 0 {
            return zeros + word.leading_zeros();
        }
        zeros += 128;
    }
    zeros
}

/// The 64 bits of `words` from bit `shift` (0: the highest; at most 448).
fn bits_at(words: &Words, shift: u32) -> u64 {
    let word = (shift / 128) as usize;
    let bit = shift % 128;
    let mut window = words[word] << bit;
    if bit > 0 && word + 1 < words.len() {
        window |= words[word + 1] >> (128 - bit);
    }
    #[allow(clippy::cast_possible_truncation, reason = "the top 64 bits")]
    let top = (window >> 64) as u64;
    top
}

/// `ranked_positions`, the distances compared whole.
fn ranked_exactly(distances: &[Words], keep: Option<usize>) -> Vec<u32> {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a routing table holds far fewer than 2**32 contacts"
    )]
    let position = |index: usize| index as u32;
    let closer = |a: &u32, b: &u32| {
        distances[*a as usize]
            .cmp(&distances[*b as usize])
            .then(a.cmp(b))
    };
    let mut order: Vec<u32> = (0..distances.len()).map(position).collect();
    if let Some(keep) = keep {
        if order.len() > keep {
            order.select_nth_unstable_by(keep - 1, closer);
            order.truncate(keep);
        }
    }
    order.sort_unstable_by(closer);
    order
}

fn distance_of(candidates: &[Candidate], index: u32) -> &Words {
    &candidates[index as usize].distance
}

impl LookupCore {
    /// `answered`'s work, the id read: `(step, depth, asks)`.
    fn answered_at<'py>(
        &mut self,
        py: Python<'py>,
        id: &Id,
        contacts: &Bound<'py, PyAny>,
        holder: bool,
        ended: bool,
    ) -> PyResult<(usize, u32, Bound<'py, PyList>)> {
        self.request_ended(id);
        let depth = match self.find(id) {
            Some(index) => self.candidates[index as usize].depth.max(1),
            None => 1,
        };
        if ended {
            return Ok((ENDED, depth, PyList::empty(py)));
        }
        if contacts.is_truthy()? {
            self.learn(py, contacts, depth + 1)?;
        }
        if holder {
            self.holders += 1;
            if self.holders >= self.quorum {
                self.final_depth = i64::from(depth);
                return Ok((QUORUM, depth, PyList::empty(py)));
            }
        }
        let (step, asks) = self.fill(py, false)?;
        Ok((step, depth, asks))
    }

    /// An answer's step for `LookupAnswers` (`settle`): `answered`'s, the
    /// answer counted (`answers`, `max_depth`, and `final_depth` if
    /// `ended`: the query ended by it). Returns `(step, depth, asks, act)`,
    /// `act` whether the lookup has something to do (asks, or a step other
    /// than ASK, while the query runs).
    pub(crate) fn settle<'py>(
        &mut self,
        py: Python<'py>,
        node_id: &Bound<'py, PyAny>,
        contacts: &Bound<'py, PyAny>,
        holder: bool,
        ended: bool,
    ) -> PyResult<(Bound<'py, PyAny>, u32, Bound<'py, PyList>, bool)> {
        let id = read_id(node_id)?;
        self.answers += 1;
        let (step, depth, asks) = self.answered_at(py, &id, contacts, holder, ended)?;
        if depth > self.max_depth {
            self.max_depth = depth;
        }
        if ended {
            self.final_depth = i64::from(depth);
        }
        let act = !ended && (step != ASK || !asks.is_empty());
        let step = steps(py)?[step].clone_ref(py).into_bound(py);
        Ok((step, depth, asks, act))
    }

    fn draw(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }

    fn answer<'py>(
        py: Python<'py>,
        step: usize,
        depth: u32,
        asks: Bound<'py, PyList>,
    ) -> Answer<'py> {
        let step = steps(py)?[step].clone_ref(py).into_bound(py);
        PyTuple::new(
            py,
            [step, depth.into_pyobject(py)?.into_any(), asks.into_any()],
        )
    }

    fn recently_failed(&self, py: Python<'_>) -> PyResult<bool> {
        self.recently_failed.bind(py).call0()?.is_truthy()
    }

    fn failed_recently(&self, py: Python<'_>, address: &Py<PyAny>) -> PyResult<bool> {
        self.failed_recently
            .bind(py)
            .call1((address.clone_ref(py),))?
            .is_truthy()
    }

    fn srtt_of(&self, py: Python<'_>, address: &Py<PyAny>) -> PyResult<Option<f64>> {
        match &self.peers {
            Peers::Book(book) => book.bind(py).borrow().srtt_of(address.bind(py)),
            Peers::Methods { srtt, .. } => srtt
                .bind(py)
                .call1((address.clone_ref(py),))?
                .extract::<Option<f64>>(),
        }
    }

    /// The reputation scores of `fresh`'s addresses now, in order.
    fn scores_of(&self, py: Python<'_>, fresh: &[u32]) -> PyResult<Vec<f64>> {
        let now: f64 = self.clock.bind(py).call0()?.extract()?;
        match &self.peers {
            Peers::Book(book) => {
                let book = book.bind(py).borrow();
                let mut scores = Vec::with_capacity(fresh.len());
                for &index in fresh {
                    let address = self.candidates[index as usize].address.bind(py);
                    scores.push(book.score_of(address, now)?);
                }
                Ok(scores)
            }
            Peers::Methods { scores, .. } => {
                let addresses = PyList::empty(py);
                for &index in fresh {
                    addresses.append(self.candidates[index as usize].address.clone_ref(py))?;
                }
                scores.bind(py).call1((addresses, now))?.extract()
            }
        }
    }

    /// The candidate of id `id`, if known.
    fn find(&self, id: &Id) -> Option<u32> {
        self.find_at(id.len, hash_id(id), &xor(&id.words, &self.target))
    }

    /// `find`, of an id of length `len`, hash `hash` and `distance`.
    fn find_at(&self, len: u8, hash: u64, distance: &Words) -> Option<u32> {
        let candidates = &self.candidates;
        self.index
            .find(hash, |&index| {
                let candidate = &candidates[index as usize];
                candidate.len == len && candidate.distance == *distance
            })
            .copied()
    }

    /// A candidate's slot: the one it had if known (its fields renewed), a
    /// new one else.
    fn slot(&mut self, id: Id, py_id: Py<PyBytes>, address: Py<PyAny>) -> u32 {
        let key = Key {
            len: id.len,
            hash: hash_id(&id),
            distance: xor(&id.words, &self.target),
        };
        self.slot_at(key, py_id, address)
    }

    /// `slot`, of an id known by its `Key`.
    fn slot_at(&mut self, key: Key, py_id: Py<PyBytes>, address: Py<PyAny>) -> u32 {
        if let Some(index) = self.find_at(key.len, key.hash, &key.distance) {
            let candidate = &mut self.candidates[index as usize];
            candidate.py_id = py_id;
            candidate.address = address;
            return index;
        }
        self.add(key, py_id, address)
    }

    /// A new candidate (its id not known)'s slot.
    fn add(&mut self, key: Key, py_id: Py<PyBytes>, address: Py<PyAny>) -> u32 {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "a lookup knows far fewer than 2**32 candidates"
        )]
        let index = self.candidates.len() as u32;
        self.candidates.push(Candidate {
            distance: key.distance,
            hash: key.hash,
            len: key.len,
            py_id,
            address,
            srtt: Rtt::Unset,
            depth: 0,
            place: Place::Out,
            asked: false,
            unmeasured: false,
        });
        let candidates = &self.candidates;
        self.index
            .insert_unique(key.hash, index, |&other| candidates[other as usize].hash);
        index
    }

    /// A request ended (answered or failed): it leaves the late ones, or
    /// those in flight.
    fn request_ended(&mut self, id: &Id) {
        if let Some(position) = self.late.iter().position(|late| late.id == *id) {
            self.late.remove(position);
            return;
        }
        self.in_flight -= 1;
        if self.unmeasured > 0 {
            self.discard_unmeasured(id);
        }
    }

    fn discard_unmeasured(&mut self, id: &Id) {
        if let Some(index) = self.find(id) {
            let candidate = &mut self.candidates[index as usize];
            if candidate.unmeasured {
                candidate.unmeasured = false;
                self.unmeasured -= 1;
            }
        }
    }

    fn learn(&mut self, py: Python<'_>, contacts: &Bound<'_, PyAny>, depth: u32) -> PyResult<()> {
        // (asked once, at the first new contact)
        let mut failed: Option<bool> = None;
        for contact in contacts.try_iter()? {
            let contact = contact?;
            let (contact_id, host, port) = if let Ok(list) = contact.cast_exact::<PyList>() {
                if list.len() != 3 {
                    return Err(bad_contact(&contact));
                }
                (list.get_item(0)?, list.get_item(1)?, list.get_item(2)?)
            } else if let Ok(tuple) = contact.cast_exact::<PyTuple>() {
                if tuple.len() != 3 {
                    return Err(bad_contact(&contact));
                }
                (tuple.get_item(0)?, tuple.get_item(1)?, tuple.get_item(2)?)
            } else {
                return Err(bad_contact(&contact));
            };
            let id = read_id(&contact_id)?;
            if id == self.own {
                continue;
            }
            if let Some(index) = self.find(&id) {
                let known = &self.candidates[index as usize];
                if known.place != Place::Out || known.asked {
                    continue;
                }
            }
            let address = PyTuple::new(py, [host, port])?.into_any().unbind();
            let py_id = contact_id.cast_exact::<PyBytes>()?.clone().unbind();
            let index = self.slot(id, py_id, address);
            self.candidates[index as usize].depth = depth;
            let failed = match failed {
                Some(failed) => failed,
                None => *failed.insert(self.recently_failed(py)?),
            };
            let address = self.candidates[index as usize].address.clone_ref(py);
            if failed && self.failed_recently(py, &address)? {
                // failed lately: others' stale answers do not bring it
                // back, unless nobody else is left
                self.candidates[index as usize].place = Place::Skipped;
                self.skipped.push(index);
                continue;
            }
            let distance = self.candidates[index as usize].distance;
            let candidates = &self.candidates;
            let at = self
                .ranked
                .partition_point(|&other| *distance_of(candidates, other) <= distance);
            self.ranked.insert(at, index);
            self.candidates[index as usize].place = Place::Ranked;
            let rtt = self.srtt_of(py, &address)?;
            self.candidates[index as usize].srtt = rtt.map_or(Rtt::Unknown, Rtt::Measured);
            if let Some(rtt) = rtt {
                if rtt > self.slowest {
                    self.slowest = rtt;
                }
            }
        }
        Ok(())
    }

    fn drop_ranked(&mut self, id: &Id) {
        if let Some(index) = self.find(id) {
            if let Some(position) = self.ranked.iter().position(|&other| other == index) {
                self.ranked.remove(position);
                self.candidates[index as usize].place = Place::Out;
            }
        }
    }

    /// Whom to ask now, or how the lookup ends (the twin's `_fill`).
    fn fill<'py>(&mut self, py: Python<'py>, ended: bool) -> PyResult<(usize, Bound<'py, PyList>)> {
        // Requests in flight that may each bring a holder count towards the
        // quorum: asking more before they answer only adds traffic.
        let wanted = self.quorum - self.holders;
        let target = if wanted > self.alpha {
            self.alpha
        } else if wanted > 1 {
            wanted
        } else {
            1
        };
        let mut count = target - self.in_flight;
        if self.unmeasured > 0 {
            count += self.unmeasured.min(HEDGE);
        }
        let asks = PyList::empty(py);
        if ended {
            return Ok((ENDED, asks));
        }
        if count <= 0 {
            return Ok((ASK, asks));
        }
        let mut fresh: Vec<u32>;
        // (bounded: each pass that goes on takes one candidate out of ranked)
        loop {
            // (sized once: collected from a filter, it grew 4, 8, 16, 32)
            fresh = Vec::with_capacity(self.ksize.min(self.ranked.len()));
            fresh.extend(
                self.ranked
                    .iter()
                    .take(self.ksize)
                    .copied()
                    .filter(|&index| !self.candidates[index as usize].asked),
            );
            if !self.recently_failed(py)? {
                break;
            }
            let mut stale = Vec::new();
            for &index in &fresh {
                let address = self.candidates[index as usize].address.clone_ref(py);
                if self.failed_recently(py, &address)? {
                    stale.push(index);
                }
            }
            if stale.is_empty() {
                break;
            }
            // An address that failed lately is not asked again at once: it
            // leaves the k closest, so that the next closest take its place.
            self.ranked.retain(|index| !stale.contains(index));
            for index in stale {
                self.candidates[index as usize].place = Place::Skipped;
                self.skipped.push(index);
            }
        }
        if fresh.is_empty() {
            return self.none_fresh(py, count, asks);
        }
        let picked = self.best_of(py, &fresh, count)?;
        for &index in &picked {
            asks.append(self.ask(py, index)?)?;
        }
        if self.unmeasured > 0 && fresh.len() > picked.len() {
            // the hedge's room grew with the peers of unknown round trip
            // just asked
            let room = target + self.unmeasured.min(HEDGE) - self.in_flight;
            if room > 0 {
                let rest: Vec<u32> = fresh
                    .iter()
                    .copied()
                    .filter(|&index| !self.candidates[index as usize].asked)
                    .collect();
                for index in self.best_of(py, &rest, room)? {
                    asks.append(self.ask(py, index)?)?;
                }
            }
        }
        Ok((ASK, asks))
    }

    /// Nobody left to ask among the k closest: wait, ask those that
    /// failed lately as a last resort, or end (the twin's `_fill`).
    fn none_fresh<'py>(
        &mut self,
        py: Python<'py>,
        count: i64,
        asks: Bound<'py, PyList>,
    ) -> PyResult<(usize, Bound<'py, PyList>)> {
        if self.in_flight != 0 {
            return Ok((ASK, asks));
        }
        if self.late.is_empty() && self.holders == 0 && !self.skipped.is_empty() {
            // Nobody else is left and no holder has answered: rather
            // than end with nothing, ask those that failed lately.
            let mut last = self.skipped.clone();
            let candidates = &self.candidates;
            last.sort_by(|&a, &b| distance_of(candidates, a).cmp(distance_of(candidates, b)));
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "count > 0 here, and at most alpha + HEDGE"
            )]
            last.truncate(count as usize);
            for index in last {
                self.skipped.retain(|&other| other != index);
                self.candidates[index as usize].place = Place::Out;
                asks.append(self.ask(py, index)?)?;
            }
            return Ok((ASK, asks));
        }
        if self.late.is_empty() {
            let step = if self.failed_by_rto {
                ADAPTIVE
            } else {
                EXHAUSTED
            };
            return Ok((step, asks));
        }
        if self.holders != 0 && self.adaptive {
            for late in &self.late {
                asks.append((late.py_id.clone_ref(py), late.address.clone_ref(py)))?;
            }
            return Ok((GIVE_UP, asks));
        }
        // wait for the overdue requests
        Ok((ASK, asks))
    }

    /// The `count` to ask among `fresh` (the twin's `_best_of`): by round
    /// trip over reputation score, `RTT_BAND` counting as equal, equals in a
    /// drawn order.
    fn best_of(&mut self, py: Python<'_>, fresh: &[u32], count: i64) -> PyResult<Vec<u32>> {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "count > 0 at every call, and small"
        )]
        let count = count as usize;
        if fresh.len() <= count || self.slowest < RTT_BAND {
            return Ok(fresh[..count.min(fresh.len())].to_vec());
        }
        let rtts: Vec<Option<f64>> = fresh
            .iter()
            .map(|&index| self.candidates[index as usize].srtt.seconds())
            .collect();
        let mut known: Vec<f64> = Vec::with_capacity(rtts.len());
        known.extend(rtts.iter().filter_map(|&rtt| rtt));
        if known.is_empty() {
            return Ok(fresh[..count].to_vec());
        }
        // (the median alone: selected, not the whole list sorted)
        let middle = known.len() / 2;
        let guess = *known.select_nth_unstable_by(middle, f64::total_cmp).1;
        let scores = self.scores_of(py, fresh)?;
        if scores.len() != fresh.len() {
            return Err(value_error(format!(
                "scores returned {} scores for {} addresses",
                scores.len(),
                fresh.len()
            )));
        }
        let fair = self.fair_score;
        let per_band = fair / RTT_BAND;
        let mut order: Vec<(i64, u64, usize)> = Vec::with_capacity(fresh.len());
        for (i, (rtt, score)) in rtts.iter().zip(&scores).enumerate() {
            let factor = if *score >= fair {
                1.0 / RTT_BAND
            } else {
                per_band / if *score > 0.01 { *score } else { 0.01 }
            };
            // (int() of a positive float: truncated)
            #[allow(
                clippy::cast_possible_truncation,
                reason = "a band number: round trips of seconds make small ones"
            )]
            let band = (rtt.unwrap_or(guess) * factor) as i64;
            order.push((band, self.draw(), i));
        }
        // The first `count` alone, selected then sorted: the keys are
        // unique (their last is the place), so the same as a full sort's.
        if count < order.len() {
            order.select_nth_unstable(count);
            order.truncate(count);
        }
        order.sort_unstable();
        Ok(order.iter().map(|&(_, _, i)| fresh[i]).collect())
    }

    fn ask<'py>(&mut self, py: Python<'py>, index: u32) -> PyResult<Bound<'py, PyTuple>> {
        let slowest = self.slowest;
        let candidate = &mut self.candidates[index as usize];
        candidate.asked = true;
        self.in_flight += 1;
        if slowest >= RTT_BAND && candidate.srtt == Rtt::Unknown && !candidate.unmeasured {
            // (only where round trips differ: on loopback every peer is as
            // near as any, and asking more would only add traffic)
            candidate.unmeasured = true;
            self.unmeasured += 1;
        }
        PyTuple::new(
            py,
            [
                candidate.py_id.clone_ref(py).into_any(),
                candidate.address.clone_ref(py),
            ],
        )
    }
}

fn bad_contact(contact: &Bound<'_, PyAny>) -> PyErr {
    type_error(format!(
        "a contact must be a list or tuple of (id, host, port), got {}",
        type_name(contact)
    ))
}

#[pymethods]
impl LookupCore {
    #[new]
    #[allow(clippy::too_many_arguments, reason = "the twin's signature")]
    #[pyo3(signature = (own_id, key, alpha, ksize, quorum, adaptive, fair_score, seed, peers, clock, failed_recently, recently_failed))]
    fn new(
        own_id: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        alpha: &Bound<'_, PyAny>,
        ksize: &Bound<'_, PyAny>,
        quorum: &Bound<'_, PyAny>,
        adaptive: &Bound<'_, PyAny>,
        fair_score: &Bound<'_, PyAny>,
        seed: &Bound<'_, PyAny>,
        peers: &Bound<'_, PyAny>,
        clock: &Bound<'_, PyAny>,
        failed_recently: &Bound<'_, PyAny>,
        recently_failed: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let own = read_id(own_id)?;
        let target = read_id(key)?.words;
        let alpha = check_int("alpha", alpha, 1, MAX_COUNT)?;
        let ksize = check_int("ksize", ksize, 1, MAX_COUNT)?;
        let quorum = check_int("quorum", quorum, 1, MAX_COUNT)?;
        let Ok(adaptive) = adaptive.cast_exact::<PyBool>() else {
            return Err(type_error(format!(
                "adaptive must be a bool, got {}",
                type_name(adaptive)
            )));
        };
        let Ok(fair) = fair_score.cast_exact::<PyFloat>() else {
            return Err(type_error(format!(
                "fair_score must be a float, got {}",
                type_name(fair_score)
            )));
        };
        let fair = fair.value();
        if !(fair > 0.0 && fair <= 1.0) {
            return Err(value_error(format!(
                "fair_score must be in (0, 1], got {}",
                repr(fair_score)?
            )));
        }
        let rng = check_seed(seed)?;
        Ok(LookupCore {
            own,
            target,
            alpha: i64::from(alpha),
            ksize: ksize as usize,
            quorum: i64::from(quorum),
            adaptive: adaptive.is_true(),
            fair_score: fair,
            rng,
            peers: check_peers(peers)?,
            clock: check_callable("clock", clock)?,
            failed_recently: check_callable("failed_recently", failed_recently)?,
            recently_failed: check_callable("recently_failed", recently_failed)?,
            candidates: Vec::new(),
            index: HashTable::new(),
            ranked: Vec::new(),
            skipped: Vec::new(),
            late: Vec::new(),
            slowest: 0.0,
            in_flight: 0,
            unmeasured: 0,
            holders: 0,
            failed_by_rto: false,
            answers: 0,
            max_depth: 0,
            final_depth: -1,
        })
    }

    /// Start from `candidates` (a `Candidates`, or its (ids, addresses)),
    /// with `holders` holders already (this node's own records).
    fn start<'py>(
        &mut self,
        py: Python<'py>,
        candidates: &Bound<'py, PyAny>,
        holders: &Bound<'py, PyAny>,
    ) -> Answer<'py> {
        let snapshot = candidates.cast_exact::<Candidates>().ok();
        let lists = match snapshot {
            Some(_) => None,
            None => Some(candidate_lists(candidates)?),
        };
        self.holders = i64::from(check_int("holders", holders, 0, MAX_COUNT)?);
        if self.holders >= self.quorum {
            self.final_depth = 0;
            return Self::answer(py, QUORUM, 0, PyList::empty(py));
        }
        let read;
        let candidates = match (snapshot, lists) {
            (Some(snapshot), _) => snapshot.get(),
            (None, Some((ids, addresses))) => {
                read = Candidates::read(&ids, &addresses)?;
                &read
            }
            (None, None) => unreachable!("lists read when not a snapshot"),
        };
        // The candidates are ranked as positions, by (distance, position):
        // equal distances in order.
        let entries = &candidates.entries;
        let distances: Vec<Words> = entries
            .iter()
            .map(|entry| xor(&entry.id.words, &self.target))
            .collect();
        let ksize = self.ksize;
        let reserved = ksize.min(entries.len());
        self.candidates.reserve(reserved);
        let made = &self.candidates;
        self.index
            .reserve(reserved, |&other| made[other as usize].hash);
        self.ranked.reserve(reserved);
        // (the snapshot's ids are distinct: with none known before, each is
        // added without a look-up, its hash the snapshot's)
        let known = !self.index.is_empty();
        let take = |this: &mut Self, position: u32| -> u32 {
            let entry = &entries[position as usize];
            let (py_id, address) = (entry.py_id.clone_ref(py), entry.address.clone_ref(py));
            let key = Key {
                len: entry.id.len,
                hash: entry.id_hash,
                distance: distances[position as usize],
            };
            if known {
                this.slot_at(key, py_id, address)
            } else {
                this.add(key, py_id, address)
            }
        };
        // the ranked ones' positions, in order
        let taken = if self.recently_failed(py)? {
            let mut taken: Vec<u32> = Vec::with_capacity(reserved);
            // Contacts that failed lately do not take places in the k
            // closest (kept aside, as a last resort: see fill).
            for position in ranked_positions(&distances, None) {
                if self.failed_recently(py, &entries[position as usize].address)? {
                    if self.skipped.len() < ksize {
                        let index = take(self, position);
                        self.candidates[index as usize].place = Place::Skipped;
                        self.skipped.push(index);
                    }
                } else {
                    let index = take(self, position);
                    self.candidates[index as usize].place = Place::Ranked;
                    self.ranked.push(index);
                    taken.push(position);
                    if self.ranked.len() == ksize {
                        break;
                    }
                }
            }
            taken
        } else {
            // the k closest alone
            let closest = ranked_positions(&distances, Some(ksize));
            for &position in &closest {
                let index = take(self, position);
                self.candidates[index as usize].place = Place::Ranked;
                self.ranked.push(index);
            }
            closest
        };
        let rtts = match &self.peers {
            Peers::Book(book) => candidates.srtts(py, &book.bind(py).borrow(), &taken)?,
            Peers::Methods { .. } => {
                let mut srtts = Vec::with_capacity(taken.len());
                for &position in &taken {
                    srtts.push(self.srtt_of(py, &entries[position as usize].address)?);
                }
                srtts
            }
        };
        let mut slowest = 0.0;
        for (&index, rtt) in self.ranked.iter().zip(rtts) {
            self.candidates[index as usize].srtt = rtt.map_or(Rtt::Unknown, Rtt::Measured);
            if let Some(rtt) = rtt {
                if rtt > slowest {
                    slowest = rtt;
                }
            }
        }
        self.slowest = slowest;
        let (step, asks) = self.fill(py, false)?;
        Self::answer(py, step, 0, asks)
    }

    /// The peer `node_id` answered, naming `contacts`, with records if
    /// `holder`; `ended`: the query has ended (before or by this answer).
    fn answered<'py>(
        &mut self,
        py: Python<'py>,
        node_id: &Bound<'py, PyAny>,
        contacts: &Bound<'py, PyAny>,
        holder: bool,
        ended: bool,
    ) -> Answer<'py> {
        let id = read_id(node_id)?;
        let (step, depth, asks) = self.answered_at(py, &id, contacts, holder, ended)?;
        Self::answer(py, step, depth, asks)
    }

    /// The request to `node_id` failed (`mode`: a `LookupFailure`).
    fn failed<'py>(
        &mut self,
        py: Python<'py>,
        node_id: &Bound<'py, PyAny>,
        mode: &Bound<'py, PyAny>,
        ended: bool,
    ) -> Answer<'py> {
        let id = read_id(node_id)?;
        let mode = check_int("mode", mode, BAD_RESPONSE, TIMEOUT)?;
        self.request_ended(&id);
        if mode == STOCK {
            // asked again, the way a stock peer understands
            if let Some(index) = self.find(&id) {
                self.candidates[index as usize].asked = false;
            }
        } else {
            if mode == TIMEOUT && self.adaptive {
                self.failed_by_rto = true;
            }
            self.drop_ranked(&id);
        }
        let (step, asks) = self.fill(py, ended)?;
        Self::answer(py, step, 0, asks)
    }

    /// The request to `node_id` (at `address`) passed its RTO and was sent
    /// again: ask the next candidate now.
    pub(crate) fn overdue<'py>(
        &mut self,
        py: Python<'py>,
        node_id: &Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
    ) -> Answer<'py> {
        let id = read_id(node_id)?;
        if self.late.iter().any(|late| late.id == id) {
            // (a later retransmission)
            return Self::answer(py, ASK, 0, PyList::empty(py));
        }
        self.late.push(Late {
            id,
            py_id: node_id.cast_exact::<PyBytes>()?.clone().unbind(),
            address: address.clone().unbind(),
        });
        self.in_flight -= 1;
        if self.unmeasured > 0 {
            self.discard_unmeasured(&id);
        }
        let (step, asks) = self.fill(py, false)?;
        Self::answer(py, step, 0, asks)
    }

    /// `(depth, rank)` of `node_id`: the depth it was learnt at (1: from the
    /// table) and its place among the candidates, closest first (-1: not
    /// one). For `bench scale --trace`.
    fn position(&self, node_id: &Bound<'_, PyAny>) -> PyResult<(u32, i64)> {
        let id = read_id(node_id)?;
        let Some(index) = self.find(&id) else {
            return Ok((1, -1));
        };
        let depth = self.candidates[index as usize].depth.max(1);
        let rank = self
            .ranked
            .iter()
            .position(|&other| other == index)
            .map_or(-1, |rank| i64::try_from(rank).unwrap_or(-1));
        Ok((depth, rank))
    }

    #[getter]
    fn in_flight(&self) -> i64 {
        self.in_flight
    }

    #[getter]
    fn holders(&self) -> i64 {
        self.holders
    }

    /// Answers counted by `LookupAnswers` (read by the lookup's handle).
    #[getter]
    fn answers(&self) -> i64 {
        self.answers
    }

    #[getter]
    fn max_depth(&self) -> u32 {
        self.max_depth
    }

    #[getter]
    fn final_depth(&self) -> i64 {
        self.final_depth
    }
}

#[cfg(test)]
mod tests {
    use super::{bits_at, ranked_exactly, ranked_positions, splitmix64, xor, Words};

    /// Positions by (distance, position), the `keep` first: the reference.
    fn sorted(distances: &[Words], keep: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..u32::try_from(distances.len()).unwrap()).collect();
        order.sort_by_key(|&index| (distances[index as usize], index));
        order.truncate(keep);
        order
    }

    /// Either ranking, of a few `keep`s and of all, against the reference.
    fn assert_ranked(distances: &[Words]) {
        for keep in [1, 3, 20, 64] {
            assert_eq!(
                ranked_positions(distances, Some(keep)),
                sorted(distances, keep)
            );
            assert_eq!(
                ranked_exactly(distances, Some(keep)),
                sorted(distances, keep)
            );
        }
        let count = distances.len();
        assert_eq!(ranked_positions(distances, None), sorted(distances, count));
        assert_eq!(ranked_exactly(distances, None), sorted(distances, count));
    }

    #[test]
    fn ranked_positions_are_sorted_by_distance_then_position_on_either_path() {
        let mut state = 1;
        for round in 0..200 {
            let count = (splitmix64(&mut state) % 40) as usize;
            // (few values: many equal distances; a word of the first two
            // set on odd rounds, for the path of ids over 32 bytes)
            let mut distances: Vec<Words> = (0..count)
                .map(|_| {
                    let mut word = || u128::from(splitmix64(&mut state) % 4);
                    [0, 0, word(), word()]
                })
                .collect();
            if round % 2 == 1 && count > 0 {
                distances[count / 2][1] = 1;
            }
            assert_ranked(&distances);
        }
    }

    #[test]
    fn ranked_positions_tell_apart_distances_equal_in_their_first_64_bits() {
        // 20-byte ids: the first 64 significant bits equal, the last ones
        // not (and some distances equal), drawn over many rounds
        let mut state = 7;
        for _ in 0..200 {
            let count = 1 + (splitmix64(&mut state) % 40) as usize;
            let distances: Vec<Words> = (0..count)
                .map(|_| {
                    let low = u128::from(splitmix64(&mut state) % 8);
                    [0, 0, 0xFFFF_FFFF, (u128::from(u64::MAX) << 64) | low]
                })
                .collect();
            assert_ranked(&distances);
        }
    }

    #[test]
    fn bits_at_reads_64_bits_across_words() {
        let words: Words = [0, 1, 1 << 127, 5];
        assert_eq!(bits_at(&words, 255), 0xC000_0000_0000_0000);
        assert_eq!(bits_at(&words, 448), 5);
        assert_eq!(bits_at(&[0, 0, u128::MAX << 64, 0], 256), u64::MAX);
    }

    #[test]
    fn splitmix64_draws_the_reference_sequence() {
        // (Vigna's C reference, seeded 0; the twin's test checks the same)
        let mut state = 0;
        let draws: Vec<u64> = (0..3).map(|_| splitmix64(&mut state)).collect();
        assert_eq!(
            draws,
            [
                0xE220_A839_7B1D_CDAF,
                0x6E78_9E6A_A1B9_65F4,
                0x06C4_5D18_8009_454F
            ]
        );
    }

    #[test]
    fn distances_compare_as_512_bit_integers() {
        let near: Words = [0, 0, 0, u128::MAX];
        let far: Words = [0, 0, 1, 0];
        assert!(near < far);
        assert_eq!(xor(&far, &far), [0; 4]);
    }
}
