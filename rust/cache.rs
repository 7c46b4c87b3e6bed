//! Cache hints: ask the CPU for memory a hot path reads a little later, so
//! the miss overlaps other work instead of stalling it.

/// Bytes of a cache line (x86-64, most arm64).
pub const CACHE_LINE: usize = 64;

/// Asks for the cache line at `address` without waiting for it.
#[inline]
pub fn prefetch<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and
    // never faults, whatever the address; SSE is part of x86-64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// `prefetch` of the first two cache lines from `address` (`wrapping_add`:
/// the second address is only a hint, never dereferenced).
#[inline]
pub fn prefetch_two_lines<T>(address: *const T) {
    let start = address.cast::<u8>();
    prefetch(start);
    prefetch(start.wrapping_add(CACHE_LINE));
}
