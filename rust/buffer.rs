//! A query's result buffer: a FIFO of at most `max_results` records,
//! shared through an `Arc` so results can be drained outside the core's lock
//! while other threads keep offering.
//!
//! Lock-free (DESIGN.md: results may be offered from any thread), and made
//! for how the table uses it: one producer at a time (the table pushes
//! under its lock, through the one `ResultBuffer`, `&mut`), any number of
//! drains on any thread (`Drainer`s, clones of the `Arc`). A record is
//! written once into its own slot and never moved before it is drained: the
//! buffer holds at most `capacity` records ever (the table accepts at most
//! `max_results` a query), so slots are never reused. Pushing is a plain
//! write and one release store of the count (a plain store on x86-64);
//! a drain claims every published record at once with one compare-exchange.
//! Slots come in segments of 32, 64, 128, ... as results come (a query that
//! gets 20 results holds one segment of 32).
//!
//! It was a crossbeam `SegQueue`: two atomic read-modify-writes a push (the
//! tail's compare-exchange, the slot's ready bit), a 128-byte aligned
//! allocation a buffer (`posix_memalign`, which split and freed a block
//! each time) and a zeroed block; together ~15 % of a2's time at
//! `--quick`'s size (perf). Before that an `ArrayQueue` allocated whole at
//! `max_results` (a quarter of a2's time in page faults), and a `Vec`
//! behind a lock (faster, not lock-free). a2 of `bench core` at
//! `--quick`'s size, 61 reps interleaved in one process: main's build /
//! this 1.114, the build before it with the `SegQueue` 1.047 (main's copy
//! 0.996).

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;

/// Slots of the first segment; each next one is twice as large.
const FIRST_SEGMENT: usize = 32;
/// Segments a buffer can have: 32 x (2^12 - 1) = 131,040 slots.
const SEGMENTS: usize = 12;
/// The largest capacity.
pub const MAX_CAPACITY: usize = FIRST_SEGMENT * ((1 << SEGMENTS) - 1);
const _: () = assert!(MAX_CAPACITY >= crate::types::MAX_RESULTS_LIMIT as usize);

/// The segment of slot `index`, and the first slot of that segment.
fn locate(index: usize) -> (usize, usize) {
    let segment = (usize::BITS - 1 - (index / FIRST_SEGMENT + 1).leading_zeros()) as usize;
    (segment, FIRST_SEGMENT * ((1 << segment) - 1))
}

struct Shared<R> {
    capacity: usize,
    /// Records pushed: slots `[0, written)` hold records or were drained.
    written: AtomicUsize,
    /// Records drained (claimed by a drain): `taken <= written`.
    taken: AtomicUsize,
    /// Each segment's first slot, null until the producer needs it.
    segments: [AtomicPtr<MaybeUninit<R>>; SEGMENTS],
    /// Owns records of type `R` (and is `Send`/`Sync` only as `R` is).
    records: PhantomData<R>,
}

impl<R> Shared<R> {
    /// Slots segment `segment` has (the last one cut at the capacity).
    fn segment_len(&self, segment: usize) -> usize {
        let start = FIRST_SEGMENT * ((1 << segment) - 1);
        (FIRST_SEGMENT << segment).min(self.capacity - start)
    }

    /// The slot of `index`, which the producer published (its segment is
    /// allocated).
    fn slot(&self, index: usize) -> *mut MaybeUninit<R> {
        let (segment, start) = locate(index);
        let base = self.segments[segment].load(Ordering::Acquire);
        debug_assert!(!base.is_null(), "slot {index} of no segment");
        // (within the segment: index - start < segment_len)
        base.wrapping_add(index - start)
    }

    /// Moves the records of slots `[from, to)` out, oldest first.
    ///
    /// # Safety
    /// The caller owns these slots: they hold records (published, so
    /// written) that nothing else reads or drops.
    unsafe fn take(&self, from: usize, to: usize) -> Vec<R> {
        let mut records = Vec::with_capacity(to - from);
        for index in from..to {
            // SAFETY: slot `index` holds a record only this caller reads
            records.push(unsafe { self.slot(index).read().assume_init() });
        }
        records
    }
}

impl<R> Drop for Shared<R> {
    fn drop(&mut self) {
        let taken = *self.taken.get_mut();
        let written = *self.written.get_mut();
        // SAFETY: the last handle is gone (no drain is running): the
        // records not drained are this buffer's alone.
        drop(unsafe { self.take(taken, written) });
        for segment in 0..SEGMENTS {
            let base = *self.segments[segment].get_mut();
            if !base.is_null() {
                let slots = std::ptr::slice_from_raw_parts_mut(base, self.segment_len(segment));
                // SAFETY: made by `Box::into_raw` of a slice of this length
                // (`push`), freed once; its records were moved out above.
                drop(unsafe { Box::from_raw(slots) });
            }
        }
    }
}

/// Drains every record published so far (see `ResultBuffer::drain`).
fn drain<R>(shared: &Shared<R>) -> Vec<R> {
    let mut taken = shared.taken.load(Ordering::Acquire);
    loop {
        let written = shared.written.load(Ordering::Acquire);
        if taken >= written {
            return Vec::new();
        }
        match shared.taken.compare_exchange_weak(
            taken,
            written,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: the exchange gave this drain `[taken, written)`, and
            // the acquire load of `written` made their records visible.
            Ok(_) => return unsafe { shared.take(taken, written) },
            Err(now) => taken = now,
        }
    }
}

/// The producer's handle: only the holder of a `&mut` pushes.
pub struct ResultBuffer<R> {
    shared: Arc<Shared<R>>,
    /// `shared.written`, which only this handle changes.
    written: usize,
}

impl<R> ResultBuffer<R> {
    /// A buffer for at most `capacity` records (1 to `MAX_CAPACITY`).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        ResultBuffer {
            shared: Arc::new(Shared {
                capacity: capacity.clamp(1, MAX_CAPACITY),
                written: AtomicUsize::new(0),
                taken: AtomicUsize::new(0),
                segments: Default::default(),
                records: PhantomData,
            }),
            written: 0,
        }
    }

    /// Add a record at the back.
    ///
    /// # Errors
    /// The record, handed back, if the buffer is full (it held `capacity`).
    pub fn push(&mut self, record: R) -> Result<(), R> {
        let shared = &*self.shared;
        let index = self.written;
        if index >= shared.capacity {
            return Err(record);
        }
        let (segment, start) = locate(index);
        let base = if index == start {
            let slots: Box<[MaybeUninit<R>]> = Box::new_uninit_slice(shared.segment_len(segment));
            let base = Box::into_raw(slots).cast::<MaybeUninit<R>>();
            shared.segments[segment].store(base, Ordering::Release);
            base
        } else {
            shared.segments[segment].load(Ordering::Relaxed)
        };
        // SAFETY: slot `index` is in its segment (allocated above or
        // before) and was never written: no drain reads it until
        // `written` says so, below.
        unsafe { base.add(index - start).write(MaybeUninit::new(record)) };
        self.written = index + 1;
        shared.written.store(self.written, Ordering::Release);
        Ok(())
    }

    /// Push a record the table accepted: the table accepts at most
    /// `max_results`, the buffer's capacity, so it always fits.
    pub fn push_accepted(&mut self, record: R) {
        let pushed = self.push(record);
        debug_assert!(
            pushed.is_ok(),
            "a query accepts at most max_results records"
        );
    }

    #[must_use]
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Records waiting (pushed and not drained).
    #[must_use]
    pub fn len(&self) -> usize {
        self.written - self.shared.taken.load(Ordering::Acquire)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything in the buffer now, oldest first.
    #[must_use]
    pub fn drain(&self) -> Vec<R> {
        drain(&self.shared)
    }

    /// A handle that drains this buffer from anywhere (outside the lock).
    #[must_use]
    pub fn drainer(&self) -> Drainer<R> {
        Drainer(Arc::clone(&self.shared))
    }
}

/// A handle of a buffer that only drains it; any thread, any number.
pub struct Drainer<R>(Arc<Shared<R>>);

impl<R> Clone for Drainer<R> {
    fn clone(&self) -> Self {
        Drainer(Arc::clone(&self.0))
    }
}

impl<R> Drainer<R> {
    /// Everything in the buffer now, oldest first; records drained by
    /// several drains at once each go to one of them, in order.
    #[must_use]
    pub fn drain(&self) -> Vec<R> {
        drain(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_at_capacity_and_fifo() {
        let mut buffer = ResultBuffer::new(3);
        assert_eq!(buffer.capacity(), 3);
        for i in 0..3 {
            assert!(buffer.push(i).is_ok());
        }
        assert_eq!(buffer.push(99), Err(99));
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.drain(), vec![0, 1, 2]);
        assert!(buffer.is_empty());
        // The bound is on records ever pushed: slots are not reused.
        assert_eq!(buffer.push(4), Err(4));
        assert!(buffer.drainer().drain().is_empty());
    }

    #[test]
    fn segments_grow_and_drains_resume() {
        let capacity = FIRST_SEGMENT * 7 + 5;
        let mut buffer = ResultBuffer::new(capacity);
        let drainer = buffer.drainer();
        let mut out = Vec::new();
        for i in 0..capacity {
            buffer.push_accepted(i);
            if i % 37 == 0 {
                out.extend(drainer.drain());
            }
        }
        assert_eq!(buffer.push(capacity), Err(capacity));
        out.extend(buffer.drain());
        assert_eq!(out, (0..capacity).collect::<Vec<_>>());
    }

    #[test]
    fn locate_finds_each_segment() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(31), (0, 0));
        assert_eq!(locate(32), (1, 32));
        assert_eq!(locate(95), (1, 32));
        assert_eq!(locate(96), (2, 96));
        assert_eq!(locate(MAX_CAPACITY - 1).0, SEGMENTS - 1);
    }

    #[test]
    fn records_not_drained_are_dropped_with_the_buffer() {
        let record = Arc::new(());
        let mut buffer = ResultBuffer::new(100);
        for _ in 0..70 {
            buffer.push_accepted(Arc::clone(&record));
        }
        let drainer = buffer.drainer();
        assert_eq!(drainer.drain().len(), 70);
        for _ in 0..10 {
            buffer.push_accepted(Arc::clone(&record));
        }
        assert_eq!(Arc::strong_count(&record), 11);
        drop(buffer);
        assert_eq!(Arc::strong_count(&record), 11);
        drop(drainer);
        assert_eq!(Arc::strong_count(&record), 1);
    }

    #[test]
    fn drained_from_threads_while_pushing() {
        use std::sync::atomic::AtomicBool;
        let total = 20_000;
        let mut buffer = ResultBuffer::new(total);
        let done = Arc::new(AtomicBool::new(false));
        let drains: Vec<_> = (0..3)
            .map(|_| {
                let drainer = buffer.drainer();
                let done = Arc::clone(&done);
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while !done.load(Ordering::Acquire) {
                        got.extend(drainer.drain());
                        std::thread::yield_now();
                    }
                    got.extend(drainer.drain());
                    got
                })
            })
            .collect();
        for i in 0..total {
            buffer.push_accepted(i);
        }
        done.store(true, Ordering::Release);
        let mut all = Vec::new();
        for drain in drains {
            let got = drain.join().unwrap();
            // Each drain gets its records in order.
            assert!(got.windows(2).all(|w| w[0] < w[1]));
            all.extend(got);
        }
        all.extend(buffer.drain());
        all.sort_unstable();
        assert_eq!(all, (0..total).collect::<Vec<_>>());
    }
}
