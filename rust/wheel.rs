//! Hierarchical timing wheel: an exact port of `_Wheel` in `_core_py.py`
//! (itself a port of tokio's runtime/time/wheel). Level L has 64 slots of
//! 64**L ticks; an entry sits at the level of the highest 6-bit group in which
//! its deadline differs from `elapsed`. Entries live in a slab and each slot
//! is an intrusive doubly-linked list of slab indices, so insert and remove
//! are O(1) and a slot keeps insertion order (as the Python dict does).

pub const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: u64 = 1 << SLOT_BITS;
const SLOT_MASK: u64 = SLOTS - 1;
const MAX_DURATION: u64 = (1 << (SLOT_BITS as u64 * LEVELS as u64)) - 1;

pub const NIL: u32 = u32::MAX;
const NOT_IN_WHEEL: u8 = u8::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    deadline: u64,
    prev: u32,
    // Also the free-list link while the entry is free.
    next: u32,
    payload: u32,
    level: u8,
    index: u8,
}

#[derive(Clone, Copy, Debug, Default)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY_LIST: List = List {
    head: NIL,
    tail: NIL,
};

/// Where the next occupied slot is: `(level, slot, tick)`.
pub type Expiration = (usize, u64, u64);

/// An entry taken by `poll`: its payload and (clamped) deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub payload: u32,
    pub deadline: u64,
}

pub struct Wheel {
    elapsed: u64,
    count: usize,
    occupied: [u64; LEVELS],
    slots: Box<[[List; SLOTS as usize]; LEVELS]>,
    entries: Vec<Entry>,
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
    ((63 - masked.leading_zeros()) / SLOT_BITS) as usize
}

impl Wheel {
    pub fn new() -> Self {
        Wheel {
            elapsed: 0,
            count: 0,
            occupied: [0; LEVELS],
            slots: Box::new([[EMPTY_LIST; SLOTS as usize]; LEVELS]),
            entries: Vec::new(),
            free: NIL,
        }
    }

    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Entries in the wheel.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// An empty wheel may jump to the present: nothing can be skipped.
    pub fn advance_if_empty(&mut self, now_tick: u64) {
        if self.count == 0 && now_tick > self.elapsed {
            self.elapsed = now_tick;
        }
    }

    /// The deadline an entry had when it was inserted (clamped to after
    /// `elapsed`, as in the Python twin).
    pub fn deadline(&self, key: u32) -> u64 {
        self.entries[key as usize].deadline
    }

    /// Insert an entry; returns its key (for `remove`) and its deadline,
    /// which is moved to `elapsed + 1` if it was not after `elapsed`.
    pub fn insert(&mut self, deadline: u64, payload: u32) -> (u32, u64) {
        let when = if deadline <= self.elapsed {
            self.elapsed + 1
        } else {
            deadline
        };
        let entry = Entry {
            deadline: when,
            prev: NIL,
            next: NIL,
            payload,
            level: NOT_IN_WHEEL,
            index: 0,
        };
        let key = if self.free != NIL {
            let key = self.free;
            self.free = self.entries[key as usize].next;
            self.entries[key as usize] = entry;
            key
        } else {
            let key = u32::try_from(self.entries.len()).expect("wheel slab overflow");
            assert!(key != NIL, "wheel slab overflow");
            self.entries.push(entry);
            key
        };
        self.place(key, level_for(self.elapsed, when));
        self.count += 1;
        (key, when)
    }

    fn place(&mut self, key: u32, level: usize) {
        let deadline = self.entries[key as usize].deadline;
        let index = (deadline >> (level as u32 * SLOT_BITS)) & SLOT_MASK;
        let list = &mut self.slots[level][index as usize];
        let tail = list.tail;
        if tail == NIL {
            list.head = key;
        } else {
            self.entries[tail as usize].next = key;
        }
        list.tail = key;
        let entry = &mut self.entries[key as usize];
        entry.prev = tail;
        entry.next = NIL;
        entry.level = level as u8;
        entry.index = index as u8;
        self.occupied[level] |= 1 << index;
    }

    fn release(&mut self, key: u32) {
        let entry = &mut self.entries[key as usize];
        entry.level = NOT_IN_WHEEL;
        entry.next = self.free;
        self.free = key;
    }

    /// Remove an entry that is in the wheel, in O(1).
    pub fn remove(&mut self, key: u32) {
        let Entry {
            prev,
            next,
            level,
            index,
            ..
        } = self.entries[key as usize];
        if level == NOT_IN_WHEEL {
            return;
        }
        let list = &mut self.slots[level as usize][index as usize];
        if prev == NIL {
            list.head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if list.head == NIL {
            self.occupied[level as usize] &= !(1 << index);
        }
        self.count -= 1;
        self.release(key);
    }

    /// The next occupied slot, lowest level first.
    pub fn next_expiration(&self) -> Option<Expiration> {
        let elapsed = self.elapsed;
        for (level, &occupied) in self.occupied.iter().enumerate() {
            if occupied == 0 {
                continue;
            }
            let shift = level as u32 * SLOT_BITS;
            let slot_range = 1u64 << shift;
            let level_range = slot_range << SLOT_BITS;
            let now_slot = (elapsed >> shift) & SLOT_MASK;
            let zeros = occupied.rotate_right(now_slot as u32).trailing_zeros() as u64;
            let slot = (zeros + now_slot) & SLOT_MASK;
            let level_start = elapsed & !(level_range - 1);
            let mut deadline = level_start + slot * slot_range;
            if deadline <= elapsed {
                deadline += level_range;
            }
            return Some((level, slot, deadline));
        }
        None
    }

    /// Take every entry whose deadline is <= `now_tick` into `due` (their
    /// keys are freed), cascading the others down.
    pub fn poll(&mut self, now_tick: u64, due: &mut Vec<Due>) {
        while let Some((level, index, tick)) = self.next_expiration() {
            if tick > now_tick {
                break;
            }
            let list = std::mem::replace(&mut self.slots[level][index as usize], EMPTY_LIST);
            self.occupied[level] &= !(1 << index);
            self.elapsed = tick;
            let mut key = list.head;
            while key != NIL {
                let entry = self.entries[key as usize];
                if entry.deadline <= tick {
                    self.count -= 1;
                    due.push(Due {
                        payload: entry.payload,
                        deadline: entry.deadline,
                    });
                    self.release(key);
                } else {
                    self.place(key, level_for(tick, entry.deadline));
                }
                key = entry.next;
            }
        }
        if now_tick > self.elapsed {
            self.elapsed = now_tick;
        }
    }

    /// Bytes of one wheel entry (for sizing).
    pub fn entry_size() -> usize {
        std::mem::size_of::<Entry>()
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
        for level in 0..LEVELS as u32 {
            for deadline in [
                1u64 << (6 * level),
                (1u64 << (6 * level)) + 1,
                (1u64 << (6 * (level + 1))) - 1,
            ] {
                let mut wheel = Wheel::new();
                let (key, when) = wheel.insert(deadline, 7);
                assert_eq!(when, deadline);
                let _ = key;
                let next = wheel.next_expiration().unwrap();
                assert_eq!(next.0, level_for(0, deadline));
                assert!(next.2 <= deadline);
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
        assert_eq!(wheel.next_expiration().unwrap().0, 5);
        // Step through the levels: each poll moves the entry one level down.
        let mut levels = Vec::new();
        while let Some((level, _, tick)) = wheel.next_expiration() {
            levels.push(level);
            if tick >= deadline {
                break;
            }
            assert!(poll_all(&mut wheel, tick).is_empty());
        }
        assert_eq!(levels, vec![5, 4, 3, 2, 1, 0]);
        assert_eq!(poll_all(&mut wheel, deadline).len(), 1);
    }

    #[test]
    fn insert_at_or_before_elapsed_is_clamped() {
        let mut wheel = Wheel::new();
        wheel.advance_if_empty(1000);
        let (_, when) = wheel.insert(10, 0);
        assert_eq!(when, 1001);
        let (_, when) = wheel.insert(1000, 1);
        assert_eq!(when, 1001);
        assert_eq!(wheel.next_expiration().unwrap().2, 1001);
        // Not empty any more: no jump.
        wheel.advance_if_empty(5000);
        assert_eq!(wheel.elapsed(), 1000);
    }

    #[test]
    fn remove_is_o1_and_clears_the_slot_bit() {
        let mut wheel = Wheel::new();
        let (a, _) = wheel.insert(5, 0);
        let (b, _) = wheel.insert(5, 1);
        let (c, _) = wheel.insert(5, 2);
        assert_eq!(wheel.occupied[0], 1 << 5);
        wheel.remove(b);
        assert_eq!(wheel.occupied[0], 1 << 5);
        wheel.remove(a);
        assert_eq!(wheel.occupied[0], 1 << 5);
        wheel.remove(c);
        assert_eq!(wheel.occupied[0], 0);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiration(), None);
        // Removing twice is harmless and the keys are reused.
        wheel.remove(c);
        assert!(wheel.is_empty());
        let (d, _) = wheel.insert(9, 3);
        assert!([a, b, c].contains(&d));
        assert_eq!(wheel.entries.len(), 3);
    }

    #[test]
    fn slot_keeps_insertion_order() {
        let mut wheel = Wheel::new();
        let keys: Vec<u32> = (0..5).map(|p| wheel.insert(40, p).0).collect();
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
                        let (key, when) = wheel.insert(deadline, payload);
                        assert_eq!(when, deadline.max(wheel.elapsed() + 1));
                        live.push((key, payload, when));
                        payload += 1;
                    }
                    5 => {
                        if !live.is_empty() {
                            let i = rng.below(live.len() as u64) as usize;
                            let (key, _, _) = live.swap_remove(i);
                            wheel.remove(key);
                        }
                    }
                    _ => {
                        let earliest = live.iter().map(|e| e.2).min();
                        match (wheel.next_expiration(), earliest) {
                            (None, None) => {}
                            (Some((_, _, tick)), Some(first)) => assert!(tick <= first),
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
                    }
                }
            }
        }
    }
}
