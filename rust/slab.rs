//! A slab: values in one `Vec`, each at a stable `u32` key, with the vacant
//! entries threaded into a free list so a key is reused before the vector
//! grows. The table keeps its queries and tombstones in one.

/// "No entry": the end of the free list (and never a key).
pub const NIL: u32 = u32::MAX;

enum Entry<T> {
    Vacant { next: u32 },
    Occupied(T),
}

pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// Head of the free list of vacant entries, or `NIL`.
    free: u32,
    /// Occupied entries.
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Slab<T> {
    #[must_use]
    pub fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: NIL,
            len: 0,
        }
    }

    /// Occupied entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries ever allocated, occupied or vacant.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Store `value`; returns its key, a reused one if any is vacant.
    ///
    /// # Panics
    /// If the slab would hold `u32::MAX` entries.
    pub fn insert(&mut self, value: T) -> u32 {
        let key = if self.free == NIL {
            let key = u32::try_from(self.entries.len()).expect("slab overflow");
            assert!(key != NIL, "slab overflow");
            self.entries.push(Entry::Occupied(value));
            key
        } else {
            let key = self.free;
            let old = std::mem::replace(&mut self.entries[key as usize], Entry::Occupied(value));
            let Entry::Vacant { next } = old else {
                unreachable!("the free list holds an occupied entry {key}");
            };
            debug_assert!(
                next == NIL || (next as usize) < self.entries.len(),
                "free list link {next} out of range"
            );
            self.free = next;
            key
        };
        self.len += 1;
        debug_assert!(self.len <= self.entries.len());
        key
    }

    /// Take the value out of `key`, which becomes vacant (the next key
    /// `insert` returns).
    ///
    /// # Panics
    /// If `key` is vacant.
    pub fn remove(&mut self, key: u32) -> T {
        let entry = &mut self.entries[key as usize];
        assert!(
            matches!(entry, Entry::Occupied(_)),
            "slab entry {key} is vacant"
        );
        let Entry::Occupied(value) = std::mem::replace(entry, Entry::Vacant { next: self.free })
        else {
            unreachable!("checked just above");
        };
        self.free = key;
        debug_assert!(self.len > 0, "slab count underflow");
        self.len -= 1;
        value
    }

    /// The value at `key`, or None if `key` is vacant or out of range.
    #[must_use]
    pub fn try_get(&self, key: u32) -> Option<&T> {
        match self.entries.get(key as usize) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    /// # Panics
    /// If `key` is vacant.
    #[must_use]
    pub fn get(&self, key: u32) -> &T {
        match &self.entries[key as usize] {
            Entry::Occupied(value) => value,
            Entry::Vacant { .. } => panic!("slab entry {key} is vacant"),
        }
    }

    /// # Panics
    /// If `key` is vacant.
    pub fn get_mut(&mut self, key: u32) -> &mut T {
        match &mut self.entries[key as usize] {
            Entry::Occupied(value) => value,
            Entry::Vacant { .. } => panic!("slab entry {key} is vacant"),
        }
    }

    /// Bytes of one entry (for sizing).
    #[must_use]
    pub fn entry_size() -> usize {
        std::mem::size_of::<Entry<T>>()
    }

    /// Walk the whole free list (O(n), for tests and debug checks): it
    /// visits every vacant entry exactly once and no occupied one, and the
    /// count of occupied entries is `len`.
    ///
    /// # Panics
    /// If any of that does not hold.
    pub fn check_free_list(&self) {
        let mut seen = vec![false; self.entries.len()];
        let mut key = self.free;
        let mut vacant = 0;
        while key != NIL {
            let index = key as usize;
            assert!(
                index < self.entries.len(),
                "free list link {key} out of range"
            );
            assert!(!seen[index], "free list loops at {key}");
            seen[index] = true;
            vacant += 1;
            match &self.entries[index] {
                Entry::Vacant { next } => key = *next,
                Entry::Occupied(_) => panic!("free list holds occupied entry {key}"),
            }
        }
        let occupied = self
            .entries
            .iter()
            .filter(|entry| matches!(entry, Entry::Occupied(_)))
            .count();
        assert_eq!(occupied, self.len, "occupied count");
        assert_eq!(
            occupied + vacant,
            self.entries.len(),
            "vacant entries off the list"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_reused_last_freed_first() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        let b = slab.insert("b");
        let c = slab.insert("c");
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(slab.remove(b), "b");
        assert_eq!(slab.remove(a), "a");
        slab.check_free_list();
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.insert("d"), a);
        assert_eq!(slab.insert("e"), b);
        assert_eq!(slab.insert("f"), 3);
        assert_eq!(slab.capacity(), 4);
        assert_eq!(*slab.get(b), "e");
        *slab.get_mut(c) = "g";
        assert_eq!(*slab.get(c), "g");
        slab.check_free_list();
    }

    #[test]
    #[should_panic(expected = "vacant")]
    fn removing_a_vacant_key_panics() {
        let mut slab = Slab::new();
        let key = slab.insert(1);
        slab.remove(key);
        slab.remove(key);
    }
}
