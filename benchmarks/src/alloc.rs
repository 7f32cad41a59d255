//! A counting global allocator that only counts on threads that opted in.
//!
//! The `memory` scenario runs each client on its own thread, opts that thread
//! in, and reads the thread's live-heap figure (bytes allocated minus bytes
//! freed *on this thread*) before and after issuing the pending calls. The
//! server runs on other threads, which never opt in, so its allocations are
//! not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct CountingAlloc;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
    static FREED: Cell<u64> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn on_alloc(size: usize) {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    let _ = ENABLED.try_with(|enabled| {
        if enabled.get() {
            let _ = ALLOCATED.try_with(|a| a.set(a.get().wrapping_add(size as u64)));
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get().wrapping_add(1)));
        }
    });
}

#[inline]
fn on_free(size: usize) {
    let _ = ENABLED.try_with(|enabled| {
        if enabled.get() {
            let _ = FREED.try_with(|f| f.set(f.get().wrapping_add(size as u64)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping only
// touches const-initialised thread-locals without destructors, which never
// allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        on_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            on_free(layout.size());
            on_alloc(new_size);
        }
        p
    }
}

/// Start counting allocations made on the current thread.
pub fn count_this_thread() {
    ENABLED.with(|e| e.set(true));
}

/// Counters of the current thread (zero unless it opted in).
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    pub allocated: u64,
    pub freed: u64,
    pub allocations: u64,
}

impl Snapshot {
    pub fn now() -> Self {
        Snapshot {
            allocated: ALLOCATED.with(Cell::get),
            freed: FREED.with(Cell::get),
            allocations: ALLOCATIONS.with(Cell::get),
        }
    }

    /// Live heap (allocated minus freed on this thread).
    pub fn live(&self) -> i64 {
        self.allocated.wrapping_sub(self.freed) as i64
    }
}
