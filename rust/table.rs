//! The query table as plain Rust: queries and tombstones in a slab indexed
//! by id, the expiry wheel, counters and the latency histogram. It is
//! generic over the result record `R` and the peer handle `P` so it can be
//! tested without Python; `core.rs` wraps it for Python (validation, the
//! lock, building the Python objects). Every rule mirrors `_core_py.py`.

use crate::buffer::ResultBuffer;
use crate::dedup::{DedupSet, KeyBatch, KeyHasher, KeyRef};
use crate::latency::{Latency, Summary};
use crate::wheel::{Due, Wheel, NIL};
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

pub const NEW: u8 = 0;
pub const COMPLETED: u8 = 1;
pub const DUPLICATE: u8 = 2;
pub const FULL: u8 = 3;
pub const LATE: u8 = 4;
pub const UNKNOWN: u8 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    MaxResults = 0,
    AllPeers = 1,
    Adaptive = 2,
    Timeout = 3,
    Cancelled = 4,
}

pub const REASON_NAMES: [&str; 5] = [
    "max_results",
    "all_peers",
    "adaptive",
    "timeout",
    "cancelled",
];

impl Reason {
    pub fn name(self) -> &'static str {
        REASON_NAMES[self as usize]
    }
}

pub fn tick_ceil(seconds: f64) -> u64 {
    (seconds * 1000.0).ceil() as u64
}

pub fn tick_floor(seconds: f64) -> u64 {
    (seconds * 1000.0).floor() as u64
}

/// Parts of a query allocated only once it gets a result or a peer report.
pub struct Extra<R, P> {
    seen: DedupSet,
    buffer: Option<ResultBuffer<R>>,
    /// Peers done, with their Python hash; compared by hash, identity, then
    /// equality (by the caller, outside the lock).
    done: Vec<(isize, P)>,
}

impl<R, P> Default for Extra<R, P> {
    fn default() -> Self {
        Extra {
            seen: DedupSet::default(),
            buffer: None,
            done: Vec::new(),
        }
    }
}

pub struct Query<R, P> {
    start: f64,
    seq: u64,
    duplicates: u64,
    max_results: u32,
    accepted: u32,
    expected_peers: u32,
    peers_ok: u32,
    peers_failed: u32,
    extra: Option<Box<Extra<R, P>>>,
}

impl<R, P> Query<R, P> {
    fn peers_done(&self) -> u64 {
        u64::from(self.peers_ok) + u64::from(self.peers_failed)
    }

    fn is_complete(&self) -> bool {
        self.accepted >= self.max_results
            || (self.expected_peers > 0 && self.peers_done() >= u64::from(self.expected_peers))
    }

    fn extra(&mut self) -> &mut Extra<R, P> {
        self.extra.get_or_insert_with(Default::default)
    }
}

enum State<R, P> {
    Free { next: u32 },
    Live(Query<R, P>),
    Tomb,
}

struct Slot<R, P> {
    // Two halves keep the slot 8-byte aligned (u128 would pad it to 16).
    id: [u64; 2],
    timer: u32,
    state: State<R, P>,
}

fn split(id: u128) -> [u64; 2] {
    [(id >> 64) as u64, id as u64]
}

/// A query that ended: what the outcome is built from (outside the lock, so
/// the Python objects it holds are dropped there too).
pub struct Ended<R, P> {
    pub id: u128,
    pub reason: Reason,
    pub duration: f64,
    pub peers_ok: u32,
    pub peers_failed: u32,
    pub duplicates: u64,
    pub extra: Option<Box<Extra<R, P>>>,
}

impl<R, P> Ended<R, P> {
    /// The results not drained yet, oldest first.
    pub fn take_results(&mut self) -> Vec<R> {
        match self.extra.as_ref().and_then(|e| e.buffer.as_ref()) {
            Some(buffer) => buffer.drain(),
            None => Vec::new(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct NotComplete {
    pub accepted: u32,
    pub max_results: u32,
    pub peers_done: u64,
    pub expected_peers: u32,
}

/// A `peer_done` call: the peer's hash, the handle (taken if stored) and
/// whether it answered.
pub struct PeerReport<P> {
    pub hash: isize,
    pub peer: Option<P>,
    pub ok: bool,
}

pub enum PeerDone<P> {
    Status(u8),
    /// Peers already done with the same hash that are other objects: the
    /// caller compares them for equality outside the lock, then calls again
    /// with `from = upto` if none is equal.
    Compare {
        candidates: Vec<P>,
        upto: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    pub total: u64,
    pub successful: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub in_flight: u64,
    pub results: u64,
    pub duplicates: u64,
    pub late: u64,
    pub unknown: u64,
    pub overflow: u64,
}

enum Found {
    Live(u32),
    Tomb,
    Missing,
}

pub struct Table<R, P> {
    slots: Vec<Slot<R, P>>,
    free: u32,
    index: HashTable<u32>,
    hasher: RandomState,
    /// Hashes result keys; callers hash with a clone before locking.
    key_hasher: KeyHasher,
    wheel: Wheel,
    grace_ticks: u64,
    seq: u64,
    live: usize,
    tombs: usize,
    counters: Counters,
    latency: Latency,
}

impl<R, P> Table<R, P> {
    pub fn new(grace: f64) -> Self {
        Table {
            slots: Vec::new(),
            free: NIL,
            index: HashTable::new(),
            hasher: RandomState::default(),
            key_hasher: KeyHasher::default(),
            wheel: Wheel::new(),
            grace_ticks: tick_ceil(grace),
            seq: 0,
            live: 0,
            tombs: 0,
            counters: Counters::default(),
            latency: Latency::new(),
        }
    }

    fn find(&self, id: u128) -> Option<u32> {
        let key = split(id);
        let hash = self.hasher.hash_one(id);
        self.index
            .find(hash, |&i| self.slots[i as usize].id == key)
            .copied()
    }

    fn lookup(&self, id: u128) -> Found {
        match self.find(id) {
            None => Found::Missing,
            Some(i) => match self.slots[i as usize].state {
                State::Live(_) => Found::Live(i),
                _ => Found::Tomb,
            },
        }
    }

    fn query(&mut self, slot: u32) -> &mut Query<R, P> {
        Self::live(&mut self.slots, slot)
    }

    /// `query` borrowing only the slots, so other fields stay usable.
    fn live(slots: &mut [Slot<R, P>], slot: u32) -> &mut Query<R, P> {
        match &mut slots[slot as usize].state {
            State::Live(query) => query,
            _ => unreachable!("slot {slot} is not a live query"),
        }
    }

    /// The hash function of result keys: `hash` arguments are its hashes.
    pub fn key_hasher(&self) -> KeyHasher {
        self.key_hasher.clone()
    }

    fn missing(&mut self, tomb: bool, count: u64) -> u8 {
        if tomb {
            self.counters.late += count;
            LATE
        } else {
            self.counters.unknown += count;
            UNKNOWN
        }
    }

    /// Start a query. False (and nothing changed) if `id` is already known.
    pub fn register(
        &mut self,
        id: u128,
        timeout: f64,
        max_results: u32,
        expected_peers: u32,
        now: f64,
    ) -> bool {
        if self.find(id).is_some() {
            return false;
        }
        self.wheel.advance_if_empty(tick_floor(now));
        self.seq += 1;
        let query = Query {
            start: now,
            seq: self.seq,
            duplicates: 0,
            max_results,
            accepted: 0,
            expected_peers,
            peers_ok: 0,
            peers_failed: 0,
            extra: None,
        };
        let slot = Slot {
            id: split(id),
            timer: NIL,
            state: State::Live(query),
        };
        let index = if self.free != NIL {
            let index = self.free;
            let old = std::mem::replace(&mut self.slots[index as usize], slot);
            self.free = match old.state {
                State::Free { next } => next,
                _ => unreachable!("free list holds a used slot"),
            };
            index
        } else {
            let index = u32::try_from(self.slots.len()).expect("query slab overflow");
            assert!(index != NIL, "query slab overflow");
            self.slots.push(slot);
            index
        };
        let (timer, _) = self.wheel.insert(tick_ceil(now + timeout), index);
        self.slots[index as usize].timer = timer;
        let hash = self.hasher.hash_one(id);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, index, |&i| {
            let [hi, lo] = slots[i as usize].id;
            hasher.hash_one((u128::from(hi) << 64) | u128::from(lo))
        });
        self.live += 1;
        self.counters.total += 1;
        true
    }

    /// First step of `offer`: the outcome if it is final (and counted), else
    /// the query's start, to build the record with before `offer`.
    pub fn offer_check(&mut self, id: u128, key: KeyRef<'_>, hash: u64) -> Result<f64, u8> {
        let slot = match self.lookup(id) {
            Found::Live(slot) => slot,
            Found::Tomb => return Err(self.missing(true, 1)),
            Found::Missing => return Err(self.missing(false, 1)),
        };
        let query = self.query(slot);
        if query.is_complete() {
            self.counters.overflow += 1;
            return Err(FULL);
        }
        if query
            .extra
            .as_ref()
            .is_some_and(|e| e.seen.contains(key, hash))
        {
            self.count_duplicate(slot);
            return Err(DUPLICATE);
        }
        Ok(query.start)
    }

    fn count_duplicate(&mut self, slot: u32) {
        self.query(slot).duplicates += 1;
        self.counters.duplicates += 1;
    }

    /// Offer one result; takes the record out of `record` if accepted.
    pub fn offer(&mut self, id: u128, key: KeyRef<'_>, hash: u64, record: &mut Option<R>) -> u8 {
        match self.lookup(id) {
            Found::Live(slot) => self.offer_live(slot, key, hash, record),
            Found::Tomb => self.missing(true, 1),
            Found::Missing => self.missing(false, 1),
        }
    }

    fn offer_live(&mut self, slot: u32, key: KeyRef<'_>, hash: u64, record: &mut Option<R>) -> u8 {
        let code = self.accept(slot, key, hash);
        if matches!(code, NEW | COMPLETED) {
            if let Some(record) = record.take() {
                self.buffer_of(slot).push_accepted(record);
            }
        }
        code
    }

    /// Decides (and counts) an offer to a live query, adding its key if
    /// new; on NEW or COMPLETED the caller adds the record to the buffer.
    fn accept(&mut self, slot: u32, key: KeyRef<'_>, hash: u64) -> u8 {
        let query = Self::live(&mut self.slots, slot);
        if query.is_complete() {
            self.counters.overflow += 1;
            return FULL;
        }
        let max_results = query.max_results as usize;
        let hasher = &self.key_hasher;
        if !query.extra().seen.insert(key, hash, hasher, max_results) {
            self.count_duplicate(slot);
            return DUPLICATE;
        }
        query.accepted += 1;
        self.counters.results += 1;
        if query.is_complete() {
            COMPLETED
        } else {
            NEW
        }
    }

    fn buffer_of(&mut self, slot: u32) -> &ResultBuffer<R> {
        let query = self.query(slot);
        let max_results = query.max_results as usize;
        query
            .extra()
            .buffer
            .get_or_insert_with(|| ResultBuffer::new(max_results))
    }

    /// First step of `offer_many`: the final outcome if the query is
    /// missing or complete (counted), else its start, with `fresh[i]` set
    /// to whether key `i` is not in the query's set yet (nothing counted):
    /// only those need a record.
    pub fn offer_many_check(
        &mut self,
        id: u128,
        keys: &KeyBatch,
        fresh: &mut Vec<bool>,
    ) -> Result<f64, (u8, u64, u64)> {
        let count = keys.len() as u64;
        let slot = match self.lookup(id) {
            Found::Live(slot) => slot,
            Found::Tomb => return Err((self.missing(true, count), 0, 0)),
            Found::Missing => return Err((self.missing(false, count), 0, 0)),
        };
        let query = self.query(slot);
        if query.is_complete() {
            self.counters.overflow += count;
            return Err((FULL, 0, 0));
        }
        fresh.clear();
        match &query.extra {
            Some(extra) => {
                extra.seen.warm_up(keys.len());
                fresh.extend(keys.iter().map(|(k, h)| !extra.seen.contains(k, h)));
            }
            None => fresh.resize(keys.len(), true),
        }
        Ok(query.start)
    }

    /// Offer a batch in order: key `i` with `records[i]`, which is taken
    /// out if accepted. Returns (status, accepted, duplicates).
    ///
    /// A key without a record was seen already at `offer_many_check`; a key
    /// stays seen while its query lives, so it is counted as a duplicate
    /// again without a lookup.
    pub fn offer_many(
        &mut self,
        id: u128,
        keys: &KeyBatch,
        records: &mut [Option<R>],
    ) -> (u8, u64, u64) {
        let count = keys.len() as u64;
        let slot = match self.lookup(id) {
            Found::Live(slot) => slot,
            Found::Tomb => return (self.missing(true, count), 0, 0),
            Found::Missing => return (self.missing(false, count), 0, 0),
        };
        if self.query(slot).is_complete() {
            self.counters.overflow += count;
            return (FULL, 0, 0);
        }
        let buffer = self.buffer_of(slot).clone();
        let (mut accepted, mut duplicates) = (0, 0);
        for (position, ((key, hash), record)) in keys.iter().zip(records).enumerate() {
            let code = if record.is_some() {
                self.accept(slot, key, hash)
            } else {
                self.count_duplicate(slot);
                DUPLICATE
            };
            if code == DUPLICATE {
                duplicates += 1;
                continue;
            }
            if let Some(record) = record.take() {
                buffer.push_accepted(record);
            }
            accepted += 1;
            if code == COMPLETED {
                self.counters.overflow += count - position as u64 - 1;
                return (COMPLETED, accepted, duplicates);
            }
        }
        (NEW, accepted, duplicates)
    }

    /// Record a peer as done. `same` says whether two handles are the same
    /// object; `clone` copies a handle (an incref for Python objects).
    pub fn peer_done(
        &mut self,
        id: u128,
        report: &mut PeerReport<P>,
        from: usize,
        same: impl Fn(&P, &P) -> bool,
        clone: impl Fn(&P) -> P,
    ) -> PeerDone<P> {
        let slot = match self.lookup(id) {
            Found::Live(slot) => slot,
            Found::Tomb => return PeerDone::Status(LATE),
            Found::Missing => return PeerDone::Status(UNKNOWN),
        };
        let hash = report.hash;
        let Some(new) = report.peer.as_ref() else {
            return PeerDone::Status(UNKNOWN);
        };
        let query = self.query(slot);
        let was_complete = query.is_complete();
        let extra = query.extra();
        let from = from.min(extra.done.len());
        let mut candidates = Vec::new();
        for (h, old) in &extra.done[from..] {
            if *h == hash {
                if same(old, new) {
                    return PeerDone::Status(DUPLICATE);
                }
                candidates.push(clone(old));
            }
        }
        if !candidates.is_empty() {
            return PeerDone::Compare {
                candidates,
                upto: extra.done.len(),
            };
        }
        if let Some(new) = report.peer.take() {
            extra.done.push((hash, new));
        }
        if report.ok {
            query.peers_ok += 1;
        } else {
            query.peers_failed += 1;
        }
        PeerDone::Status(if was_complete {
            FULL
        } else if query.is_complete() {
            COMPLETED
        } else {
            NEW
        })
    }

    /// The buffer of a query in flight, to drain outside the lock.
    pub fn buffer(&self, id: u128) -> Option<ResultBuffer<R>> {
        match self.lookup(id) {
            Found::Live(slot) => match &self.slots[slot as usize].state {
                State::Live(q) => q.extra.as_ref().and_then(|e| e.buffer.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn finish(
        &mut self,
        id: u128,
        now: f64,
        reason: Option<Reason>,
    ) -> Result<Option<Ended<R, P>>, NotComplete> {
        let Found::Live(slot) = self.lookup(id) else {
            return Ok(None);
        };
        let reason = match reason {
            Some(reason) => reason,
            None => {
                let q = self.query(slot);
                if q.accepted >= q.max_results {
                    Reason::MaxResults
                } else if q.expected_peers > 0 && q.peers_done() >= u64::from(q.expected_peers) {
                    Reason::AllPeers
                } else {
                    return Err(NotComplete {
                        accepted: q.accepted,
                        max_results: q.max_results,
                        peers_done: q.peers_done(),
                        expected_peers: q.expected_peers,
                    });
                }
            }
        };
        self.counters.successful += 1;
        Ok(Some(self.end(slot, reason, now, true)))
    }

    pub fn cancel(&mut self, id: u128, now: f64) -> Option<Ended<R, P>> {
        let Found::Live(slot) = self.lookup(id) else {
            return None;
        };
        self.counters.cancelled += 1;
        Some(self.end(slot, Reason::Cancelled, now, false))
    }

    fn end(&mut self, slot: u32, reason: Reason, now: f64, record_latency: bool) -> Ended<R, P> {
        let entry = &mut self.slots[slot as usize];
        let State::Live(query) = std::mem::replace(&mut entry.state, State::Tomb) else {
            unreachable!("ending a slot that is not live");
        };
        let [hi, lo] = entry.id;
        let timer = std::mem::replace(&mut entry.timer, NIL);
        if timer != NIL {
            self.wheel.remove(timer);
        }
        // Bury: the id is remembered until the tombstone's tick.
        let (tomb_timer, _) = self.wheel.insert(tick_floor(now) + self.grace_ticks, slot);
        self.slots[slot as usize].timer = tomb_timer;
        self.live -= 1;
        self.tombs += 1;
        let duration = now - query.start;
        if record_latency {
            self.latency.record(duration);
        }
        Ended {
            id: (u128::from(hi) << 64) | u128::from(lo),
            reason,
            duration,
            peers_ok: query.peers_ok,
            peers_failed: query.peers_failed,
            duplicates: query.duplicates,
            extra: query.extra,
        }
    }

    fn free_slot(&mut self, slot: u32) {
        let [hi, lo] = self.slots[slot as usize].id;
        let id = (u128::from(hi) << 64) | u128::from(lo);
        let hash = self.hasher.hash_one(id);
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == slot) {
            entry.remove();
        }
        let entry = &mut self.slots[slot as usize];
        entry.state = State::Free { next: self.free };
        entry.timer = NIL;
        entry.id = [0, 0];
        self.free = slot;
    }

    /// End with reason `timeout` every query due by `now`, by deadline then
    /// registration, and forget the tombstones whose grace is over.
    pub fn expire(&mut self, now: f64) -> Vec<Ended<R, P>> {
        let mut due: Vec<Due> = Vec::new();
        self.wheel.poll(tick_floor(now), &mut due);
        let mut expired: Vec<(u64, u64, u32)> = Vec::new();
        for Due { payload, deadline } in due {
            let slot = &mut self.slots[payload as usize];
            slot.timer = NIL;
            match &slot.state {
                State::Live(query) => expired.push((deadline, query.seq, payload)),
                State::Tomb => {
                    self.tombs -= 1;
                    self.free_slot(payload);
                }
                State::Free { .. } => unreachable!("a free slot had a timer"),
            }
        }
        expired.sort_unstable();
        expired
            .into_iter()
            .map(|(_, _, slot)| {
                self.counters.timed_out += 1;
                self.end(slot, Reason::Timeout, now, true)
            })
            .collect()
    }

    /// Tick of the wheel's next occupied slot.
    pub fn next_deadline_tick(&self) -> Option<u64> {
        self.wheel.next_expiration().map(|(_, _, tick)| tick)
    }

    pub fn next_deadline(&self) -> Option<f64> {
        self.next_deadline_tick().map(|tick| tick as f64 / 1000.0)
    }

    pub fn counters(&self) -> Counters {
        Counters {
            in_flight: self.live as u64,
            ..self.counters
        }
    }

    pub fn latency(&self) -> Summary {
        self.latency.summary()
    }

    pub fn in_flight(&self) -> usize {
        self.live
    }

    pub fn tombstones(&self) -> usize {
        self.tombs
    }

    pub fn timers(&self) -> usize {
        self.wheel.len()
    }

    /// Bytes of the slab entry for one query (for sizing).
    pub fn slot_size() -> usize {
        std::mem::size_of::<Slot<R, P>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = Table<u32, u32>;

    fn offer_key(t: &mut T, id: u128, key: KeyRef<'_>, record: &mut Option<u32>) -> u8 {
        let hash = t.key_hasher().hash(key);
        t.offer(id, key, hash, record)
    }

    fn offer(t: &mut T, id: u128, key: &str, value: u32) -> u8 {
        offer_key(t, id, KeyRef::str(key.as_bytes()), &mut Some(value))
    }

    fn check(t: &mut T, id: u128, key: &str) -> Result<f64, u8> {
        let key = KeyRef::str(key.as_bytes());
        let hash = t.key_hasher().hash(key);
        t.offer_check(id, key, hash)
    }

    fn batch(t: &T, keys: &[&str]) -> KeyBatch {
        let hasher = t.key_hasher();
        let mut batch = KeyBatch::with_capacity(keys.len());
        for key in keys {
            batch.push(KeyRef::str(key.as_bytes()), &hasher);
        }
        batch
    }

    fn done(t: &mut T, id: u128, peer: u32, ok: bool) -> u8 {
        let mut report = PeerReport {
            hash: peer as isize,
            peer: Some(peer),
            ok,
        };
        match t.peer_done(id, &mut report, 0, |a, b| a == b, |a| *a) {
            PeerDone::Status(s) => s,
            PeerDone::Compare { .. } => panic!("no hash collisions here"),
        }
    }

    #[test]
    fn slot_is_compact() {
        assert!(T::slot_size() <= 96, "{}", T::slot_size());
        assert!(crate::wheel::Wheel::entry_size() <= 24);
    }

    #[test]
    fn offer_dedup_full_and_finish() {
        let mut t = T::new(5.0);
        assert!(t.register(1, 10.0, 2, 0, 0.0));
        assert!(!t.register(1, 10.0, 2, 0, 0.0));
        assert_eq!(check(&mut t, 1, "a"), Ok(0.0));
        assert_eq!(offer(&mut t, 1, "a", 10), NEW);
        assert_eq!(check(&mut t, 1, "a"), Err(DUPLICATE));
        assert_eq!(offer(&mut t, 1, "a", 11), DUPLICATE);
        let mut r = Some(12);
        assert_eq!(offer_key(&mut t, 1, KeyRef::bytes(b"a"), &mut r), COMPLETED);
        assert_eq!(r, None);
        assert_eq!(offer(&mut t, 1, "b", 13), FULL);
        assert_eq!(t.buffer(1).unwrap().drain(), vec![10, 12]);
        assert_eq!(offer(&mut t, 1, "b", 13), FULL);
        let mut ended = t.finish(1, 1.5, None).unwrap().unwrap();
        assert_eq!(ended.reason, Reason::MaxResults);
        assert_eq!(ended.duplicates, 2);
        assert!(ended.take_results().is_empty());
        assert_eq!(offer(&mut t, 1, "c", 14), LATE);
        assert_eq!(offer(&mut t, 2, "c", 14), UNKNOWN);
        let c = t.counters();
        assert_eq!(
            (
                c.total,
                c.successful,
                c.results,
                c.duplicates,
                c.late,
                c.unknown,
                c.overflow
            ),
            (1, 1, 2, 2, 1, 1, 2)
        );
        assert_eq!(t.tombstones(), 1);
        assert_eq!(t.timers(), 1);
        // Grace ends at floor(1.5 s) + 5 s.
        assert_eq!(t.next_deadline_tick().map(|d| d <= 6500), Some(true));
        assert!(t.expire(6.499).is_empty());
        assert_eq!(t.tombstones(), 1);
        assert!(t.expire(6.5).is_empty());
        assert_eq!(t.tombstones(), 0);
        assert_eq!(t.timers(), 0);
        assert_eq!(offer(&mut t, 1, "c", 14), UNKNOWN);
    }

    #[test]
    fn offer_many_counts_overflow_and_late() {
        let mut t = T::new(5.0);
        t.register(7, 10.0, 3, 0, 0.0);
        let keys = batch(&t, &["a", "a", "b", "c", "d", "e"]);
        let mut records: Vec<Option<u32>> = (0..6).map(Some).collect();
        assert_eq!(t.offer_many(7, &keys, &mut records), (COMPLETED, 3, 1));
        assert_eq!(t.counters().overflow, 2);
        assert_eq!(records[1], Some(1));
        assert_eq!(records[4], Some(4));
        let four = batch(&t, &["f", "g", "h", "i"]);
        let mut fresh = Vec::new();
        assert_eq!(t.offer_many_check(7, &four, &mut fresh), Err((FULL, 0, 0)));
        assert_eq!(t.counters().overflow, 6);
        t.cancel(7, 1.0).unwrap();
        assert_eq!(t.offer_many_check(7, &four, &mut fresh), Err((LATE, 0, 0)));
        assert_eq!(t.counters().late, 4);
        assert_eq!(t.counters().cancelled, 1);
        assert_eq!(t.latency().0, 0);
    }

    #[test]
    fn offer_many_check_marks_fresh_keys() {
        let mut t = T::new(5.0);
        t.register(8, 10.0, 10, 0, 0.0);
        let keys = batch(&t, &["a", "b", "a"]);
        let mut fresh = Vec::new();
        // Nothing seen yet: every key needs a record (even a repeat).
        assert_eq!(t.offer_many_check(8, &keys, &mut fresh), Ok(0.0));
        assert_eq!(fresh, vec![true, true, true]);
        let mut records = vec![Some(0), Some(1), Some(2)];
        assert_eq!(t.offer_many(8, &keys, &mut records), (NEW, 2, 1));
        assert_eq!(records, vec![None, None, Some(2)]);
        let keys = batch(&t, &["b", "c", "a"]);
        assert_eq!(t.offer_many_check(8, &keys, &mut fresh), Ok(0.0));
        assert_eq!(fresh, vec![false, true, false]);
        // Entries without a record count as duplicates.
        let mut records = vec![None, Some(3), None];
        assert_eq!(t.offer_many(8, &keys, &mut records), (NEW, 1, 2));
        assert_eq!(t.buffer(8).unwrap().drain(), vec![0, 1, 3]);
        let c = t.counters();
        assert_eq!((c.results, c.duplicates, c.overflow), (3, 3, 0));
        let ended = t.cancel(8, 1.0).unwrap();
        assert_eq!(ended.duplicates, 3);
    }

    #[test]
    fn peers_complete_and_duplicates() {
        let mut t = T::new(5.0);
        t.register(3, 10.0, 5, 2, 0.0);
        assert_eq!(done(&mut t, 3, 1, true), NEW);
        assert_eq!(done(&mut t, 3, 1, false), DUPLICATE);
        assert_eq!(done(&mut t, 3, 2, false), COMPLETED);
        assert_eq!(done(&mut t, 3, 3, true), FULL);
        assert_eq!(offer(&mut t, 3, "a", 1), FULL);
        let ended = t.finish(3, 2.0, None).unwrap().unwrap();
        assert_eq!(ended.reason, Reason::AllPeers);
        assert_eq!((ended.peers_ok, ended.peers_failed), (2, 1));
        assert_eq!(done(&mut t, 3, 4, true), LATE);
        assert_eq!(done(&mut t, 4, 4, true), UNKNOWN);
    }

    #[test]
    fn equal_hashes_are_compared_by_the_caller() {
        let mut t = T::new(5.0);
        t.register(5, 10.0, 5, 3, 0.0);
        let report = |peer| PeerReport {
            hash: 1,
            peer: Some(peer),
            ok: true,
        };
        let call = |t: &mut T, r: &mut PeerReport<u32>, from| {
            t.peer_done(5, r, from, |a, b| a == b, |a| *a)
        };
        assert!(matches!(
            call(&mut t, &mut report(10), 0),
            PeerDone::Status(NEW)
        ));
        // Same object: decided under the lock.
        assert!(matches!(
            call(&mut t, &mut report(10), 0),
            PeerDone::Status(DUPLICATE)
        ));
        // Another object with the same hash: the caller must compare.
        let mut r = report(11);
        let PeerDone::Compare { candidates, upto } = call(&mut t, &mut r, 0) else {
            panic!("expected candidates");
        };
        assert_eq!((candidates, upto), (vec![10], 1));
        assert!(r.peer.is_some());
        // Not equal: go on from `upto`, and the peer is stored.
        assert!(matches!(call(&mut t, &mut r, upto), PeerDone::Status(NEW)));
        assert!(r.peer.is_none());
        assert_eq!(t.counters().in_flight, 1);
    }

    #[test]
    fn finish_needs_a_reason_when_incomplete() {
        let mut t = T::new(5.0);
        t.register(9, 10.0, 5, 2, 0.0);
        let err = t.finish(9, 1.0, None).err().unwrap();
        assert_eq!(
            err,
            NotComplete {
                accepted: 0,
                max_results: 5,
                peers_done: 0,
                expected_peers: 2
            }
        );
        assert_eq!(t.in_flight(), 1);
        let ended = t.finish(9, 1.0, Some(Reason::Adaptive)).unwrap().unwrap();
        assert_eq!(ended.reason, Reason::Adaptive);
        assert!(t.finish(9, 1.0, None).unwrap().is_none());
    }

    #[test]
    fn expire_orders_by_deadline_then_registration() {
        let mut t = T::new(0.0);
        t.register(1, 3.0, 1, 0, 0.0);
        t.register(2, 1.0, 1, 0, 0.0);
        t.register(3, 3.0, 1, 0, 0.0);
        t.register(4, 2.0, 1, 0, 0.0);
        t.register(5, 9.0, 1, 0, 0.0);
        let ids: Vec<u128> = t.expire(3.0).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![2, 4, 1, 3]);
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.tombstones(), 4);
        // grace 0: tombstones end one tick later.
        assert_eq!(t.next_deadline_tick(), Some(3001));
        assert!(t.expire(3.001).is_empty());
        assert_eq!(t.tombstones(), 0);
        assert_eq!(t.counters().timed_out, 4);
        assert_eq!(t.latency().0, 4);
        // Slots are reused.
        t.register(6, 1.0, 1, 0, 4.0);
        assert_eq!(t.slots.len(), 5);
    }
}
