//! A query's set of result keys seen so far. Keys are exact: a tag byte
//! (str or bytes) then the key's bytes, so `"a"` and `b"a"` stay distinct
//! and no Python `__eq__`/`__hash__` is ever needed.

use foldhash::fast::RandomState;
use hashbrown::HashSet;

const TAG_STR: u8 = 0;
const TAG_BYTES: u8 = 1;

/// An owned dedup key: tag byte + bytes.
pub type Key = Box<[u8]>;

fn tagged(tag: u8, bytes: &[u8]) -> Key {
    let mut key = Vec::with_capacity(bytes.len() + 1);
    key.push(tag);
    key.extend_from_slice(bytes);
    key.into_boxed_slice()
}

/// The key of a `str` from its UTF-8 (surrogate-passing) encoding.
pub fn str_key(utf8: &[u8]) -> Key {
    tagged(TAG_STR, utf8)
}

pub fn bytes_key(bytes: &[u8]) -> Key {
    tagged(TAG_BYTES, bytes)
}

#[derive(Default)]
pub struct DedupSet {
    keys: HashSet<Key, RandomState>,
}

impl DedupSet {
    pub fn contains(&self, key: &[u8]) -> bool {
        self.keys.contains(key)
    }

    /// True if the key was new.
    pub fn insert(&mut self, key: Key) -> bool {
        self.keys.insert(key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_and_bytes_are_distinct() {
        let mut set = DedupSet::default();
        assert!(set.insert(str_key(b"a")));
        assert!(set.insert(bytes_key(b"a")));
        assert!(!set.insert(str_key(b"a")));
        assert!(!set.insert(bytes_key(b"a")));
        assert!(set.contains(&str_key(b"a")));
        assert!(!set.contains(&str_key(b"b")));
        assert!(set.insert(str_key(b"")));
        assert!(set.insert(bytes_key(b"")));
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn keys_are_exact_bytes() {
        let mut set = DedupSet::default();
        assert!(set.insert(bytes_key(&[0, 1, 2])));
        assert!(set.insert(bytes_key(&[0, 1])));
        assert!(set.insert(str_key("é".as_bytes())));
        assert!(!set.insert(str_key("é".as_bytes())));
        assert!(set.insert(bytes_key("é".as_bytes())));
    }
}
