//! A holder's `find_values` answer read in place: the body
//! `{"records": [<7 fields>, ...], "nodes": [], "more": False}` exactly as
//! msgpack-python packs it (`dht.wire.pack_response` of
//! `DhtProtocol._find_values`' dict: a fixmap of those three keys in that
//! order, every length and int in its shortest form), its records read as
//! byte slices and ints, no Python object made. The datagram engine reads a
//! response so when its request's callback may take the records from the
//! `RecordCache` without them (`answers.rs`, `records.rs`); any other body
//! (another encoding of the same value too) is decoded as before.
//!
//! A body this accepts is one the engine's decoder reads without error (every
//! str valid UTF-8, no trailing byte, its containers far under msgpack's
//! limits: each item takes at least a byte of the body), whose value
//! `found_values` accepts (a dict, its `records` a list, its `nodes` an
//! empty list): so it may be decoded later, or never, with the same verdict.

/// The wire fields of one record (public key, target, name, seq, expires,
/// data, signature), as the body holds them.
pub(crate) struct WireRecord<'a> {
    pub(crate) public_key: &'a [u8],
    pub(crate) target: &'a [u8],
    /// valid UTF-8 (checked as the decoder checks it)
    pub(crate) name: &'a [u8],
    pub(crate) seq: u64,
    pub(crate) expires: u64,
    pub(crate) data: &'a [u8],
    pub(crate) signature: &'a [u8],
}

/// A holder's answer, its records read again when taken: `count` of them
/// from the start of `items`. (Keeping the first four as read saved ~420
/// instructions a record, and copying the 450 bytes they took with the
/// answer cost as much: 222.0 k and 222.4 k instructions a `get_all`,
/// callgrind, bench profile.)
pub(crate) struct HolderAnswer<'a> {
    items: &'a [u8],
    count: usize,
}

/// The body's bytes up to the records, and from them on.
const HEAD: &[u8] = b"\x83\xa7records";
const TAIL: &[u8] = b"\xa5nodes\x90\xa4more\xc2";
/// A record's array: a fixarray of 7.
const RECORD: u8 = 0x97;

impl<'a> HolderAnswer<'a> {
    /// How many records the answer holds.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Its records, in order.
    pub(crate) fn records(&self) -> impl Iterator<Item = WireRecord<'a>> {
        let mut reader = Reader {
            data: self.items,
            pos: 0,
        };
        // (every record was read once by `holder_answer`)
        (0..self.count).map_while(move |_| reader.record())
    }
}

/// `body` read as a holder's answer in its canonical encoding, else None.
pub(crate) fn holder_answer(body: &[u8]) -> Option<HolderAnswer<'_>> {
    let rest = body.strip_prefix(HEAD)?;
    let mut reader = Reader { data: rest, pos: 0 };
    let count = reader.array()?;
    let start = reader.pos;
    for _ in 0..count {
        reader.record()?;
    }
    let items = &rest[start..reader.pos];
    (&rest[reader.pos..] == TAIL).then_some(HolderAnswer { items, count })
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, size: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(size)?;
        let bytes = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// A big-endian unsigned int of `N` bytes.
    fn be<const N: usize>(&mut self) -> Option<u64> {
        Some(
            self.take(N)?
                .iter()
                .fold(0u64, |value, &byte| value << 8 | u64::from(byte)),
        )
    }

    /// A length in `width` bytes (1, 2 or 4), if no shorter form holds it:
    /// `least`, the first length this form is the shortest for.
    fn length(&mut self, width: usize, least: u64) -> Option<usize> {
        let size = match width {
            1 => self.be::<1>()?,
            2 => self.be::<2>()?,
            _ => self.be::<4>()?,
        };
        if size < least {
            return None;
        }
        usize::try_from(size).ok()
    }

    fn array(&mut self) -> Option<usize> {
        match self.byte()? {
            byte @ 0x90..=0x9f => Some(usize::from(byte & 0x0f)),
            0xdc => self.length(2, 16),
            0xdd => self.length(4, 1 << 16),
            _ => None,
        }
    }

    fn bin(&mut self) -> Option<&'a [u8]> {
        let size = match self.byte()? {
            0xc4 => self.length(1, 0)?,
            0xc5 => self.length(2, 1 << 8)?,
            0xc6 => self.length(4, 1 << 16)?,
            _ => return None,
        };
        self.take(size)
    }

    fn str(&mut self) -> Option<&'a [u8]> {
        let size = match self.byte()? {
            byte @ 0xa0..=0xbf => usize::from(byte & 0x1f),
            0xd9 => self.length(1, 32)?,
            0xda => self.length(2, 1 << 8)?,
            0xdb => self.length(4, 1 << 16)?,
            _ => return None,
        };
        let text = self.take(size)?;
        std::str::from_utf8(text).ok()?;
        Some(text)
    }

    fn uint(&mut self) -> Option<u64> {
        let (value, least) = match self.byte()? {
            byte @ 0x00..=0x7f => return Some(u64::from(byte)),
            0xcc => (self.be::<1>()?, 1 << 7),
            0xcd => (self.be::<2>()?, 1 << 8),
            0xce => (self.be::<4>()?, 1 << 16),
            0xcf => (self.be::<8>()?, 1 << 32),
            _ => return None,
        };
        (value >= least).then_some(value)
    }

    fn record(&mut self) -> Option<WireRecord<'a>> {
        if self.byte()? != RECORD {
            return None;
        }
        Some(WireRecord {
            public_key: self.bin()?,
            target: self.bin()?,
            name: self.str()?,
            seq: self.uint()?,
            expires: self.uint()?,
            data: self.bin()?,
            signature: self.bin()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::holder_answer;

    /// A record's wire array packed canonically (short fields).
    fn record(name: &[u8], seq: u8) -> Vec<u8> {
        let mut out = vec![0x97];
        for bytes in [&[1u8; 32][..], &[2; 20]] {
            out.extend([0xc4, u8::try_from(bytes.len()).expect("short")]);
            out.extend_from_slice(bytes);
        }
        out.push(0xa0 | u8::try_from(name.len()).expect("short"));
        out.extend_from_slice(name);
        out.extend([seq, 0x00, 0xc4, 1, b'd', 0xc4, 64]);
        out.extend_from_slice(&[3; 64]);
        out
    }

    fn answer(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"\x83\xa7records".to_vec();
        out.push(0x90 | u8::try_from(records.len()).expect("few"));
        for record in records {
            out.extend_from_slice(record);
        }
        out.extend_from_slice(b"\xa5nodes\x90\xa4more\xc2");
        out
    }

    #[test]
    fn a_holders_answer_is_read_in_place() {
        let body = answer(&[record(b"pkg", 5), record(b"other", 6)]);
        let read = holder_answer(&body).expect("read");
        let records: Vec<_> = read.records().collect();
        assert_eq!(records.len(), 2);
        assert_eq!(
            (records[1].name, records[1].seq, records[1].data),
            (&b"other"[..], 6, &b"d"[..])
        );
        assert_eq!(records[0].signature, &[3; 64][..]);
        assert!(holder_answer(&answer(&[])).is_some_and(|read| read.len() == 0));
    }

    #[test]
    fn anything_else_is_left_to_the_decoder() {
        let whole = answer(&[record(b"pkg", 5)]);
        for end in 0..whole.len() {
            assert!(holder_answer(&whole[..end]).is_none(), "{end}");
        }
        let mut extra = whole.clone();
        extra.push(0);
        assert!(holder_answer(&extra).is_none());
        // a name that is not UTF-8
        assert!(holder_answer(&answer(&[record(b"\xff", 5)])).is_none());
        // a seq as uint8 where a fixint holds it
        let mut wide = record(b"pkg", 5);
        let at = 1 + 34 + 22 + 4;
        wide.splice(at..=at, [0xcc, 5]);
        assert!(holder_answer(&answer(&[wide])).is_none());
        // the map's keys in another order
        let records = &whole[9..whole.len() - 13];
        let mut order = b"\x83\xa5nodes\x90\xa7records".to_vec();
        order.extend_from_slice(records);
        order.extend_from_slice(b"\xa4more\xc2");
        assert_eq!(order.len(), whole.len());
        assert!(holder_answer(&order).is_none());
        // more records than 15: array 16, and only then
        let many = vec![record(b"pkg", 5); 16];
        let mut body = answer(&many[..15]);
        body.splice(9..10, [0xdc, 0, 16]);
        let at = body.len() - 13;
        body.splice(at..at, many[15].iter().copied());
        let read = holder_answer(&body).expect("read");
        assert_eq!(read.records().filter(|record| record.seq == 5).count(), 16);
        let mut short = answer(&many[..15]);
        short.splice(9..10, [0xdc, 0, 15]);
        assert!(holder_answer(&short).is_none());
    }
}
