//! The query layer's vocabulary on the Rust side, mirroring
//! `dhtquery/query/types.py`: what a submit returned, why a query ended, what
//! state an id is in, the named shapes the table hands out, and the limits.
//! `vocab.rs` maps these onto the very Python objects of that module.

/// Seconds; the expiry wheel spans 64**6 ms, about 2.2 years.
pub const MAX_TIMEOUT: f64 = 365.0 * 86400.0;
/// A query's result buffer is allocated at capacity `max_results`.
pub const MAX_RESULTS_LIMIT: u32 = 100_000;
pub const MAX_EXPECTED_PEERS: u32 = 65_535;
/// Past this `now` (seconds) ticks would not fit the wheel's u64 arithmetic.
pub const MAX_NOW: f64 = 1e15;

/// What became of an offered result (or of a `peer_done` call); the
/// discriminants are `SubmitStatus`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Accepted; the query goes on.
    New = 0,
    /// Accepted, and it completed the query.
    Completed = 1,
    /// Already had this key (or this peer had finished).
    Duplicate = 2,
    /// The query was already complete.
    Full = 3,
    /// The query ended less than the grace period ago.
    Late = 4,
    /// No such query.
    Unknown = 5,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::New,
        Status::Completed,
        Status::Duplicate,
        Status::Full,
        Status::Late,
        Status::Unknown,
    ];

    /// The member's name in `SubmitStatus`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::Completed => "COMPLETED",
            Status::Duplicate => "DUPLICATE",
            Status::Full => "FULL",
            Status::Late => "LATE",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// Why a query ended; the discriminants index `Reason::ALL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    MaxResults = 0,
    AllPeers = 1,
    Adaptive = 2,
    Timeout = 3,
    Cancelled = 4,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::MaxResults,
        Reason::AllPeers,
        Reason::Adaptive,
        Reason::Timeout,
        Reason::Cancelled,
    ];

    /// The reasons a caller may pass to `finish` (`FINISH_REASONS`).
    pub const FINISH: [Reason; 3] = [Reason::MaxResults, Reason::AllPeers, Reason::Adaptive];

    /// The member's value (the str it equals).
    #[must_use]
    pub fn value(self) -> &'static str {
        match self {
            Reason::MaxResults => "max_results",
            Reason::AllPeers => "all_peers",
            Reason::Adaptive => "adaptive",
            Reason::Timeout => "timeout",
            Reason::Cancelled => "cancelled",
        }
    }

    /// The member's name in `Reason`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Reason::MaxResults => "MAX_RESULTS",
            Reason::AllPeers => "ALL_PEERS",
            Reason::Adaptive => "ADAPTIVE",
            Reason::Timeout => "TIMEOUT",
            Reason::Cancelled => "CANCELLED",
        }
    }
}

/// What the table knows of an id; the discriminants are `QueryState`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum QueryState {
    /// Registered and not yet ended.
    Live = 0,
    /// Ended less than the grace period ago.
    Tombstone = 1,
    /// Never registered here, or forgotten.
    Unknown = 2,
}

impl QueryState {
    pub const ALL: [QueryState; 3] = [QueryState::Live, QueryState::Tombstone, QueryState::Unknown];

    /// The member's name in `QueryState`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            QueryState::Live => "LIVE",
            QueryState::Tombstone => "TOMBSTONE",
            QueryState::Unknown => "UNKNOWN",
        }
    }
}

/// What `offer_many` did with one peer's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchStatus {
    pub status: Status,
    pub accepted: u64,
    pub duplicates: u64,
}

impl BatchStatus {
    /// A batch of which nothing was taken.
    #[must_use]
    pub fn refused(status: Status) -> Self {
        BatchStatus {
            status,
            accepted: 0,
            duplicates: 0,
        }
    }
}

/// A table's counters since it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    pub total: u64,
    pub successful: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub in_flight: u64,
    pub results: u64,
    pub duplicates: u64,
    pub late: u64,
    pub unknown: u64,
    pub overflow: u64,
}

/// Query durations in seconds (all zero when nothing was recorded).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct LatencySummary {
    /// Durations recorded.
    pub samples: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_indexed_by_discriminant() {
        for (index, status) in Status::ALL.iter().enumerate() {
            assert_eq!(*status as usize, index);
        }
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index);
        }
        for (index, state) in QueryState::ALL.iter().enumerate() {
            assert_eq!(*state as usize, index);
        }
        assert!(Reason::FINISH.iter().all(|r| Reason::ALL.contains(r)));
    }
}
