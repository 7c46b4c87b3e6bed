//! A query's set of result keys seen so far. Keys are exact: a tag (str or
//! bytes) and the key's bytes, so `"a"` and `b"a"` stay distinct and no
//! Python `__eq__`/`__hash__` is ever needed.
//!
//! Keys are looked up as borrowed bytes with a hash computed once, before
//! the core is locked; only a key that is new gets copied, into one byte
//! arena per query (no allocation per key).

use crate::cache::{prefetch, CACHE_LINE};
use foldhash::fast::RandomState;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use std::hash::{BuildHasher, Hasher};

const TAG_STR: u8 = 0;
const TAG_BYTES: u8 = 1;

/// Keys a query's set is sized for up front (at most `max_results`): a
/// Kademlia query (k = 20) fits without rehashing, and a query with a large
/// `max_results` that gets few results reserves little (28 fills 32
/// buckets; larger first sizes cost page faults across many queries).
const PRESIZE_KEYS: usize = 28;

/// A key as borrowed bytes: its tag (str or bytes) and its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef<'a> {
    tag: u8,
    bytes: &'a [u8],
}

impl<'a> KeyRef<'a> {
    /// The key of a `str` from its UTF-8 (surrogate-passing) encoding.
    #[must_use]
    pub fn str(utf8: &'a [u8]) -> Self {
        KeyRef {
            tag: TAG_STR,
            bytes: utf8,
        }
    }

    #[must_use]
    pub fn bytes(bytes: &'a [u8]) -> Self {
        KeyRef {
            tag: TAG_BYTES,
            bytes,
        }
    }

    /// Bytes this key takes in an arena: the tag, then the bytes.
    fn stored_len(self) -> usize {
        self.bytes.len() + 1
    }

    fn store(self, arena: &mut Vec<u8>) -> Span {
        let start = arena.len();
        arena.push(self.tag);
        arena.extend_from_slice(self.bytes);
        Span {
            start,
            end: arena.len(),
        }
    }
}

/// The hash function of keys. One per core, shared by every query, so a
/// key's hash can be computed before locking the core.
#[derive(Clone, Default)]
pub struct KeyHasher(RandomState);

impl KeyHasher {
    #[must_use]
    pub fn hash(&self, key: KeyRef<'_>) -> u64 {
        let mut hasher = self.0.build_hasher();
        hasher.write_u8(key.tag);
        hasher.write(key.bytes);
        hasher.finish()
    }
}

/// Where a key (tag first) is in an arena.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn key(self, arena: &[u8]) -> KeyRef<'_> {
        KeyRef {
            tag: arena[self.start],
            bytes: &arena[self.start + 1..self.end],
        }
    }
}

#[derive(Default)]
pub struct DedupSet {
    arena: Vec<u8>,
    spans: HashTable<Span>,
}

impl DedupSet {
    /// `hash` is `hasher.hash(key)` for the set's `hasher`.
    #[must_use]
    pub fn contains(&self, key: KeyRef<'_>, hash: u64) -> bool {
        self.spans
            .find(hash, |span| span.key(&self.arena) == key)
            .is_some()
    }

    /// Adds the key if it is new (and says so). `max_keys` (the query's
    /// `max_results`) bounds how many keys the set will ever hold, to size
    /// it on the first insert.
    pub fn insert(
        &mut self,
        key: KeyRef<'_>,
        hash: u64,
        hasher: &KeyHasher,
        max_keys: usize,
    ) -> bool {
        let Self { arena, spans } = self;
        if spans.capacity() == 0 {
            let keys = max_keys.clamp(1, PRESIZE_KEYS);
            arena.reserve(keys * key.stored_len());
            spans.reserve(keys, |span| hasher.hash(span.key(arena)));
        }
        let rehash = |span: &Span| hasher.hash(span.key(arena));
        match spans.entry(hash, |span| span.key(arena) == key, rehash) {
            Entry::Occupied(_) => false,
            Entry::Vacant(vacant) => {
                vacant.insert(key.store(arena));
                true
            }
        }
    }

    /// Before looking up `lookups` keys a while later: when the set is not
    /// much larger, asks the CPU to fetch its buckets and key bytes into
    /// the cache without waiting for them (only its control bytes are
    /// read), so they arrive while the caller does other work.
    pub fn prefetch(&self, lookups: usize) {
        if self.spans.len() > 4 * lookups {
            return;
        }
        for span in &self.spans {
            prefetch(std::ptr::from_ref(span));
        }
        for line in self.arena.chunks(CACHE_LINE) {
            prefetch(line.as_ptr());
        }
        if let Some(last) = self.arena.last() {
            prefetch(std::ptr::from_ref(last));
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// A key with its hash (by the core's `KeyHasher`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedKey<'a> {
    pub key: KeyRef<'a>,
    pub hash: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(set: &mut DedupSet, hasher: &KeyHasher, key: KeyRef<'_>) -> bool {
        set.insert(key, hasher.hash(key), hasher, 4)
    }

    fn contains(set: &DedupSet, hasher: &KeyHasher, key: KeyRef<'_>) -> bool {
        set.contains(key, hasher.hash(key))
    }

    #[test]
    fn str_and_bytes_are_distinct() {
        let hasher = KeyHasher::default();
        let mut set = DedupSet::default();
        assert!(insert(&mut set, &hasher, KeyRef::str(b"a")));
        assert!(insert(&mut set, &hasher, KeyRef::bytes(b"a")));
        assert!(!insert(&mut set, &hasher, KeyRef::str(b"a")));
        assert!(!insert(&mut set, &hasher, KeyRef::bytes(b"a")));
        assert!(contains(&set, &hasher, KeyRef::str(b"a")));
        assert!(!contains(&set, &hasher, KeyRef::str(b"b")));
        assert!(insert(&mut set, &hasher, KeyRef::str(b"")));
        assert!(insert(&mut set, &hasher, KeyRef::bytes(b"")));
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn keys_are_exact_bytes() {
        let hasher = KeyHasher::default();
        let mut set = DedupSet::default();
        assert!(insert(&mut set, &hasher, KeyRef::bytes(&[0, 1, 2])));
        assert!(insert(&mut set, &hasher, KeyRef::bytes(&[0, 1])));
        assert!(insert(&mut set, &hasher, KeyRef::str("é".as_bytes())));
        assert!(!insert(&mut set, &hasher, KeyRef::str("é".as_bytes())));
        assert!(insert(&mut set, &hasher, KeyRef::bytes("é".as_bytes())));
    }

    #[test]
    fn prefetch_changes_nothing() {
        let hasher = KeyHasher::default();
        let mut set = DedupSet::default();
        set.prefetch(1);
        let keys: Vec<String> = (0..100).map(|i| format!("key{i}")).collect();
        for key in &keys {
            insert(&mut set, &hasher, KeyRef::str(key.as_bytes()));
            set.prefetch(1);
            set.prefetch(100);
        }
        assert_eq!(set.len(), 100);
        assert!(keys
            .iter()
            .all(|key| contains(&set, &hasher, KeyRef::str(key.as_bytes()))));
    }

    #[test]
    fn grows_past_its_first_size() {
        let hasher = KeyHasher::default();
        let mut set = DedupSet::default();
        let keys: Vec<String> = (0..1000).map(|i| format!("key{i}")).collect();
        for key in &keys {
            assert!(insert(&mut set, &hasher, KeyRef::str(key.as_bytes())));
        }
        for key in &keys {
            assert!(!insert(&mut set, &hasher, KeyRef::str(key.as_bytes())));
            assert!(contains(&set, &hasher, KeyRef::str(key.as_bytes())));
        }
        assert_eq!(set.len(), 1000);
    }
}
