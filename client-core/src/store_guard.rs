//! The store's lock as a guard that knows where it was taken. A door scan
//! needs this lock to answer, so every hold long enough to keep a scan
//! waiting is logged with the line that took it: the slow-answer log
//! (`events.rs`) can only name who held the lock as the scan came for it,
//! and a label read then may be stale.

use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::Inner;

/// A hold of the store's lock at least this long is logged: a scan that
/// came for the lock meanwhile waited for it (the door's goal is a p99 of
/// 20 ms for the whole answer).
pub(crate) const LONG_HOLD: Duration = Duration::from_millis(50);

pub(crate) struct StoreGuard<'a> {
    guard: MutexGuard<'a, Inner>,
    site: &'static Location<'static>,
    taken: Instant,
}

impl<'a> StoreGuard<'a> {
    pub(crate) fn new(guard: MutexGuard<'a, Inner>, site: &'static Location<'static>) -> Self {
        Self {
            guard,
            site,
            taken: Instant::now(),
        }
    }
}

impl Deref for StoreGuard<'_> {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.guard
    }
}

impl DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.guard
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        let held = self.taken.elapsed();
        if held >= LONG_HOLD {
            tracing::warn!(
                held_ms = held.as_millis() as u64,
                site = %format_args!("{}:{}", self.site.file(), self.site.line()),
                "store lock held long"
            );
        }
    }
}
