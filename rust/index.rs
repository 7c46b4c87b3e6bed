//! The id index: query id -> slab key. It stores only the 4-byte keys; an
//! id is read back from the slab entry a key names (`id_of`), which the
//! table reads next anyway.

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// A query id as two halves: keeps a slab entry 8-byte aligned (a `u128`
/// field would align, and pad, it to 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedId([u64; 2]);

impl PackedId {
    #[must_use]
    pub fn new(id: u128) -> Self {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the low half is meant to be truncated"
        )]
        PackedId([(id >> 64) as u64, id as u64])
    }

    #[must_use]
    pub fn get(self) -> u128 {
        let [high, low] = self.0;
        (u128::from(high) << 64) | u128::from(low)
    }
}

#[derive(Default)]
pub struct IdIndex {
    keys: HashTable<u32>,
    hasher: RandomState,
}

impl IdIndex {
    fn hash(&self, id: u128) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Ids indexed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key of `id`; `id_of(key)` is the id stored at a key.
    pub fn find(&self, id: u128, id_of: impl Fn(u32) -> u128) -> Option<u32> {
        self.keys
            .find(self.hash(id), |&key| id_of(key) == id)
            .copied()
    }

    /// Index `id` at `key`; `id` must not be indexed yet, and `id_of` must
    /// already answer `id` for `key` (it rehashes entries when growing).
    pub fn insert(&mut self, id: u128, key: u32, id_of: impl Fn(u32) -> u128) {
        debug_assert!(self.find(id, &id_of).is_none(), "id indexed twice");
        debug_assert_eq!(id_of(key), id, "the slab does not hold the id at its key");
        let hasher = &self.hasher;
        self.keys
            .insert_unique(hasher.hash_one(id), key, |&k| hasher.hash_one(id_of(k)));
    }

    /// Forget `id`, which is indexed at `key`.
    pub fn remove(&mut self, id: u128, key: u32) {
        let found = self.keys.find_entry(self.hash(id), |&k| k == key);
        debug_assert!(found.is_ok(), "id at key {key} was not indexed");
        if let Ok(entry) = found {
            entry.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_ids_round_trip() {
        for id in [0, 1, u128::MAX, 1 << 64, (1 << 64) - 1, 0x1234 << 70] {
            assert_eq!(PackedId::new(id).get(), id);
        }
        assert_eq!(std::mem::align_of::<PackedId>(), 8);
    }

    #[test]
    fn finds_inserts_and_removes() {
        let ids: Vec<u128> = (0..1000u128)
            .map(|n| (n * 0x9e37_79b9_7f4a_7c15) << 3)
            .collect();
        let id_of = |key: u32| ids[key as usize];
        let mut index = IdIndex::default();
        for key in 0..1000u32 {
            index.insert(ids[key as usize], key, id_of);
        }
        assert_eq!(index.len(), 1000);
        assert_eq!(index.find(ids[17], id_of), Some(17));
        index.remove(ids[17], 17);
        assert_eq!(index.find(ids[17], id_of), None);
        assert_eq!(index.find(ids[18], id_of), Some(18));
        assert_eq!(index.find(12345, id_of), None);
        assert_eq!(index.len(), 999);
    }
}
