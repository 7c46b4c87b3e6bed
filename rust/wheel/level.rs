//! One level of the timing wheel, as tokio's `runtime/time/wheel/level.rs`:
//! 64 slots of 64**level ticks each and a bitmap of the occupied ones. A
//! slot is an intrusive doubly-linked list threaded through the wheel's
//! entries (by index), so it keeps insertion order and unlinks in O(1).

pub const SLOT_BITS: u32 = 6;
pub const SLOTS: usize = 1 << SLOT_BITS;
pub const SLOT_MASK: u64 = (SLOTS as u64) - 1;

/// "No entry": the end of a list (and of the free list).
pub const NIL: u32 = u32::MAX;
/// An entry's `level` while it is not in the wheel.
pub const NOT_IN_WHEEL: u8 = u8::MAX;

/// An entry of the wheel's slab.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub deadline: u64,
    pub prev: u32,
    /// Also the free-list link while the entry is free.
    pub next: u32,
    pub payload: u32,
    /// Where the entry sits: `NOT_IN_WHEEL` while it is not in the wheel.
    pub level: u8,
    pub slot: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct List {
    pub head: u32,
    pub tail: u32,
}

impl List {
    pub const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };

    #[must_use]
    pub fn is_empty(self) -> bool {
        self.head == NIL
    }
}

/// The next occupied slot of the wheel, and the tick it starts at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiration {
    pub level: usize,
    pub slot: usize,
    pub deadline: u64,
}

pub struct Level {
    /// Its place in the wheel: 0 is the finest.
    index: usize,
    /// Bit `s` is set if and only if slot `s` is not empty.
    occupied: u64,
    slots: [List; SLOTS],
}

impl Level {
    #[must_use]
    pub fn new(level: usize) -> Self {
        Level {
            index: level,
            occupied: 0,
            slots: [List::EMPTY; SLOTS],
        }
    }

    fn shift(&self) -> u32 {
        // At most 5 * 6: the wheel has 6 levels.
        #[allow(clippy::cast_possible_truncation, reason = "level < LEVELS")]
        let level = self.index as u32;
        level * SLOT_BITS
    }

    #[must_use]
    pub fn occupied(&self) -> u64 {
        self.occupied
    }

    /// The slot of this level a deadline falls in.
    #[must_use]
    pub fn slot_for(&self, deadline: u64) -> usize {
        #[allow(clippy::cast_possible_truncation, reason = "masked to 6 bits")]
        let slot = ((deadline >> self.shift()) & SLOT_MASK) as usize;
        slot
    }

    /// This level's first occupied slot at or after `elapsed`'s (wrapping
    /// round), and the tick that slot starts at (after `elapsed`).
    #[must_use]
    pub fn next_expiration(&self, elapsed: u64) -> Option<Expiration> {
        if self.occupied == 0 {
            return None;
        }
        let shift = self.shift();
        let slot_range = 1u64 << shift;
        let level_range = slot_range << SLOT_BITS;
        let now_slot = self.slot_for(elapsed);
        #[allow(clippy::cast_possible_truncation, reason = "now_slot < 64")]
        let rotated = self.occupied.rotate_right(now_slot as u32);
        let slot = (rotated.trailing_zeros() as usize + now_slot) & (SLOTS - 1);
        let level_start = elapsed & !(level_range - 1);
        let mut deadline = level_start + slot as u64 * slot_range;
        if deadline <= elapsed {
            deadline += level_range;
        }
        Some(Expiration {
            level: self.index,
            slot,
            deadline,
        })
    }

    /// Append entry `key` (not in the wheel) to the slot of its deadline.
    pub fn push(&mut self, entries: &mut [Entry], key: u32) {
        debug_assert_eq!(
            entries[key as usize].level, NOT_IN_WHEEL,
            "entry placed twice"
        );
        let slot = self.slot_for(entries[key as usize].deadline);
        let list = &mut self.slots[slot];
        let tail = list.tail;
        if tail == NIL {
            debug_assert_eq!(self.occupied & (1 << slot), 0, "empty slot marked occupied");
            list.head = key;
        } else {
            debug_assert_ne!(self.occupied & (1 << slot), 0, "occupied slot not marked");
            entries[tail as usize].next = key;
        }
        list.tail = key;
        let entry = &mut entries[key as usize];
        entry.prev = tail;
        entry.next = NIL;
        #[allow(clippy::cast_possible_truncation, reason = "level < 6, slot < 64")]
        {
            entry.level = self.index as u8;
            entry.slot = slot as u8;
        }
        self.occupied |= 1 << slot;
    }

    /// Unlink entry `key`, which is in one of this level's slots.
    pub fn unlink(&mut self, entries: &mut [Entry], key: u32) {
        let Entry {
            prev, next, slot, ..
        } = entries[key as usize];
        debug_assert_eq!(
            usize::from(entries[key as usize].level),
            self.index,
            "entry on another level"
        );
        let slot = usize::from(slot);
        debug_assert_ne!(
            self.occupied & (1 << slot),
            0,
            "unlinking from an empty slot"
        );
        let list = &mut self.slots[slot];
        if prev == NIL {
            debug_assert_eq!(list.head, key, "a first entry that is not its slot's head");
            list.head = next;
        } else {
            entries[prev as usize].next = next;
        }
        if next == NIL {
            debug_assert_eq!(list.tail, key, "a last entry that is not its slot's tail");
            list.tail = prev;
        } else {
            entries[next as usize].prev = prev;
        }
        if list.is_empty() {
            debug_assert_eq!(list.tail, NIL);
            self.occupied &= !(1 << slot);
        }
        entries[key as usize].level = NOT_IN_WHEEL;
    }

    /// Empty a slot, returning its list (whose entries still record it).
    pub fn take_slot(&mut self, slot: usize) -> List {
        let list = std::mem::replace(&mut self.slots[slot], List::EMPTY);
        debug_assert_eq!(
            list.is_empty(),
            self.occupied & (1 << slot) == 0,
            "occupied bit disagrees with slot {slot}"
        );
        self.occupied &= !(1 << slot);
        list
    }

    /// Walk every slot (O(n), for tests): each bit agrees with its slot's
    /// contents, the links are consistent and each entry records where it
    /// is. Returns the number of entries.
    ///
    /// # Panics
    /// If any of that does not hold.
    pub fn check(&self, entries: &[Entry]) -> usize {
        let mut count = 0;
        for (slot, list) in self.slots.iter().enumerate() {
            assert_eq!(
                self.occupied & (1 << slot) != 0,
                !list.is_empty(),
                "level {} slot {slot}: bit and contents disagree",
                self.index
            );
            let mut prev = NIL;
            let mut key = list.head;
            while key != NIL {
                let entry = entries[key as usize];
                assert_eq!(usize::from(entry.level), self.index, "entry {key}: level");
                assert_eq!(usize::from(entry.slot), slot, "entry {key}: slot");
                assert_eq!(self.slot_for(entry.deadline), slot, "entry {key}: deadline");
                assert_eq!(entry.prev, prev, "entry {key}: back link");
                prev = key;
                key = entry.next;
                count += 1;
            }
            assert_eq!(list.tail, prev, "level {} slot {slot}: tail", self.index);
        }
        count
    }
}
