//! One query in flight: its limits, its counts, and (allocated on its first
//! result or peer report) its dedup set, result buffer and done peers.
//! Generic over the result record `R` and the peer handle `P`.

use crate::buffer::ResultBuffer;
use crate::dedup::DedupSet;
use crate::types::Reason;

/// A peer that reported done, with its Python hash: peers are compared by
/// hash, identity, then equality (by the caller, outside the lock).
pub struct DonePeer<P> {
    pub hash: isize,
    pub peer: P,
}

/// Parts of a query allocated only once it gets a result or a peer report.
pub struct Extra<R, P> {
    pub seen: DedupSet,
    pub buffer: Option<ResultBuffer<R>>,
    pub done: Vec<DonePeer<P>>,
}

impl<R, P> Extra<R, P> {
    /// The result buffer, allocated (at capacity `max_results`, the
    /// query's) on first use.
    pub fn buffer(&mut self, max_results: u32) -> &mut ResultBuffer<R> {
        self.buffer
            .get_or_insert_with(|| ResultBuffer::new(max_results as usize))
    }
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

/// The counts of a query that stop it being open, to say why it is not.
#[derive(Debug, PartialEq, Eq)]
pub struct Progress {
    pub accepted: u32,
    pub max_results: u32,
    pub peers_done: u64,
    pub expected_peers: u32,
}

pub struct Query<R, P> {
    pub start: f64,
    /// Registration order, to order queries expiring on the same tick.
    pub seq: u64,
    pub duplicates: u64,
    pub max_results: u32,
    pub accepted: u32,
    pub expected_peers: u32,
    pub peers_ok: u32,
    pub peers_failed: u32,
    pub extra: Option<Box<Extra<R, P>>>,
}

impl<R, P> Query<R, P> {
    #[must_use]
    pub fn new(start: f64, seq: u64, max_results: u32, expected_peers: u32) -> Self {
        Query {
            start,
            seq,
            duplicates: 0,
            max_results,
            accepted: 0,
            expected_peers,
            peers_ok: 0,
            peers_failed: 0,
            extra: None,
        }
    }

    #[must_use]
    pub fn peers_done(&self) -> u64 {
        u64::from(self.peers_ok) + u64::from(self.peers_failed)
    }

    /// It holds `max_results` results, or every expected peer is done.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.accepted >= self.max_results
            || (self.expected_peers > 0 && self.peers_done() >= u64::from(self.expected_peers))
    }

    /// Why it is complete (`finish` without a reason), or how far it is.
    ///
    /// # Errors
    /// `Progress` if the query is not complete.
    pub fn completion(&self) -> Result<Reason, Progress> {
        if self.accepted >= self.max_results {
            Ok(Reason::MaxResults)
        } else if self.expected_peers > 0 && self.peers_done() >= u64::from(self.expected_peers) {
            Ok(Reason::AllPeers)
        } else {
            Err(Progress {
                accepted: self.accepted,
                max_results: self.max_results,
                peers_done: self.peers_done(),
                expected_peers: self.expected_peers,
            })
        }
    }

    /// The seen set, buffer and done peers, allocated on first use.
    pub fn extra(&mut self) -> &mut Extra<R, P> {
        self.extra.get_or_insert_with(Box::default)
    }

    /// The result buffer if any result was ever buffered.
    #[must_use]
    pub fn buffer_if_any(&self) -> Option<&ResultBuffer<R>> {
        self.extra.as_ref().and_then(|extra| extra.buffer.as_ref())
    }
}
