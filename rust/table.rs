//! The query state machine as plain Rust: queries and tombstones in a slab
//! (`slab.rs`) indexed by id (`index.rs`), their deadlines and tombstone ends
//! in the expiry wheel (`wheel/`), counters and the latency histogram. It is
//! generic over the result record `R` and the peer handle `P` so it can be
//! tested without Python; `query_core.rs` wraps it for Python (validation,
//! the lock, building the Python objects). Every rule mirrors `_core_py.py`.

use crate::buffer::{Drainer, ResultBuffer};
use crate::cache::prefetch_two_lines;
use crate::dedup::{HashedKey, KeyHasher, KeyRef};
use crate::index::{IdIndex, PackedId};
use crate::latency::Latency;
use crate::query::{DonePeer, Extra, Progress, Query};
use crate::slab::Slab;
use crate::types::{BatchStatus, Counters, LatencySummary, QueryState, Reason, Status};
use crate::wheel::{Due, Wheel, NIL};

/// Ticks (ms) at or after `seconds`; `seconds` is a checked `now` plus at
/// most `MAX_TIMEOUT`, so finite, >= 0 and well within u64 ticks.
#[must_use]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "seconds is checked: finite, >= 0, <= MAX_NOW + MAX_TIMEOUT"
)]
pub fn tick_ceil(seconds: f64) -> u64 {
    (seconds * 1000.0).ceil() as u64
}

/// Ticks (ms) at or before `seconds` (a checked `now`).
#[must_use]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "seconds is checked: finite, >= 0, <= MAX_NOW"
)]
pub fn tick_floor(seconds: f64) -> u64 {
    (seconds * 1000.0).floor() as u64
}

enum State<R, P> {
    Live(Query<R, P>),
    /// An ended query's id, remembered until its grace is over.
    Tomb,
}

/// A slab entry: a query or a tombstone, with its id and its wheel entry.
struct Slot<R, P> {
    id: PackedId,
    /// Its deadline's (or its tombstone end's) key in the wheel; `NIL` only
    /// while `expire` is between taking it from the wheel and ending it.
    timer: u32,
    state: State<R, P>,
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

/// A `peer_done` call: the peer's hash, the handle (taken if stored) and
/// whether it answered.
pub struct PeerReport<P> {
    pub hash: isize,
    pub peer: Option<P>,
    pub ok: bool,
}

pub enum PeerDone<P> {
    Status(Status),
    /// Peers already done with the same hash that are other objects: the
    /// caller compares them for equality outside the lock, then calls again
    /// with `from = upto` if none is equal.
    Compare {
        candidates: Vec<P>,
        upto: usize,
    },
}

/// Where `prefetch` found a query: `offer_many` checks it before trusting
/// it (the lock was released between the two).
#[derive(Clone, Copy, Debug)]
pub struct SlotHint(u32);

enum Found {
    Live(u32),
    Tomb,
    Missing,
}

/// A query the wheel timed out; they end in this (derived) order: by
/// deadline, then registration.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Expired {
    deadline: u64,
    seq: u64,
    slot: u32,
}

pub struct Table<R, P> {
    slots: Slab<Slot<R, P>>,
    index: IdIndex,
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
    #[must_use]
    pub fn new(grace: f64) -> Self {
        Table {
            slots: Slab::new(),
            index: IdIndex::default(),
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
        let slots = &self.slots;
        self.index.find(id, |key| slots.get(key).id.get())
    }

    fn lookup(&self, id: u128) -> Found {
        match self.find(id) {
            None => Found::Missing,
            Some(key) => match self.slots.get(key).state {
                State::Live(_) => Found::Live(key),
                State::Tomb => Found::Tomb,
            },
        }
    }

    /// The live query at `key`, borrowing only the slab so the table's
    /// other fields stay usable.
    fn live(slots: &mut Slab<Slot<R, P>>, key: u32) -> &mut Query<R, P> {
        match &mut slots.get_mut(key).state {
            State::Live(query) => query,
            State::Tomb => unreachable!("slot {key} is not a live query"),
        }
    }

    fn query(&mut self, key: u32) -> &mut Query<R, P> {
        Self::live(&mut self.slots, key)
    }

    /// The counts the code relies on: every slot is live or a tombstone,
    /// indexed, and has exactly one wheel entry (between public calls: not
    /// inside `expire`, which ends queries the wheel gave up).
    fn debug_check_counts(&self) {
        debug_assert_eq!(self.live + self.tombs, self.slots.len(), "live + tombs");
        debug_assert_eq!(self.index.len(), self.slots.len(), "indexed ids");
        debug_assert_eq!(
            self.wheel.len(),
            self.slots.len(),
            "one wheel entry per slot"
        );
    }

    /// The hash function of result keys: `hash` arguments are its hashes.
    #[must_use]
    pub fn key_hasher(&self) -> KeyHasher {
        self.key_hasher.clone()
    }

    fn missing(&mut self, tomb: bool, count: u64) -> Status {
        if tomb {
            self.counters.late += count;
            Status::Late
        } else {
            self.counters.unknown += count;
            Status::Unknown
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
        let query = Query::new(now, self.seq, max_results, expected_peers);
        let key = self.slots.insert(Slot {
            id: PackedId::new(id),
            timer: NIL,
            state: State::Live(query),
        });
        let timer = self.wheel.insert(tick_ceil(now + timeout), key);
        self.slots.get_mut(key).timer = timer.key;
        let slots = &self.slots;
        self.index.insert(id, key, |k| slots.get(k).id.get());
        self.live += 1;
        self.counters.total += 1;
        self.debug_check_counts();
        true
    }

    /// What the table knows of `id` (counting nothing).
    #[must_use]
    pub fn state(&self, id: u128) -> QueryState {
        match self.lookup(id) {
            Found::Live(_) => QueryState::Live,
            Found::Tomb => QueryState::Tombstone,
            Found::Missing => QueryState::Unknown,
        }
    }

    /// First step of `offer`: the outcome if it is final (and counted), else
    /// the query's start, to build the record with before `offer`.
    ///
    /// # Errors
    /// The final status when the offer will not be taken.
    pub fn offer_check(&mut self, id: u128, key: KeyRef<'_>, hash: u64) -> Result<f64, Status> {
        let slot = match self.lookup(id) {
            Found::Live(slot) => slot,
            Found::Tomb => return Err(self.missing(true, 1)),
            Found::Missing => return Err(self.missing(false, 1)),
        };
        let query = self.query(slot);
        if query.is_complete() {
            self.counters.overflow += 1;
            return Err(Status::Full);
        }
        if query
            .extra
            .as_ref()
            .is_some_and(|e| e.seen.contains(key, hash))
        {
            query.duplicates += 1;
            self.counters.duplicates += 1;
            return Err(Status::Duplicate);
        }
        Ok(query.start)
    }

    /// Offer one result; takes the record out of `record` if accepted.
    pub fn offer(
        &mut self,
        id: u128,
        key: KeyRef<'_>,
        hash: u64,
        record: &mut Option<R>,
    ) -> Status {
        match self.lookup(id) {
            Found::Live(slot) => self.offer_live(slot, key, hash, record),
            Found::Tomb => self.missing(true, 1),
            Found::Missing => self.missing(false, 1),
        }
    }

    fn offer_live(
        &mut self,
        slot: u32,
        key: KeyRef<'_>,
        hash: u64,
        record: &mut Option<R>,
    ) -> Status {
        let query = Self::live(&mut self.slots, slot);
        if query.is_complete() {
            self.counters.overflow += 1;
            return Status::Full;
        }
        Self::accept_into(
            query,
            &mut self.counters,
            &self.key_hasher,
            key,
            hash,
            || record.take(),
        )
    }

    /// Decides (and counts) an offer to `query`, live and not complete:
    /// adds its key if new, and then pushes `make()`'s record (if any) into
    /// the query's buffer directly. Borrowing the query's parts, not the
    /// table, lets `offer_many` find the query once for its whole batch and
    /// hold no handle of the buffer of its own (an `Arc` clone and drop a
    /// batch before): a2 of `bench core` 3.7 % faster (median of 15,
    /// interleaved).
    fn accept_into(
        query: &mut Query<R, P>,
        counters: &mut Counters,
        hasher: &KeyHasher,
        key: KeyRef<'_>,
        hash: u64,
        make: impl FnOnce() -> Option<R>,
    ) -> Status {
        debug_assert!(!query.is_complete(), "offering to a complete query");
        let max_results = query.max_results;
        let extra = query.extra();
        if !extra.seen.insert(key, hash, hasher, max_results as usize) {
            query.duplicates += 1;
            counters.duplicates += 1;
            return Status::Duplicate;
        }
        if let Some(record) = make() {
            extra.buffer(max_results).push_accepted(record);
        }
        query.accepted += 1;
        debug_assert!(
            query.accepted <= query.max_results,
            "accepted past max_results"
        );
        counters.results += 1;
        if query.is_complete() {
            Status::Completed
        } else {
            Status::New
        }
    }

    /// Before an `offer_many` of `lookups` keys to `id`: starts fetching the
    /// query's seen keys into the cache, so that they arrive while the
    /// caller reads and hashes the batch's keys. a2 of `bench core`: 6-9 %
    /// faster than touching the set at the start of `offer_many` (three
    /// interleaved runs of 15-25 reps, paired medians 1.06-1.09 against
    /// 0.92-1.035 for the same build twice).
    ///
    /// Returns where the query is (if live), a hint for `offer_many`, so
    /// the id is looked up once a batch, not twice.
    #[must_use]
    pub fn prefetch(&self, id: u128, lookups: usize) -> Option<SlotHint> {
        self.prefetch_at(id, None, lookups)
    }

    /// `prefetch`, trying `hint` (from `locate`) first.
    #[must_use]
    pub fn prefetch_at(
        &self,
        id: u128,
        hint: Option<SlotHint>,
        lookups: usize,
    ) -> Option<SlotHint> {
        let Found::Live(slot) = self.lookup_hinted(id, hint) else {
            return None;
        };
        if let State::Live(query) = &self.slots.get(slot).state {
            if let Some(extra) = &query.extra {
                extra.seen.prefetch(lookups);
            }
        }
        Some(SlotHint(slot))
    }

    /// Where the query `id` is (if live), its extra part (seen keys and
    /// buffer: another allocation) asked of the CPU, so that `prefetch_at`
    /// a while later finds it in the cache rather than waiting for it
    /// there (see `QueryCore::offer_many` for the gain).
    #[must_use]
    pub fn locate(&self, id: u128) -> Option<SlotHint> {
        let Found::Live(slot) = self.lookup(id) else {
            return None;
        };
        if let State::Live(query) = &self.slots.get(slot).state {
            if let Some(extra) = &query.extra {
                prefetch_two_lines(std::ptr::from_ref::<Extra<R, P>>(&**extra));
            }
        }
        Some(SlotHint(slot))
    }

    /// `lookup`, trying `hint` first: the slot it names holds `id` still
    /// unless the query ended (and its slot was reused) since; any other
    /// slot, vacant or another id's, falls back to the index.
    fn lookup_hinted(&self, id: u128, hint: Option<SlotHint>) -> Found {
        if let Some(SlotHint(slot)) = hint {
            if let Some(entry) = self.slots.try_get(slot) {
                if entry.id.get() == id && matches!(entry.state, State::Live(_)) {
                    return Found::Live(slot);
                }
            }
        }
        self.lookup(id)
    }

    /// Offer a batch in order, in one pass under the lock: key `i`'s record
    /// is made by `make(i, start)` only if the key is accepted (`start`: the
    /// query's start, for the response time). `make` must not run Python
    /// code (increfs only: see `query_core`'s locking rules).
    ///
    /// One lookup per key, and a record made only for a key accepted: the
    /// two steps it replaced (which keys are fresh, records built unlocked
    /// for those, then the offer) looked every key up twice and built a
    /// tuple per fresh key (`bench core`'s a2, see the commit).
    pub fn offer_many<'k>(
        &mut self,
        id: u128,
        hint: Option<SlotHint>,
        keys: impl ExactSizeIterator<Item = HashedKey<'k>>,
        mut make: impl FnMut(usize, f64) -> R,
    ) -> BatchStatus {
        let count = keys.len() as u64;
        let slot = match self.lookup_hinted(id, hint) {
            Found::Live(slot) => slot,
            Found::Tomb => return BatchStatus::refused(self.missing(true, count)),
            Found::Missing => return BatchStatus::refused(self.missing(false, count)),
        };
        let Self {
            slots,
            counters,
            key_hasher,
            ..
        } = self;
        let query = Self::live(slots, slot);
        if query.is_complete() {
            counters.overflow += count;
            return BatchStatus::refused(Status::Full);
        }
        let start = query.start;
        let mut answer = BatchStatus::refused(Status::New);
        for (position, HashedKey { key, hash }) in keys.enumerate() {
            let make = || Some(make(position, start));
            match Self::accept_into(query, counters, key_hasher, key, hash, make) {
                Status::Duplicate => answer.duplicates += 1,
                Status::Completed => {
                    answer.accepted += 1;
                    counters.overflow += count - position as u64 - 1;
                    answer.status = Status::Completed;
                    return answer;
                }
                _ => answer.accepted += 1,
            }
        }
        answer
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
            Found::Tomb => return PeerDone::Status(Status::Late),
            Found::Missing => return PeerDone::Status(Status::Unknown),
        };
        let hash = report.hash;
        let Some(new) = report.peer.as_ref() else {
            return PeerDone::Status(Status::Unknown);
        };
        let query = self.query(slot);
        let was_complete = query.is_complete();
        let extra = query.extra();
        let from = from.min(extra.done.len());
        let mut candidates = Vec::new();
        for done in &extra.done[from..] {
            if done.hash == hash {
                if same(&done.peer, new) {
                    return PeerDone::Status(Status::Duplicate);
                }
                candidates.push(clone(&done.peer));
            }
        }
        if !candidates.is_empty() {
            return PeerDone::Compare {
                candidates,
                upto: extra.done.len(),
            };
        }
        if let Some(peer) = report.peer.take() {
            extra.done.push(DonePeer { hash, peer });
        }
        if report.ok {
            query.peers_ok += 1;
        } else {
            query.peers_failed += 1;
        }
        debug_assert_eq!(
            query.extra.as_ref().map_or(0, |e| e.done.len() as u64),
            query.peers_done(),
            "a done peer stored per count"
        );
        PeerDone::Status(if was_complete {
            Status::Full
        } else if query.is_complete() {
            Status::Completed
        } else {
            Status::New
        })
    }

    /// The buffer of a query in flight, to drain outside the lock.
    #[must_use]
    pub fn buffer(&self, id: u128) -> Option<Drainer<R>> {
        let Found::Live(key) = self.lookup(id) else {
            return None;
        };
        match &self.slots.get(key).state {
            State::Live(query) => query.buffer_if_any().map(ResultBuffer::drainer),
            State::Tomb => None,
        }
    }

    /// End a query, with `reason` or else the one it is complete for.
    ///
    /// # Errors
    /// `Progress` (and nothing changed) if no reason is given and the query
    /// is not complete.
    pub fn finish(
        &mut self,
        id: u128,
        now: f64,
        reason: Option<Reason>,
    ) -> Result<Option<Ended<R, P>>, Progress> {
        let Found::Live(slot) = self.lookup(id) else {
            return Ok(None);
        };
        let reason = match reason {
            Some(reason) => reason,
            None => self.query(slot).completion()?,
        };
        self.counters.successful += 1;
        let ended = self.end(slot, reason, now, true);
        self.debug_check_counts();
        Ok(Some(ended))
    }

    pub fn cancel(&mut self, id: u128, now: f64) -> Option<Ended<R, P>> {
        let Found::Live(slot) = self.lookup(id) else {
            return None;
        };
        self.counters.cancelled += 1;
        let ended = self.end(slot, Reason::Cancelled, now, false);
        self.debug_check_counts();
        Some(ended)
    }

    fn end(&mut self, key: u32, reason: Reason, now: f64, record_latency: bool) -> Ended<R, P> {
        let slot = self.slots.get_mut(key);
        let State::Live(query) = std::mem::replace(&mut slot.state, State::Tomb) else {
            unreachable!("ending a slot that is not live");
        };
        let id = slot.id.get();
        let timer = std::mem::replace(&mut slot.timer, NIL);
        if timer != NIL {
            self.wheel.remove(timer);
        }
        // Bury: the id is remembered until the tombstone's tick.
        let tomb_timer = self.wheel.insert(tick_floor(now) + self.grace_ticks, key);
        self.slots.get_mut(key).timer = tomb_timer.key;
        self.live -= 1;
        self.tombs += 1;
        let duration = now - query.start;
        if record_latency {
            self.latency.record(duration);
        }
        Ended {
            id,
            reason,
            duration,
            peers_ok: query.peers_ok,
            peers_failed: query.peers_failed,
            duplicates: query.duplicates,
            extra: query.extra,
        }
    }

    /// Forget a tombstone whose wheel entry is gone.
    fn forget(&mut self, key: u32) {
        let slot = self.slots.remove(key);
        debug_assert!(matches!(slot.state, State::Tomb), "forgetting a live query");
        debug_assert_eq!(slot.timer, NIL, "forgetting a slot still in the wheel");
        self.index.remove(slot.id.get(), key);
        self.tombs -= 1;
    }

    /// End with reason `timeout` every query due by `now`, by deadline then
    /// registration, and forget the tombstones whose grace is over.
    pub fn expire(&mut self, now: f64) -> Vec<Ended<R, P>> {
        let mut due: Vec<Due> = Vec::new();
        self.wheel.poll(tick_floor(now), &mut due);
        let mut expired: Vec<Expired> = Vec::new();
        for Due { payload, deadline } in due {
            let slot = self.slots.get_mut(payload);
            slot.timer = NIL;
            match &slot.state {
                State::Live(query) => expired.push(Expired {
                    deadline,
                    seq: query.seq,
                    slot: payload,
                }),
                State::Tomb => self.forget(payload),
            }
        }
        expired.sort_unstable();
        let ended = expired
            .into_iter()
            .map(|Expired { slot, .. }| {
                self.counters.timed_out += 1;
                self.end(slot, Reason::Timeout, now, true)
            })
            .collect();
        self.debug_check_counts();
        ended
    }

    /// Tick of the wheel's next occupied slot.
    #[must_use]
    pub fn next_deadline_tick(&self) -> Option<u64> {
        self.wheel.next_expiration().map(|next| next.deadline)
    }

    #[must_use]
    #[allow(
        clippy::cast_precision_loss,
        reason = "ticks are at most MAX_NOW * 1000 + a timeout, below 2**53"
    )]
    pub fn next_deadline(&self) -> Option<f64> {
        self.next_deadline_tick().map(|tick| tick as f64 / 1000.0)
    }

    #[must_use]
    pub fn counters(&self) -> Counters {
        Counters {
            in_flight: self.live as u64,
            ..self.counters
        }
    }

    #[must_use]
    pub fn latency(&self) -> LatencySummary {
        self.latency.summary()
    }

    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.live
    }

    #[must_use]
    pub fn tombstones(&self) -> usize {
        self.tombs
    }

    #[must_use]
    pub fn timers(&self) -> usize {
        self.wheel.len()
    }

    /// Bytes of the slab entry for one query (for sizing).
    #[must_use]
    pub fn slot_size() -> usize {
        Slab::<Slot<R, P>>::entry_size()
    }

    /// Every invariant, walked in full (O(n), for tests).
    ///
    /// # Panics
    /// If one does not hold.
    pub fn check_invariants(&self) {
        self.slots.check_free_list();
        self.wheel.check_invariants();
        assert_eq!(self.live + self.tombs, self.slots.len());
        assert_eq!(self.index.len(), self.slots.len());
        assert_eq!(self.wheel.len(), self.slots.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = Table<u32, u32>;

    use Status::{Completed, Duplicate, Full, Late, New, Unknown};

    fn offer_key(t: &mut T, id: u128, key: KeyRef<'_>, record: &mut Option<u32>) -> Status {
        let hash = t.key_hasher().hash(key);
        t.offer(id, key, hash, record)
    }

    fn offer(t: &mut T, id: u128, key: &str, value: u32) -> Status {
        offer_key(t, id, KeyRef::str(key.as_bytes()), &mut Some(value))
    }

    fn check(t: &mut T, id: u128, key: &str) -> Result<f64, Status> {
        let key = KeyRef::str(key.as_bytes());
        let hash = t.key_hasher().hash(key);
        t.offer_check(id, key, hash)
    }

    fn batch(t: &T, keys: &[&'static str]) -> Vec<HashedKey<'static>> {
        let hasher = t.key_hasher();
        let with_hash = |key: &&'static str| {
            let key = KeyRef::str(key.as_bytes());
            HashedKey {
                key,
                hash: hasher.hash(key),
            }
        };
        keys.iter().map(with_hash).collect()
    }

    fn done(t: &mut T, id: u128, peer: u32, ok: bool) -> Status {
        let mut report = PeerReport {
            hash: isize::try_from(peer).unwrap(),
            peer: Some(peer),
            ok,
        };
        match t.peer_done(id, &mut report, 0, |a, b| a == b, |a| *a) {
            PeerDone::Status(s) => s,
            PeerDone::Compare { .. } => panic!("no hash collisions here"),
        }
    }

    fn batch_status(status: Status, accepted: u64, duplicates: u64) -> BatchStatus {
        BatchStatus {
            status,
            accepted,
            duplicates,
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
        assert_eq!(offer(&mut t, 1, "a", 10), New);
        assert_eq!(check(&mut t, 1, "a"), Err(Duplicate));
        assert_eq!(offer(&mut t, 1, "a", 11), Duplicate);
        let mut r = Some(12);
        assert_eq!(offer_key(&mut t, 1, KeyRef::bytes(b"a"), &mut r), Completed);
        assert_eq!(r, None);
        assert_eq!(offer(&mut t, 1, "b", 13), Full);
        assert_eq!(t.buffer(1).unwrap().drain(), vec![10, 12]);
        assert_eq!(offer(&mut t, 1, "b", 13), Full);
        let mut ended = t.finish(1, 1.5, None).unwrap().unwrap();
        assert_eq!(ended.reason, Reason::MaxResults);
        assert_eq!(ended.duplicates, 2);
        assert!(ended.take_results().is_empty());
        assert_eq!(offer(&mut t, 1, "c", 14), Late);
        assert_eq!(offer(&mut t, 2, "c", 14), Unknown);
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
        assert_eq!(offer(&mut t, 1, "c", 14), Unknown);
    }

    #[test]
    fn offer_many_counts_overflow_and_late() {
        let mut t = T::new(5.0);
        t.register(7, 10.0, 3, 0, 0.0);
        let keys = batch(&t, &["a", "a", "b", "c", "d", "e"]);
        let mut made = Vec::new();
        assert_eq!(
            t.offer_many(7, None, keys.iter().copied(), |i, _| {
                made.push(i);
                u32::try_from(i).unwrap()
            }),
            batch_status(Completed, 3, 1)
        );
        // records made for the accepted keys only
        assert_eq!(made, vec![0, 2, 3]);
        assert_eq!(t.counters().overflow, 2);
        let four = batch(&t, &["f", "g", "h", "i"]);
        assert_eq!(
            t.offer_many(7, None, four.iter().copied(), |_, _| unreachable!(
                "the query is full"
            )),
            batch_status(Full, 0, 0)
        );
        assert_eq!(t.counters().overflow, 6);
        t.cancel(7, 1.0).unwrap();
        assert_eq!(
            t.offer_many(7, None, four.iter().copied(), |_, _| unreachable!(
                "the query ended"
            )),
            batch_status(Late, 0, 0)
        );
        assert_eq!(t.counters().late, 4);
        assert_eq!(t.counters().cancelled, 1);
        assert_eq!(t.latency().samples, 0);
    }

    #[test]
    fn offer_many_makes_records_for_accepted_keys_only() {
        let mut t = T::new(5.0);
        t.register(8, 10.0, 10, 0, 2.0);
        let keys = batch(&t, &["a", "b", "a"]);
        let mut starts = Vec::new();
        // A repeat within the batch is a duplicate: no record for it.
        assert_eq!(
            t.offer_many(8, None, keys.iter().copied(), |i, start| {
                starts.push(start);
                u32::try_from(i).unwrap()
            }),
            batch_status(New, 2, 1)
        );
        assert_eq!(starts, vec![2.0, 2.0]);
        let keys = batch(&t, &["b", "c", "a"]);
        assert_eq!(
            t.offer_many(8, None, keys.iter().copied(), |i, _| 2 + u32::try_from(i)
                .unwrap()),
            batch_status(New, 1, 2)
        );
        assert_eq!(t.buffer(8).unwrap().drain(), vec![0, 1, 3]);
        let c = t.counters();
        assert_eq!((c.results, c.duplicates, c.overflow), (3, 3, 0));
        let ended = t.cancel(8, 1.0).unwrap();
        assert_eq!(ended.duplicates, 3);
    }

    #[test]
    fn prefetch_changes_and_counts_nothing() {
        let mut t = T::new(5.0);
        t.register(4, 10.0, 10, 0, 0.0);
        assert!(t.prefetch(4, 3).is_some());
        let keys = batch(&t, &["a", "b"]);
        let made = |i, _| u32::try_from(i).unwrap();
        assert_eq!(
            t.offer_many(4, None, keys.iter().copied(), made),
            batch_status(New, 2, 0)
        );
        let before = t.counters();
        assert!(t.prefetch(4, 3).is_some());
        assert!(t.prefetch(4, 0).is_some());
        assert!(t.prefetch(5, 3).is_none());
        assert_eq!(t.counters(), before);
        assert_eq!(
            t.offer_many(4, None, keys.iter().copied(), made),
            batch_status(New, 0, 2)
        );
        t.cancel(4, 1.0).unwrap();
        let before = t.counters();
        assert!(t.prefetch(4, 3).is_none());
        assert_eq!(t.counters(), before);
        assert_eq!(t.state(4), QueryState::Tombstone);
    }

    #[test]
    fn locate_and_prefetch_at_find_live_queries_only_and_count_nothing() {
        let mut t = T::new(5.0);
        t.register(4, 10.0, 10, 0, 0.0);
        t.register(5, 10.0, 10, 0, 0.0);
        // Before and after the query has its extra part (seen keys).
        for round in 0..2 {
            let before = t.counters();
            let hint = t.locate(4);
            assert!(hint.is_some());
            assert!(t.locate(6).is_none());
            let again = t.prefetch_at(4, hint, 3);
            assert_eq!(again.map(|h| h.0), hint.map(|h| h.0));
            // A hint names a slot, not an id: 5's lookup does not trust it.
            assert_eq!(
                t.prefetch_at(5, hint, 3).map(|h| h.0),
                t.locate(5).map(|h| h.0)
            );
            assert!(t.prefetch_at(6, hint, 3).is_none());
            assert_eq!(t.counters(), before);
            if round == 0 {
                let keys = batch(&t, &["a"]);
                let made = |i, _| u32::try_from(i).unwrap();
                assert_eq!(
                    t.offer_many(4, hint, keys.iter().copied(), made),
                    batch_status(New, 1, 0)
                );
            }
        }
        let hint = t.locate(4);
        t.cancel(4, 1.0).unwrap();
        let before = t.counters();
        assert!(t.locate(4).is_none());
        assert!(t.prefetch_at(4, hint, 3).is_none());
        assert_eq!(t.counters(), before);
    }

    #[test]
    fn offer_many_checks_its_slot_hint() {
        let mut t = T::new(5.0);
        t.register(4, 10.0, 10, 0, 0.0);
        let hint = t.prefetch(4, 1);
        assert!(hint.is_some());
        assert!(t.prefetch(5, 1).is_none());
        let keys = batch(&t, &["a"]);
        let made = |i, _| u32::try_from(i).unwrap();
        assert_eq!(
            t.offer_many(4, hint, keys.iter().copied(), made),
            batch_status(New, 1, 0)
        );
        // A hint for another id (the slot holds 4) is not trusted.
        t.register(5, 10.0, 10, 0, 0.0);
        assert_eq!(
            t.offer_many(5, hint, keys.iter().copied(), made),
            batch_status(New, 1, 0)
        );
        // The query ended since the hint: its slot holds a tombstone.
        t.cancel(4, 1.0).unwrap();
        assert_eq!(
            t.offer_many(4, hint, keys.iter().copied(), made),
            batch_status(Late, 0, 0)
        );
        // Its slot freed, then reused by another query (both slots are).
        t.cancel(5, 1.0).unwrap();
        assert_eq!(t.expire(7.0).len(), 0);
        assert_eq!(t.tombstones(), 0);
        t.register(6, 10.0, 10, 0, 7.0);
        t.register(7, 10.0, 10, 0, 7.0);
        assert_eq!(
            t.offer_many(4, hint, keys.iter().copied(), made),
            batch_status(Unknown, 0, 0)
        );
        for id in [6, 7] {
            assert_eq!(
                t.offer_many(id, hint, keys.iter().copied(), made),
                batch_status(New, 1, 0)
            );
        }
        let c = t.counters();
        assert_eq!((c.results, c.late, c.unknown), (4, 1, 1));
    }

    #[test]
    fn peers_complete_and_duplicates() {
        let mut t = T::new(5.0);
        t.register(3, 10.0, 5, 2, 0.0);
        assert_eq!(done(&mut t, 3, 1, true), New);
        assert_eq!(done(&mut t, 3, 1, false), Duplicate);
        assert_eq!(done(&mut t, 3, 2, false), Completed);
        assert_eq!(done(&mut t, 3, 3, true), Full);
        assert_eq!(offer(&mut t, 3, "a", 1), Full);
        let ended = t.finish(3, 2.0, None).unwrap().unwrap();
        assert_eq!(ended.reason, Reason::AllPeers);
        assert_eq!((ended.peers_ok, ended.peers_failed), (2, 1));
        assert_eq!(done(&mut t, 3, 4, true), Late);
        assert_eq!(done(&mut t, 4, 4, true), Unknown);
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
            PeerDone::Status(New)
        ));
        // Same object: decided under the lock.
        assert!(matches!(
            call(&mut t, &mut report(10), 0),
            PeerDone::Status(Duplicate)
        ));
        // Another object with the same hash: the caller must compare.
        let mut r = report(11);
        let PeerDone::Compare { candidates, upto } = call(&mut t, &mut r, 0) else {
            panic!("expected candidates");
        };
        assert_eq!((candidates, upto), (vec![10], 1));
        assert!(r.peer.is_some());
        // Not equal: go on from `upto`, and the peer is stored.
        assert!(matches!(call(&mut t, &mut r, upto), PeerDone::Status(New)));
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
            Progress {
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
        assert_eq!(t.latency().samples, 4);
        // Slots are reused.
        t.register(6, 1.0, 1, 0, 4.0);
        assert_eq!(t.slots.capacity(), 5);
        t.check_invariants();
    }

    #[test]
    fn state_counts_nothing() {
        let mut t = T::new(1.0);
        assert_eq!(t.state(1), QueryState::Unknown);
        t.register(1, 10.0, 1, 0, 0.0);
        assert_eq!(t.state(1), QueryState::Live);
        assert!(t.cancel(1, 0.5).is_some());
        assert_eq!(t.state(1), QueryState::Tombstone);
        t.check_invariants();
        // The tombstone ends at floor(0.5 s) + 1 s of grace.
        assert!(t.expire(1.499).is_empty());
        assert_eq!(t.state(1), QueryState::Tombstone);
        assert!(t.expire(1.5).is_empty());
        assert_eq!(t.state(1), QueryState::Unknown);
        assert_eq!(
            t.counters(),
            Counters {
                total: 1,
                cancelled: 1,
                ..Counters::default()
            }
        );
        t.check_invariants();
    }
}
