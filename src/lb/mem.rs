//! Memory helpers for the large per-worker tables: 2 MiB pages where the
//! kernel offers transparent huge pages, and prefetch hints.
//!
//! A million sessions spread over a hundred megabytes: with 4 KiB pages
//! nearly every lookup also misses the TLB and walks the page tables, which
//! costs as much as the cache miss itself. `madvise(MADV_HUGEPAGE)` before
//! the memory is first touched lets the kernel back it with 2 MiB pages
//! (THP "always" does it anyway; "madvise", Debian's default, needs the
//! hint). Done once at construction, never on the packet path.

/// A vector of `n` copies of `value`, its memory advised for huge pages
/// before it is written.
pub fn huge_vec<T: Clone>(value: T, n: usize) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise(v.as_mut_ptr() as *mut u8, n * std::mem::size_of::<T>());
    v.resize(n, value);
    v
}

/// Asks the CPU to bring the cache line holding `*ptr` in (a hint: never
/// faults, whatever the address).
#[inline(always)]
pub fn prefetch<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint and does not access memory architecturally.
    unsafe {
        core::arch::x86_64::_mm_prefetch(ptr as *const i8, core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[cfg(target_os = "linux")]
fn advise(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < HUGE {
        return;
    }
    // madvise wants a page-aligned start; advise the 2 MiB-aligned part.
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: [start, end) lies inside the allocation just made; the
        // advice changes how it is backed, not its contents or validity.
        // A refusal (no THP) is harmless, so the result is ignored.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_ptr: *mut u8, _len: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_like_vec() {
        let v = super::huge_vec(7u32, 3 << 20);
        assert_eq!(v.len(), 3 << 20);
        assert!(v.iter().all(|&x| x == 7));
    }
}
