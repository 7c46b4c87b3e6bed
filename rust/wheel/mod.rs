//! Hierarchical timing wheel: an exact port of `_Wheel` in `_core_py.py`
//! (itself a port of tokio's `runtime/time/wheel`). Level L has 64 slots of
//! 64**L ticks; an entry sits at the level of the highest 6-bit group in which
//! its deadline differs from `elapsed`, so every entry of a lower level is due
//! before any of a higher one. Entries live in a slab (with its own free list,
//! threaded through the entries' `next` links) and each slot is an intrusive
//! doubly-linked list of slab indices, so insert and remove are O(1) and a
//! slot keeps insertion order (as the Python dict does).

mod level;

use level::{Entry, Level, List, NOT_IN_WHEEL, SLOT_BITS, SLOT_MASK};
pub use level::{Expiration, NIL};

pub const LEVELS: usize = 6;
const MAX_DURATION: u64 = (1 << (SLOT_BITS as u64 * LEVELS as u64)) - 1;

/// An entry `insert` placed: its key (for `remove`) and its deadline, moved
/// to `elapsed + 1` if it was not after `elapsed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    pub key: u32,
    pub deadline: u64,
}

/// An entry taken by `poll`: its payload and (clamped) deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub payload: u32,
    pub deadline: u64,
}

pub struct Wheel {
    elapsed: u64,
    /// Entries in the wheel (in some slot).
    count: usize,
    levels: Box<[Level; LEVELS]>,
    entries: Vec<Entry>,
    /// Head of the free list of entries, or `NIL`.
    free: u32,
}

impl Default for Wheel {
    fn default() -> Self {
        Self::new()
    }
}

fn level_for(elapsed: u64, when: u64) -> usize {
    let mut masked = (elapsed ^ when) | SLOT_MASK;
    if masked >= MAX_DURATION {
        masked = MAX_DURATION - 1;
    }
    (masked.ilog2() / SLOT_BITS) as usize
}

impl Wheel {
    #[must_use]
    pub fn new() -> Self {
        Wheel {
            elapsed: 0,
            count: 0,
            levels: Box::new(std::array::from_fn(Level::new)),
            entries: Vec::new(),
            free: NIL,
        }
    }

    #[must_use]
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Entries in the wheel.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// An empty wheel may jump to the present: nothing can be skipped.
    pub fn advance_if_empty(&mut self, now_tick: u64) {
        if self.count == 0 && now_tick > self.elapsed {
            debug_assert!(self.levels.iter().all(|level| level.occupied() == 0));
            self.elapsed = now_tick;
        }
    }

    /// Insert an entry carrying `payload`, due at `deadline` (or at
    /// `elapsed + 1` if that is later, as in the Python twin).
    ///
    /// # Panics
    /// If the wheel would hold `u32::MAX` entries.
    pub fn insert(&mut self, deadline: u64, payload: u32) -> Timer {
        let when = deadline.max(self.elapsed + 1);
        let entry = Entry {
            deadline: when,
            prev: NIL,
            next: NIL,
            payload,
            level: NOT_IN_WHEEL,
            slot: 0,
        };
        let key = if self.free == NIL {
            let key = u32::try_from(self.entries.len()).expect("wheel slab overflow");
            assert!(key != NIL, "wheel slab overflow");
            self.entries.push(entry);
            key
        } else {
            let key = self.free;
            let old = std::mem::replace(&mut self.entries[key as usize], entry);
            debug_assert_eq!(
                old.level, NOT_IN_WHEEL,
                "the free list holds a placed entry"
            );
            self.free = old.next;
            key
        };
        self.levels[level_for(self.elapsed, when)].push(&mut self.entries, key);
        self.count += 1;
        Timer {
            key,
            deadline: when,
        }
    }

    fn release(&mut self, key: u32) {
        let entry = &mut self.entries[key as usize];
        entry.level = NOT_IN_WHEEL;
        entry.next = self.free;
        self.free = key;
    }

    /// Remove an entry that is in the wheel, in O(1); a key that is not
    /// (any more) in the wheel is ignored.
    pub fn remove(&mut self, key: u32) {
        let level = self.entries[key as usize].level;
        if level == NOT_IN_WHEEL {
            return;
        }
        self.levels[usize::from(level)].unlink(&mut self.entries, key);
        debug_assert!(self.count > 0, "wheel count underflow");
        self.count -= 1;
        self.release(key);
    }

    /// The next occupied slot, lowest level first.
    #[must_use]
    pub fn next_expiration(&self) -> Option<Expiration> {
        let next = self
            .levels
            .iter()
            .find_map(|level| level.next_expiration(self.elapsed));
        debug_assert_eq!(
            next.is_none(),
            self.count == 0,
            "count disagrees with bitmaps"
        );
        next
    }

    /// Take every entry whose deadline is <= `now_tick` into `due` (their
    /// keys are freed), cascading the others down.
    pub fn poll(&mut self, now_tick: u64, due: &mut Vec<Due>) {
        while let Some(Expiration {
            level,
            slot,
            deadline: tick,
        }) = self.next_expiration()
        {
            if tick > now_tick {
                break;
            }
            let list: List = self.levels[level].take_slot(slot);
            debug_assert!(!list.is_empty(), "an occupied slot was empty");
            self.elapsed = tick;
            let mut key = list.head;
            while key != NIL {
                let entry = self.entries[key as usize];
                debug_assert_eq!(
                    (usize::from(entry.level), usize::from(entry.slot)),
                    (level, slot),
                    "entry {key} records another slot"
                );
                self.entries[key as usize].level = NOT_IN_WHEEL;
                if entry.deadline <= tick {
                    self.count -= 1;
                    due.push(Due {
                        payload: entry.payload,
                        deadline: entry.deadline,
                    });
                    self.release(key);
                } else {
                    let lower = level_for(tick, entry.deadline);
                    debug_assert!(lower < level, "an entry cascaded up");
                    self.levels[lower].push(&mut self.entries, key);
                }
                key = entry.next;
            }
        }
        if now_tick > self.elapsed {
            self.elapsed = now_tick;
        }
    }

    /// Bytes of one wheel entry (for sizing).
    #[must_use]
    pub fn entry_size() -> usize {
        std::mem::size_of::<Entry>()
    }

    /// Walk every level and the free list (O(n), for tests): the bitmaps
    /// agree with the slots, each entry records its level and slot, `count`
    /// is the number of entries placed and every other entry is free.
    ///
    /// # Panics
    /// If any of that does not hold.
    pub fn check_invariants(&self) {
        let placed: usize = self
            .levels
            .iter()
            .map(|level| level.check(&self.entries))
            .sum();
        assert_eq!(placed, self.count, "count");
        let mut free = 0;
        let mut key = self.free;
        while key != NIL {
            let entry = self.entries[key as usize];
            assert_eq!(entry.level, NOT_IN_WHEEL, "free entry {key} is placed");
            free += 1;
            assert!(free <= self.entries.len(), "free list loops");
            key = entry.next;
        }
        assert_eq!(
            placed + free,
            self.entries.len(),
            "entries neither placed nor free"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so tests need no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn poll_all(wheel: &mut Wheel, now: u64) -> Vec<Due> {
        let mut due = Vec::new();
        wheel.poll(now, &mut due);
        due
    }

    #[test]
    fn level_for_matches_groups() {
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(0, 4095), 1);
        assert_eq!(level_for(0, 4096), 2);
        assert_eq!(level_for(0, 1 << 30), 5);
        assert_eq!(level_for(0, MAX_DURATION), 5);
        assert_eq!(level_for(0, u64::MAX >> 1), 5);
    }

    #[test]
    fn deadlines_on_every_level_fire_exactly_on_time() {
        for level in 0..6u32 {
            for deadline in [
                1u64 << (6 * level),
                (1u64 << (6 * level)) + 1,
                (1u64 << (6 * (level + 1))) - 1,
            ] {
                let mut wheel = Wheel::new();
                let timer = wheel.insert(deadline, 7);
                assert_eq!(timer.deadline, deadline);
                let next = wheel.next_expiration().unwrap();
                assert_eq!(next.level, level_for(0, deadline));
                assert!(next.deadline <= deadline);
                wheel.check_invariants();
                assert!(poll_all(&mut wheel, deadline - 1).is_empty());
                assert_eq!(wheel.len(), 1);
                assert_eq!(
                    poll_all(&mut wheel, deadline),
                    vec![Due {
                        payload: 7,
                        deadline
                    }]
                );
                assert!(wheel.is_empty());
                assert_eq!(wheel.next_expiration(), None);
                assert_eq!(wheel.elapsed(), deadline);
            }
        }
    }

    #[test]
    fn cascades_from_the_top_level_down() {
        let mut wheel = Wheel::new();
        let deadline = (5u64 << 30) + (3 << 24) + (2 << 18) + (9 << 12) + (4 << 6) + 1;
        wheel.insert(deadline, 1);
        assert_eq!(wheel.next_expiration().unwrap().level, 5);
        // Step through the levels: each poll moves the entry one level down.
        let mut levels = Vec::new();
        while let Some(next) = wheel.next_expiration() {
            levels.push(next.level);
            if next.deadline >= deadline {
                break;
            }
            assert!(poll_all(&mut wheel, next.deadline).is_empty());
            wheel.check_invariants();
        }
        assert_eq!(levels, vec![5, 4, 3, 2, 1, 0]);
        assert_eq!(poll_all(&mut wheel, deadline).len(), 1);
    }

    #[test]
    fn insert_at_or_before_elapsed_is_clamped() {
        let mut wheel = Wheel::new();
        wheel.advance_if_empty(1000);
        assert_eq!(wheel.insert(10, 0).deadline, 1001);
        assert_eq!(wheel.insert(1000, 1).deadline, 1001);
        assert_eq!(wheel.next_expiration().unwrap().deadline, 1001);
        // Not empty any more: no jump.
        wheel.advance_if_empty(5000);
        assert_eq!(wheel.elapsed(), 1000);
    }

    #[test]
    fn remove_is_o1_and_clears_the_slot_bit() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(5, 0).key;
        let b = wheel.insert(5, 1).key;
        let c = wheel.insert(5, 2).key;
        assert_eq!(wheel.levels[0].occupied(), 1 << 5);
        wheel.remove(b);
        assert_eq!(wheel.levels[0].occupied(), 1 << 5);
        wheel.check_invariants();
        wheel.remove(a);
        assert_eq!(wheel.levels[0].occupied(), 1 << 5);
        wheel.remove(c);
        assert_eq!(wheel.levels[0].occupied(), 0);
        wheel.check_invariants();
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiration(), None);
        // Removing twice is harmless and the keys are reused.
        wheel.remove(c);
        assert!(wheel.is_empty());
        let d = wheel.insert(9, 3).key;
        assert!([a, b, c].contains(&d));
        assert_eq!(wheel.entries.len(), 3);
    }

    #[test]
    fn slot_keeps_insertion_order() {
        let mut wheel = Wheel::new();
        let keys: Vec<u32> = (0..5).map(|p| wheel.insert(40, p).key).collect();
        wheel.remove(keys[2]);
        let due = poll_all(&mut wheel, 40);
        let payloads: Vec<u32> = due.iter().map(|d| d.payload).collect();
        assert_eq!(payloads, vec![0, 1, 3, 4]);
    }

    /// Against a brute-force list: nothing fires early or late, and
    /// `next_expiration` is never after the earliest deadline.
    #[test]
    fn randomized_never_early_never_late() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..40 {
            let mut wheel = Wheel::new();
            let mut live: Vec<(u32, u32, u64)> = Vec::new(); // key, payload, deadline
            let mut now = rng.below(1 << 20);
            wheel.advance_if_empty(now);
            let mut payload = 0u32;
            for _ in 0..2000 {
                match rng.below(10) {
                    0..=4 => {
                        let span = match rng.below(4) {
                            0 => 64,
                            1 => 1 << 12,
                            2 => 1 << 24,
                            _ => 1 << 35,
                        };
                        let deadline = now + rng.below(span);
                        let timer = wheel.insert(deadline, payload);
                        assert_eq!(timer.deadline, deadline.max(wheel.elapsed() + 1));
                        live.push((timer.key, payload, timer.deadline));
                        payload += 1;
                    }
                    5 => {
                        if !live.is_empty() {
                            let i = usize::try_from(rng.below(live.len() as u64)).unwrap();
                            let (key, _, _) = live.swap_remove(i);
                            wheel.remove(key);
                        }
                    }
                    _ => {
                        let earliest = live.iter().map(|e| e.2).min();
                        match (wheel.next_expiration(), earliest) {
                            (None, None) => {}
                            (Some(next), Some(first)) => assert!(next.deadline <= first),
                            other => panic!("round {round}: {other:?}"),
                        }
                        let step = if rng.below(3) == 0 {
                            earliest.map_or(1, |e| e.saturating_sub(now))
                        } else {
                            {
                                let bits = rng.below(30) + 1;
                                rng.below(1 << bits)
                            }
                        };
                        now += step;
                        let mut due: Vec<u32> = poll_all(&mut wheel, now)
                            .iter()
                            .map(|d| d.payload)
                            .collect();
                        let mut want: Vec<u32> =
                            live.iter().filter(|e| e.2 <= now).map(|e| e.1).collect();
                        live.retain(|e| e.2 > now);
                        due.sort_unstable();
                        want.sort_unstable();
                        assert_eq!(due, want, "round {round} now {now}");
                        assert_eq!(wheel.len(), live.len());
                        wheel.check_invariants();
                    }
                }
            }
        }
    }
}
