//! A query's result buffer: a bounded lock-free FIFO of capacity
//! `max_results`, shared through an `Arc` so results can be drained outside
//! the core's lock while other threads keep offering.

use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

pub struct ResultBuffer<R> {
    queue: Arc<ArrayQueue<R>>,
}

impl<R> Clone for ResultBuffer<R> {
    fn clone(&self) -> Self {
        ResultBuffer {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl<R> ResultBuffer<R> {
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        ResultBuffer {
            queue: Arc::new(ArrayQueue::new(capacity.max(1))),
        }
    }

    /// Add a record at the back.
    ///
    /// # Errors
    /// The record, handed back, if the buffer is full.
    pub fn push(&self, record: R) -> Result<(), R> {
        self.queue.push(record)
    }

    /// Push a record the table accepted: the table accepts at most
    /// `max_results`, the buffer's capacity, so it always fits.
    pub fn push_accepted(&self, record: R) {
        if self.queue.push(record).is_err() {
            unreachable!("a query accepts at most max_results records");
        }
    }

    #[must_use]
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
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
        let mut out = Vec::with_capacity(self.queue.len());
        while let Some(record) = self.queue.pop() {
            out.push(record);
        }
        out
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
