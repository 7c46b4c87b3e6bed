//! `PeerBook`: every peer's RFC 6298 estimator and reputation record, the
//! per-IP fallback of unmeasured ports and the network's pooled estimator,
//! the twin of `_core_py.PeerBook` (the reference: the same operations on
//! the same floats, in the same order, give the same bits).
//!
//! Peers are keyed by the Python object itself (its `hash()` and `==`, an
//! identity check first): the DHT's `(host, port)` tuples, or anything
//! hashable for a plain reputation. Each table remembers the order entries
//! were made in, and the oldest leaves first once it is over its bound.

use crate::errors::{check_float, check_int, repr, type_error, type_name, value_error};
use crate::query_core::Optional;
use hashbrown::HashTable;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyList, PyString, PyTuple};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

const RTT_ALPHA: f64 = 1.0 / 8.0; // gain of the smoothed RTT (RFC 6298, 2.3)
const RTT_BETA: f64 = 1.0 / 4.0; // gain of the RTT variation
const RTT_K: f64 = 4.0;
const INITIAL_RTO: f64 = 1.0; // seconds before any sample (RFC 6298, 2.1)
const MIN_RTO: f64 = 0.05;
const MAX_BACKOFF: u32 = 16;
const RTT_KEEP: f64 = 0.7; // weight of the old RTT in the reputation's EWMA
const INVALID_PENALTY: f64 = 0.25;
const INVALID_COUNTED: u64 = 16;
/// Records and estimators kept by default (`DhtProtocol.PEERS_KEPT`).
pub const PEERS_KEPT: u32 = 65_536;

fn clamp(value: f64, low: f64, high: f64) -> f64 {
    // min(max(value, low), high), as the twin writes it
    if value < low {
        low
    } else if value > high {
        high
    } else {
        value
    }
}

/// RFC 6298's state of one peer (`dht/rtt.py`'s `RttEstimator`).
#[derive(Clone, Debug)]
struct Estimator {
    min_rto: f64,
    max_rto: f64,
    srtt: Option<f64>,
    rttvar: f64,
    backoff: u32,
    backed_off_at: f64,
    rto: f64,
    base_rto: f64,
}

impl Estimator {
    fn new(min_rto: f64, max_rto: f64) -> Self {
        let rto = clamp(INITIAL_RTO, min_rto, max_rto);
        Estimator {
            min_rto,
            max_rto,
            srtt: None,
            rttvar: 0.0,
            backoff: 0,
            backed_off_at: f64::NEG_INFINITY,
            rto,
            base_rto: rto,
        }
    }

    fn observe(&mut self, sample: f64) {
        let (srtt, rttvar) = match self.srtt {
            None => (sample, sample / 2.0),
            Some(srtt) => (
                (1.0 - RTT_ALPHA) * srtt + RTT_ALPHA * sample,
                (1.0 - RTT_BETA) * self.rttvar + RTT_BETA * (srtt - sample).abs(),
            ),
        };
        self.srtt = Some(srtt);
        self.rttvar = rttvar;
        self.backoff = 0;
        let base = clamp(srtt + RTT_K * rttvar, self.min_rto, self.max_rto);
        self.rto = base;
        self.base_rto = base;
    }

    fn back_off(&mut self, sent: Option<f64>, now: Option<f64>) {
        if let Some(sent) = sent {
            if sent < self.backed_off_at {
                return;
            }
        }
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
        if let Some(sent) = sent {
            self.backed_off_at = now.unwrap_or(sent);
        }
        let base = match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => srtt + RTT_K * self.rttvar,
        };
        self.base_rto = clamp(base, self.min_rto, self.max_rto);
        self.rto = clamp(
            base * f64::from(1_u32 << self.backoff),
            self.min_rto,
            self.max_rto,
        );
    }
}

/// What a peer did for us (`dht/reputation.py`'s `PeerStats`).
#[derive(Clone, Debug, Default)]
struct Record {
    successes: u64,
    failures: u64,
    rtt_ms: Option<f64>,
    provided: i64,
    last_seen: Option<f64>,
    consecutive_failures: u64,
    invalid: u64,
}

#[allow(
    clippy::cast_precision_loss,
    reason = "counts below 2**53, as exact as the twin's int / int"
)]
fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b as f64
}

impl Record {
    fn score(&self, now: f64) -> f64 {
        let tried = self.successes + self.failures;
        let success_rate = if tried == 0 {
            1.0
        } else {
            ratio(self.successes, tried)
        };
        let rtt_part = match self.rtt_ms {
            Some(rtt_ms) if rtt_ms > 999.0 => 1000.0 / (rtt_ms + 1.0),
            _ => 1.0,
        };
        #[allow(clippy::cast_precision_loss, reason = "a count below 10 here: exact")]
        let provided_part = if self.provided >= 10 {
            1.0
        } else {
            self.provided as f64 / 10.0
        };
        let seen_part = match self.last_seen {
            None => 0.0,
            Some(last_seen) if now <= last_seen => 1.0,
            Some(last_seen) => 1.0 / ((now - last_seen) / 3600.0 + 1.0),
        };
        let mut score =
            0.5 * success_rate + 0.25 * rtt_part + 0.15 * provided_part + 0.10 * seen_part;
        if self.invalid > 0 {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_possible_wrap,
                reason = "at most INVALID_COUNTED"
            )]
            let times = self.invalid.min(INVALID_COUNTED) as i32;
            score *= INVALID_PENALTY.powi(times);
        }
        score
    }

    fn success(&mut self, rtt: f64, now: f64) {
        self.successes += 1;
        self.consecutive_failures = 0;
        if rtt >= 0.0 {
            let rtt_ms = rtt * 1000.0;
            self.rtt_ms = Some(match self.rtt_ms {
                None => rtt_ms,
                Some(old) => RTT_KEEP * old + (1.0 - RTT_KEEP) * rtt_ms,
            });
        }
        self.last_seen = Some(now);
    }

    fn failure(&mut self) -> u64 {
        self.failures += 1;
        self.consecutive_failures += 1;
        self.consecutive_failures
    }
}

fn never_seen_score() -> f64 {
    Record::default().score(0.0)
}

/// `a == b` for two addresses, decided here when Python's answer is known
/// without asking it: both exact tuples of one length whose items, pair by
/// pair, are the same object, or exact `str`s, or exact `int`s (which
/// compare as their text and value: a tuple compares its items so, each
/// identity first). None: Python's `==` must decide. A lookup compares an
/// answer's source with its request's address and looks its peer up in
/// the peer book by it ~9 times (callgrind, `bench profile --sockets`:
/// ~400 instructions a comparison through Python's, the objects being
/// equal but not the same).
pub(crate) fn same_address(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> Option<bool> {
    if a.is(b) {
        // (an exact tuple always equals itself: its items are compared
        // identity first)
        return a.is_exact_instance_of::<PyTuple>().then_some(true);
    }
    let (Ok(a), Ok(b)) = (a.cast_exact::<PyTuple>(), b.cast_exact::<PyTuple>()) else {
        return None;
    };
    if a.len() != b.len() {
        return None;
    }
    let mut equal = true;
    for (x, y) in a.iter_borrowed().zip(b.iter_borrowed()) {
        if x.is(&*y) {
            continue;
        }
        if let (Ok(x), Ok(y)) = (x.cast_exact::<PyString>(), y.cast_exact::<PyString>()) {
            let (Ok(x), Ok(y)) = (x.to_str(), y.to_str()) else {
                return None;
            };
            equal &= x == y;
        } else if let (Ok(x), Ok(y)) = (x.cast_exact::<PyInt>(), y.cast_exact::<PyInt>()) {
            let (Ok(x), Ok(y)) = (x.extract::<i64>(), y.extract::<i64>()) else {
                return None;
            };
            equal &= x == y;
        } else {
            return None;
        }
    }
    Some(equal)
}

/// A key's hash for the table: Python's, its bits spread (an int's hash is
/// the int, and hashbrown reads the top bits).
pub(crate) fn hash_of(key: &Bound<'_, PyAny>) -> PyResult<u64> {
    #[allow(clippy::cast_sign_loss, reason = "the bits, not the number")]
    let bits = key.hash()? as u64;
    let mixed = bits.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Ok(mixed ^ (mixed >> 29))
}

pub(crate) struct Slot<V> {
    key: Py<PyAny>,
    hash: u64,
    seq: u64,
    value: V,
}

/// A map keyed by Python objects that remembers the order its entries were
/// made in (a dict, as the twin's): the oldest leaves first.
pub(crate) struct OrderedTable<V> {
    table: HashTable<u32>,
    slots: Vec<Option<Slot<V>>>,
    free: Vec<u32>,
    /// (slot, seq) as made; an entry whose slot was emptied or reused since
    /// is skipped
    order: VecDeque<(u32, u64)>,
    next_seq: u64,
    /// entries made and removed so far: a slot found before is still the
    /// key's while this has not moved
    changes: u64,
}

impl<V> OrderedTable<V> {
    pub(crate) fn new() -> Self {
        OrderedTable {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            order: VecDeque::new(),
            next_seq: 0,
            changes: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn find(&self, key: &Bound<'_, PyAny>, hash: u64) -> PyResult<Option<u32>> {
        let py = key.py();
        self.find_with(hash, |entry, _| {
            let entry = entry.bind(py);
            match same_address(entry, key) {
                Some(same) => Ok(same),
                None => Ok(entry.is(key) || entry.eq(key)?),
            }
        })
    }

    /// Entries made and removed so far (a slot found while this stays is
    /// still the key's).
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// The slot of `hash` whose entry `matches` (given its key and value):
    /// for a table whose key is more than its Python key.
    pub(crate) fn find_with(
        &self,
        hash: u64,
        mut matches: impl FnMut(&Py<PyAny>, &V) -> PyResult<bool>,
    ) -> PyResult<Option<u32>> {
        let mut failed = None;
        let found = self.table.find(hash, |&slot| {
            let Some(entry) = &self.slots[slot as usize] else {
                return false;
            };
            if entry.hash != hash {
                return false;
            }
            match matches(&entry.key, &entry.value) {
                Ok(same) => same,
                Err(err) => {
                    failed.get_or_insert(err);
                    false
                }
            }
        });
        match failed {
            Some(err) => Err(err),
            None => Ok(found.copied()),
        }
    }

    pub(crate) fn value(&self, slot: u32) -> &V {
        &self.slots[slot as usize]
            .as_ref()
            .expect("a live slot")
            .value
    }

    pub(crate) fn value_mut(&mut self, slot: u32) -> &mut V {
        &mut self.slots[slot as usize]
            .as_mut()
            .expect("a live slot")
            .value
    }

    /// Add `key` (not in the table) with `value`; its slot.
    pub(crate) fn insert(&mut self, key: &Bound<'_, PyAny>, hash: u64, value: V) -> u32 {
        self.changes += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Slot {
            key: key.clone().unbind(),
            hash,
            seq,
            value,
        };
        let slot = if let Some(slot) = self.free.pop() {
            self.slots[slot as usize] = Some(entry);
            slot
        } else {
            self.slots.push(Some(entry));
            u32::try_from(self.slots.len() - 1).expect("fewer than 2**32 entries")
        };
        let slots = &self.slots;
        self.table.insert_unique(hash, slot, |&s| {
            slots[s as usize].as_ref().map_or(0, |e| e.hash)
        });
        self.order.push_back((slot, seq));
        slot
    }

    pub(crate) fn remove(&mut self, slot: u32) -> V {
        self.changes += 1;
        let entry = self.slots[slot as usize].take().expect("a live slot");
        if let Ok(found) = self.table.find_entry(entry.hash, |&s| s == slot) {
            found.remove();
        }
        self.free.push(slot);
        // (stale order entries are skipped; keep them from piling up)
        if self.order.len() > 2 * self.table.len() + 64 {
            let slots = &self.slots;
            self.order.retain(|&(s, seq)| {
                slots[s as usize]
                    .as_ref()
                    .is_some_and(|entry| entry.seq == seq)
            });
        }
        entry.value
    }

    /// The live entries, oldest first: (key, value).
    pub(crate) fn in_order(&self) -> impl Iterator<Item = (&Py<PyAny>, &V)> {
        self.order.iter().filter_map(|&(slot, seq)| {
            self.slots[slot as usize]
                .as_ref()
                .filter(|entry| entry.seq == seq)
                .map(|entry| (&entry.key, &entry.value))
        })
    }

    /// The oldest entry's value (stale order entries before it dropped).
    pub(crate) fn oldest(&mut self) -> Option<&V> {
        while let Some(&(slot, seq)) = self.order.front() {
            if self.slots[slot as usize]
                .as_ref()
                .is_some_and(|entry| entry.seq == seq)
            {
                return Some(self.value(slot));
            }
            self.order.pop_front();
        }
        None
    }

    /// Take the oldest entry out.
    pub(crate) fn pop_oldest(&mut self) -> Option<V> {
        while let Some((slot, seq)) = self.order.pop_front() {
            if self.slots[slot as usize]
                .as_ref()
                .is_some_and(|entry| entry.seq == seq)
            {
                return Some(self.remove(slot));
            }
        }
        None
    }
}

/// An estimator and how many tables hold it (by address, by IP).
struct Shared {
    estimator: Estimator,
    holders: u8,
}

/// Books made so far: each book's `identity`.
static BOOKS: AtomicU64 = AtomicU64::new(0);
/// A slot of `SrttSlots` not looked for yet / looked for and not there.
const UNRESOLVED: u32 = u32::MAX - 1;
const NOT_FOUND: u32 = u32::MAX;

/// Where `srtt_of` found an address's round trip: its estimator and its
/// IP's list (each looked for when first needed). A lookup's `Candidates`
/// keep them from one lookup to the next while the book's `layout` stays.
#[derive(Clone, Copy)]
pub(crate) struct SrttSlots {
    estimator: u32,
    ip: u32,
}

impl SrttSlots {
    pub(crate) const UNRESOLVED: SrttSlots = SrttSlots {
        estimator: UNRESOLVED,
        ip: UNRESOLVED,
    };
}

#[pyclass(module = "dhtquery._core", name = "PeerBook")]
pub struct PeerBook {
    /// this book among all (`layout`)
    identity: u64,
    /// estimators, held by `rtt` and `by_ip`; freed when neither does
    estimators: Vec<Option<Shared>>,
    free_estimators: Vec<u32>,
    rtt: OrderedTable<u32>,
    by_ip: OrderedTable<Vec<u32>>,
    records: OrderedTable<Record>,
    network: Estimator,
    network_samples: u64,
    never_seen: f64,
    #[pyo3(get)]
    max_rto: f64,
    #[pyo3(get)]
    peers_kept: u32,
    #[pyo3(get)]
    max_peers: u32,
    #[pyo3(get)]
    rtt_per_ip: u32,
    #[pyo3(get)]
    first_rto_samples: u32,
    #[pyo3(get)]
    first_rto_cap: f64,
    #[pyo3(get, set)]
    rtt_by_ip: bool,
}

fn check_address<'a, 'py>(address: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyTuple>> {
    match address.cast_exact::<PyTuple>() {
        Ok(tuple) if !tuple.is_empty() => Ok(tuple),
        _ => Err(type_error(format!(
            "address must be a non-empty tuple (host, port), got {}",
            type_name(address)
        ))),
    }
}

/// `address[0]`, as the twin reads it (any indexable).
fn ip_of<'py>(address: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(tuple) = address.cast_exact::<PyTuple>() {
        return tuple.get_item(0);
    }
    address.get_item(0)
}

impl PeerBook {
    fn release(&mut self, index: u32) {
        let shared = self.estimators[index as usize]
            .as_mut()
            .expect("a live estimator");
        shared.holders -= 1;
        if shared.holders == 0 {
            self.estimators[index as usize] = None;
            self.free_estimators.push(index);
        }
    }

    fn estimator_at(&self, index: u32) -> &Estimator {
        &self.estimators[index as usize]
            .as_ref()
            .expect("a live estimator")
            .estimator
    }

    fn estimator_at_mut(&mut self, index: u32) -> &mut Estimator {
        &mut self.estimators[index as usize]
            .as_mut()
            .expect("a live estimator")
            .estimator
    }

    /// `address`'s estimator, if it has one.
    fn find_estimator(&self, address: &Bound<'_, PyAny>) -> PyResult<Option<u32>> {
        if self.rtt.len() == 0 {
            return Ok(None);
        }
        let hash = hash_of(address)?;
        Ok(self
            .rtt
            .find(address, hash)?
            .map(|slot| *self.rtt.value(slot)))
    }

    /// `address`'s estimator, made (and listed under its IP) if it had none.
    fn estimator(&mut self, address: &Bound<'_, PyAny>) -> PyResult<u32> {
        let hash = hash_of(address)?;
        if let Some(slot) = self.rtt.find(address, hash)? {
            return Ok(*self.rtt.value(slot));
        }
        check_address(address)?;
        let ip = ip_of(address)?;
        let ip_hash = hash_of(&ip)?;
        let shared = Shared {
            estimator: Estimator::new(MIN_RTO, self.max_rto),
            holders: 1,
        };
        let index = if let Some(index) = self.free_estimators.pop() {
            self.estimators[index as usize] = Some(shared);
            index
        } else {
            self.estimators.push(Some(shared));
            u32::try_from(self.estimators.len() - 1).expect("fewer than 2**32 estimators")
        };
        self.rtt.insert(address, hash, index);
        if self.rtt.len() > self.peers_kept as usize {
            if let Some(oldest) = self.rtt.pop_oldest() {
                self.release(oldest);
            }
        }
        let same_ip = if let Some(slot) = self.by_ip.find(&ip, ip_hash)? {
            slot
        } else {
            let slot = self.by_ip.insert(&ip, ip_hash, Vec::new());
            if self.by_ip.len() > self.peers_kept as usize {
                if let Some(oldest) = self.by_ip.pop_oldest() {
                    for held in oldest {
                        self.release(held);
                    }
                }
            }
            slot
        };
        let rtt_per_ip = self.rtt_per_ip as usize;
        let list = self.by_ip.value_mut(same_ip);
        if list.len() < rtt_per_ip {
            list.push(index);
            self.estimators[index as usize]
                .as_mut()
                .expect("just made")
                .holders += 1;
        }
        Ok(index)
    }

    /// The first estimator of `address`'s IP that was measured.
    fn measured_of_ip(&self, address: &Bound<'_, PyAny>) -> PyResult<Option<&Estimator>> {
        if !self.rtt_by_ip || self.by_ip.len() == 0 {
            return Ok(None);
        }
        let ip = ip_of(address)?;
        let Some(slot) = self.by_ip.find(&ip, hash_of(&ip)?)? else {
            return Ok(None);
        };
        Ok(self
            .by_ip
            .value(slot)
            .iter()
            .map(|&index| self.estimator_at(index))
            .find(|estimator| estimator.srtt.is_some()))
    }

    /// The peer's SRTT, else its IP's (see `srtt`).
    ///
    /// # Errors
    /// What the address's `hash()` or `==` raise.
    pub fn srtt_of(&self, address: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let mut slots = SrttSlots::UNRESOLVED;
        self.srtt_at(address, None, &mut slots)
    }

    /// The book and the state of its estimator and IP tables: `SrttSlots`
    /// found while it is the same are still right (an estimator leaves, and
    /// its index is reused, only when an entry leaves a table).
    pub(crate) fn layout(&self) -> (u64, u64) {
        (self.identity, self.rtt.changes + self.by_ip.changes)
    }

    /// `srtt_of(address)`, its estimator and IP list looked for (`hash`:
    /// the address's `hash_of`, if known) only where `slots` has not found
    /// them yet: `slots` found at this book's `layout`.
    ///
    /// # Errors
    /// What the address's `hash()` or `==` raise.
    pub(crate) fn srtt_at(
        &self,
        address: &Bound<'_, PyAny>,
        hash: Option<u64>,
        slots: &mut SrttSlots,
    ) -> PyResult<Option<f64>> {
        if slots.estimator == UNRESOLVED {
            slots.estimator = if self.rtt.len() == 0 {
                NOT_FOUND
            } else {
                let hash = match hash {
                    Some(hash) => hash,
                    None => hash_of(address)?,
                };
                self.rtt
                    .find(address, hash)?
                    .map_or(NOT_FOUND, |slot| *self.rtt.value(slot))
            };
        }
        if slots.estimator != NOT_FOUND {
            if let Some(srtt) = self.estimator_at(slots.estimator).srtt {
                return Ok(Some(srtt));
            }
        }
        // (the first measured estimator of the address's IP: measured_of_ip)
        if !self.rtt_by_ip || self.by_ip.len() == 0 {
            return Ok(None);
        }
        if slots.ip == UNRESOLVED {
            let ip = ip_of(address)?;
            slots.ip = self.by_ip.find(&ip, hash_of(&ip)?)?.unwrap_or(NOT_FOUND);
        }
        if slots.ip == NOT_FOUND {
            return Ok(None);
        }
        Ok(self
            .by_ip
            .value(slots.ip)
            .iter()
            .map(|&index| self.estimator_at(index))
            .find_map(|estimator| estimator.srtt))
    }

    fn first_rto_of(&self, address: &Bound<'_, PyAny>) -> PyResult<f64> {
        if let Some(other) = self.measured_of_ip(address)? {
            return Ok(other.base_rto.min(self.first_rto_cap));
        }
        if self.network_samples >= u64::from(self.first_rto_samples) {
            return Ok(self.network.base_rto);
        }
        Ok(self.first_rto_cap)
    }

    fn record(&mut self, peer: &Bound<'_, PyAny>) -> PyResult<&mut Record> {
        let hash = hash_of(peer)?;
        let slot = if let Some(slot) = self.records.find(peer, hash)? {
            slot
        } else {
            let slot = self.records.insert(peer, hash, Record::default());
            if self.records.len() > self.max_peers as usize {
                self.records.pop_oldest();
            }
            slot
        };
        Ok(self.records.value_mut(slot))
    }

    pub(crate) fn score_of(&self, peer: &Bound<'_, PyAny>, now: f64) -> PyResult<f64> {
        if self.records.len() == 0 {
            return Ok(self.never_seen);
        }
        let hash = hash_of(peer)?;
        Ok(match self.records.find(peer, hash)? {
            Some(slot) => self.records.value(slot).score(now),
            None => self.never_seen,
        })
    }

    /// The scores of `peers` at `now`, in order.
    ///
    /// # Errors
    /// What a peer's `hash()` or `==` raise.
    pub fn scores_of(&self, peers: &[Bound<'_, PyAny>], now: f64) -> PyResult<Vec<f64>> {
        peers.iter().map(|peer| self.score_of(peer, now)).collect()
    }

    /// `timing(address)`, for the datagram engine's `open_asks` (an
    /// estimator made if the address had none, as the method does).
    ///
    /// # Errors
    /// What the address's `hash()` or `==` raise; a bad address.
    pub(crate) fn timing_of(&mut self, address: &Bound<'_, PyAny>) -> PyResult<(f64, f64, bool)> {
        self.timing(address)
    }

    /// `successes(peer)`, for the datagram engine's `open_asks` (a record
    /// made if the peer had none, as the method does).
    ///
    /// # Errors
    /// What the peer's `hash()` or `==` raise.
    pub(crate) fn successes_of(&mut self, peer: &Bound<'_, PyAny>) -> PyResult<u64> {
        self.successes(peer)
    }

    fn sample(&mut self, address: &Bound<'_, PyAny>, rtt: f64) -> PyResult<()> {
        let index = self.estimator(address)?;
        self.estimator_at_mut(index).observe(rtt);
        self.network.observe(rtt);
        self.network_samples += 1;
        Ok(())
    }

    /// `answered`'s work, for the `DatagramEngine` that judged an
    /// answer's shape: it feeds the book in the call that reads the answer.
    pub(crate) fn answered_at(
        &mut self,
        address: &Bound<'_, PyAny>,
        rtt: f64,
        ok: bool,
        now: f64,
    ) -> PyResult<()> {
        if rtt >= 0.0 {
            self.sample(address, rtt)?;
        }
        let record = self.record(address)?;
        if ok {
            record.success(rtt, now);
        } else {
            record.failure();
        }
        Ok(())
    }
}

#[pymethods]
impl PeerBook {
    #[new]
    #[pyo3(
        signature = (
            max_rto = Optional::Missing,
            peers_kept = Optional::Missing,
            max_peers = Optional::Missing,
            rtt_per_ip = Optional::Missing,
            first_rto_samples = Optional::Missing,
            first_rto_cap = Optional::Missing,
        ),
        text_signature = "(max_rto=10.0, peers_kept=65536, max_peers=65536, rtt_per_ip=8, first_rto_samples=8, first_rto_cap=1.0)"
    )]
    fn new(
        max_rto: Optional<'_>,
        peers_kept: Optional<'_>,
        max_peers: Optional<'_>,
        rtt_per_ip: Optional<'_>,
        first_rto_samples: Optional<'_>,
        first_rto_cap: Optional<'_>,
    ) -> PyResult<Self> {
        let seconds = |name: &str, value: Optional<'_>, default: f64| -> PyResult<f64> {
            let Optional::Given(value) = value else {
                return Ok(default);
            };
            let seconds = check_float(name, &value, false)?;
            if seconds < MIN_RTO {
                return Err(value_error(format!(
                    "{name} must be >= {MIN_RTO}, got {}",
                    repr(&value)?
                )));
            }
            Ok(seconds)
        };
        let count = |name: &str, value: Optional<'_>, low: u32, high: u32, default: u32| match value
        {
            Optional::Missing => Ok(default),
            Optional::Given(value) => check_int(name, &value, low, high),
        };
        let max_rto_value = seconds("max_rto", max_rto, 10.0)?;
        let peers_kept = count("peers_kept", peers_kept, 1, u32::MAX, PEERS_KEPT)?;
        let max_peers = count("max_peers", max_peers, 1, u32::MAX, PEERS_KEPT)?;
        let rtt_per_ip = count("rtt_per_ip", rtt_per_ip, 0, 1 << 16, 8)?;
        let first_rto_samples = count("first_rto_samples", first_rto_samples, 0, u32::MAX, 8)?;
        let cap = seconds("first_rto_cap", first_rto_cap, 1.0)?;
        Ok(PeerBook {
            identity: BOOKS.fetch_add(1, Ordering::Relaxed),
            estimators: Vec::new(),
            free_estimators: Vec::new(),
            rtt: OrderedTable::new(),
            by_ip: OrderedTable::new(),
            records: OrderedTable::new(),
            network: Estimator::new(MIN_RTO, cap),
            network_samples: 0,
            never_seen: never_seen_score(),
            max_rto: max_rto_value,
            peers_kept,
            max_peers,
            rtt_per_ip,
            first_rto_samples,
            first_rto_cap: cap,
            rtt_by_ip: true,
        })
    }

    // -- estimators ---------------------------------------------------------

    /// (`srtt`, `rttvar`, `rto`, `base_rto`) of `address`'s estimator (made if it
    /// had none).
    fn estimator_state(
        &mut self,
        address: &Bound<'_, PyAny>,
    ) -> PyResult<(Option<f64>, f64, f64, f64)> {
        let index = self.estimator(address)?;
        let e = self.estimator_at(index);
        Ok((e.srtt, e.rttvar, e.rto, e.base_rto))
    }

    fn has_estimator(&self, address: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.find_estimator(address)?.is_some())
    }

    fn forget_estimator(&mut self, address: &Bound<'_, PyAny>) -> PyResult<bool> {
        if self.rtt.len() == 0 {
            return Ok(false);
        }
        let hash = hash_of(address)?;
        let Some(slot) = self.rtt.find(address, hash)? else {
            return Ok(false);
        };
        let index = self.rtt.remove(slot);
        self.release(index);
        Ok(true)
    }

    #[getter]
    fn estimators(&self) -> usize {
        self.rtt.len()
    }

    fn observe(&mut self, address: &Bound<'_, PyAny>, sample: f64) -> PyResult<()> {
        if sample < 0.0 {
            return Err(value_error(format!(
                "sample must be >= 0 seconds, got {}",
                crate::errors::float_repr(address.py(), sample)?
            )));
        }
        let index = self.estimator(address)?;
        self.estimator_at_mut(index).observe(sample);
        Ok(())
    }

    fn back_off(
        &mut self,
        address: &Bound<'_, PyAny>,
        sent: Option<f64>,
        now: Option<f64>,
    ) -> PyResult<()> {
        let index = self.estimator(address)?;
        self.estimator_at_mut(index).back_off(sent, now);
        Ok(())
    }

    fn rto(&mut self, address: &Bound<'_, PyAny>) -> PyResult<f64> {
        let index = self.estimator(address)?;
        Ok(self.estimator_at(index).rto)
    }

    fn timing(&mut self, address: &Bound<'_, PyAny>) -> PyResult<(f64, f64, bool)> {
        let index = self.estimator(address)?;
        let estimator = self.estimator_at(index);
        if estimator.srtt.is_none() {
            let rto = estimator.rto;
            return Ok((rto, self.first_rto_of(address)?, false));
        }
        Ok((estimator.rto, estimator.base_rto, true))
    }

    fn srtt(&self, address: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        self.srtt_of(address)
    }

    fn srtts(&self, addresses: &Bound<'_, PyAny>) -> PyResult<Vec<Option<f64>>> {
        addresses
            .try_iter()?
            .map(|address| self.srtt_of(&address?))
            .collect()
    }

    fn first_rto(&self, address: &Bound<'_, PyAny>) -> PyResult<f64> {
        self.first_rto_of(address)
    }

    #[getter]
    fn network_samples(&self) -> u64 {
        self.network_samples
    }

    #[getter]
    fn network_rto(&self) -> f64 {
        self.network.base_rto
    }

    // -- records -------------------------------------------------------------

    fn __len__(&self) -> usize {
        self.records.len()
    }

    fn __contains__(&self, peer: &Bound<'_, PyAny>) -> PyResult<bool> {
        if self.records.len() == 0 {
            return Ok(false);
        }
        let hash = hash_of(peer)?;
        Ok(self.records.find(peer, hash)?.is_some())
    }

    #[allow(clippy::type_complexity, reason = "the twin's tuple")]
    fn stats(
        &mut self,
        peer: &Bound<'_, PyAny>,
    ) -> PyResult<(u64, u64, Option<f64>, i64, Option<f64>, u64, u64)> {
        let r = self.record(peer)?;
        Ok((
            r.successes,
            r.failures,
            r.rtt_ms,
            r.provided,
            r.last_seen,
            r.consecutive_failures,
            r.invalid,
        ))
    }

    fn successes(&mut self, peer: &Bound<'_, PyAny>) -> PyResult<u64> {
        Ok(self.record(peer)?.successes)
    }

    fn success(&mut self, peer: &Bound<'_, PyAny>, rtt: f64, now: f64) -> PyResult<()> {
        self.record(peer)?.success(rtt, now);
        Ok(())
    }

    fn failure(&mut self, peer: &Bound<'_, PyAny>) -> PyResult<u64> {
        Ok(self.record(peer)?.failure())
    }

    fn invalid(&mut self, peer: &Bound<'_, PyAny>) -> PyResult<()> {
        let record = self.record(peer)?;
        record.failures += 1;
        record.invalid += 1;
        Ok(())
    }

    #[pyo3(signature = (peer, count = 1))]
    pub(crate) fn provided(&mut self, peer: &Bound<'_, PyAny>, count: i64) -> PyResult<()> {
        self.record(peer)?.provided += count;
        Ok(())
    }

    fn score(&self, peer: &Bound<'_, PyAny>, now: f64) -> PyResult<f64> {
        self.score_of(peer, now)
    }

    fn scores<'py>(&self, peers: &Bound<'py, PyAny>, now: f64) -> PyResult<Bound<'py, PyList>> {
        let py = peers.py();
        if let Ok(list) = peers.cast_exact::<PyList>() {
            let mut scores = Vec::with_capacity(list.len());
            for peer in list.iter() {
                scores.push(self.score_of(&peer, now)?);
            }
            return PyList::new(py, scores);
        }
        let mut scores = Vec::new();
        for peer in peers.try_iter()? {
            scores.push(self.score_of(&peer?, now)?);
        }
        PyList::new(py, scores)
    }

    // -- one call per event of a request --------------------------------------

    fn answered(
        &mut self,
        address: &Bound<'_, PyAny>,
        rtt: f64,
        ok: bool,
        now: f64,
    ) -> PyResult<()> {
        self.answered_at(address, rtt, ok, now)
    }

    fn answered_late(&mut self, address: &Bound<'_, PyAny>, rtt: f64) -> PyResult<()> {
        if rtt >= 0.0 {
            self.sample(address, rtt)?;
        }
        self.record(address)?.consecutive_failures = 0;
        Ok(())
    }

    fn timed_out(
        &mut self,
        address: &Bound<'_, PyAny>,
        sent: f64,
        now: f64,
        stock: Option<bool>,
    ) -> PyResult<i64> {
        let answered_before = self.record(address)?.successes > 0;
        if stock == Some(true) || (stock.is_none() && answered_before) {
            return Ok(-1);
        }
        let index = self.estimator(address)?;
        self.estimator_at_mut(index)
            .back_off((sent >= 0.0).then_some(sent), Some(now));
        let failures = self.record(address)?.failure();
        Ok(i64::try_from(failures).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_estimator_is_rfc_6298s() {
        let mut e = Estimator::new(MIN_RTO, 10.0);
        assert!((e.rto - 1.0).abs() < f64::EPSILON);
        e.observe(0.1);
        assert_eq!(e.srtt, Some(0.1));
        assert!((e.rto - 0.3).abs() < 1e-12); // 0.1 + 4 * 0.05
        e.back_off(None, None);
        assert!((e.rto - 0.6).abs() < 1e-12);
        assert!((e.base_rto - 0.3).abs() < 1e-12);
    }

    #[test]
    fn a_back_off_counts_once_per_burst_of_timeouts() {
        let mut e = Estimator::new(MIN_RTO, 10.0);
        e.back_off(Some(1.0), Some(2.0));
        e.back_off(Some(1.5), Some(2.5)); // sent before the last back-off
        assert!((e.rto - 2.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_record_scores_as_ggen() {
        let mut r = Record::default();
        assert!((r.score(0.0) - 0.75).abs() < f64::EPSILON);
        r.success(0.1, 0.0);
        assert!((r.score(0.0) - 0.85).abs() < 1e-12);
        r.invalid = 1;
        assert!((r.score(0.0) - 0.85 * 0.25).abs() < 1e-12);
    }
}
