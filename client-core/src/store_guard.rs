//! The store's lock as a guard that knows where it was taken. A door scan
//! needs this lock to answer, so every hold long enough to keep a scan
//! waiting is logged with the line that took it: the slow-answer log
//! (`events.rs`) can only name who held the lock as the scan came for it,
//! and a label read then may be stale.

use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::Inner;

/// A hold of the store's lock at least this long is logged: a scan that
/// came for the lock meanwhile waited for it (the door's goal is a p99 of
/// 20 ms for the whole answer).
pub(crate) const LONG_HOLD: Duration = Duration::from_millis(50);

/// What the store's lock knows of its users: where it was last taken, and
/// how many threads are waiting for it. Long work (the index of a remote
/// batch) keeps its transaction open while nobody waits and commits as
/// soon as someone does, so a scan waits for one slice of it, not for a
/// step sized for the worst case.
#[derive(Default)]
pub(crate) struct LockWatch {
    taken_at: Mutex<Option<&'static Location<'static>>>,
    waiting: AtomicUsize,
}

impl LockWatch {
    /// Takes `lock`, counted as waiting while it is held by another thread.
    pub(crate) fn take<'a>(
        &self,
        lock: &'a Mutex<Inner>,
        site: &'static Location<'static>,
    ) -> StoreGuard<'a> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (transactions roll back), so the data is safe to keep using.
        let guard = match lock.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.waiting.fetch_add(1, Ordering::SeqCst);
                let guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                guard
            }
        };
        *self.last_site() = Some(site);
        StoreGuard::new(guard, site)
    }

    /// Whether another thread is waiting for the lock now.
    pub(crate) fn someone_waits(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Where the lock was last taken, if ever. The label is set just after
    /// the lock is taken, so it can lag the holder by that moment.
    pub(crate) fn last_taken_at(&self) -> Option<&'static Location<'static>> {
        *self.last_site()
    }

    fn last_site(&self) -> MutexGuard<'_, Option<&'static Location<'static>>> {
        self.taken_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) struct StoreGuard<'a> {
    guard: MutexGuard<'a, Inner>,
    site: &'static Location<'static>,
    taken: Instant,
}

impl<'a> StoreGuard<'a> {
    fn new(guard: MutexGuard<'a, Inner>, site: &'static Location<'static>) -> Self {
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
