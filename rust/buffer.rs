//! A query's result buffer: a FIFO of at most `max_results` records,
//! shared through an `Arc` so results can be drained outside the core's lock
//! while other threads keep offering.
//!
//! Lock-free (DESIGN.md: results may be offered from any thread): a
//! `SegQueue`, which grows in blocks of 31 slots as results come. It was an
//! `ArrayQueue` allocated whole (`max_results` slots) at a query's first
//! result: with results held in the core as `Held` (32 bytes, not a tuple's
//! 8-byte pointer) that was 2.5 KiB a query at `bench core`'s `max_results`
//! 64 for 20 results, and a quarter of a2's time went to the kernel's page
//! faults (perf). A `Vec` behind its own lock, grown the same way, was
//! ~8 ns an offer faster on a2 (batches) and ~5 ns slower on a1 (single
//! offers): best of nine interleaved `bench core --quick` pairs, a2 84.5 vs
//! 92.9 ns, a1 135.9 vs 130.2 ns; the design's lock-free buffer is kept.
//! The bound is the table's: it accepts at most
//! `max_results` records for a query, and only accepted records are pushed;
//! `push` (outside the table) checks it too.

use crossbeam_queue::SegQueue;
use std::sync::Arc;

pub struct ResultBuffer<R> {
    capacity: usize,
    queue: Arc<SegQueue<R>>,
}

impl<R> Clone for ResultBuffer<R> {
    fn clone(&self) -> Self {
        ResultBuffer {
            capacity: self.capacity,
            queue: Arc::clone(&self.queue),
        }
    }
}

impl<R> ResultBuffer<R> {
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        ResultBuffer {
            capacity: capacity.max(1),
            queue: Arc::new(SegQueue::new()),
        }
    }

    /// Add a record at the back.
    ///
    /// # Errors
    /// The record, handed back, if the buffer is full.
    pub fn push(&self, record: R) -> Result<(), R> {
        if self.queue.len() >= self.capacity {
            return Err(record);
        }
        self.queue.push(record);
        Ok(())
    }

    /// Push a record the table accepted: the table accepts at most
    /// `max_results`, the buffer's capacity, so it always fits.
    pub fn push_accepted(&self, record: R) {
        debug_assert!(
            self.queue.len() < self.capacity,
            "a query accepts at most max_results records"
        );
        self.queue.push(record);
    }

    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Everything in the buffer now, oldest first.
    #[must_use]
    pub fn drain(&self) -> Vec<R> {
        let mut drained = Vec::with_capacity(self.queue.len());
        while let Some(record) = self.queue.pop() {
            drained.push(record);
        }
        drained
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_at_capacity_and_fifo() {
        let buffer = ResultBuffer::new(3);
        assert_eq!(buffer.capacity(), 3);
        for i in 0..3 {
            assert!(buffer.push(i).is_ok());
        }
        assert_eq!(buffer.push(99), Err(99));
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.drain(), vec![0, 1, 2]);
        assert!(buffer.is_empty());
        assert!(buffer.push(4).is_ok());
        assert_eq!(buffer.clone().drain(), vec![4]);
        assert!(buffer.drain().is_empty());
    }

    #[test]
    fn shared_between_threads() {
        let buffer = ResultBuffer::new(1000);
        let producers: Vec<_> = (0..4)
            .map(|t| {
                let b = buffer.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        b.push(t * 1000 + i).unwrap();
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all = buffer.drain();
        assert_eq!(all.len(), 1000);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 1000);
    }
}
