//! Regression tests for the defects the hardening work fixed: each failed on
//! the code before its fix. Memory bounds are asserted in `tests/memory.rs`.

use test_support as support;

mod after_close;
mod cancellation;
mod close_frames;
mod dropping_handles;
mod exact_ids;
mod panicking_handlers;
mod smaller;
