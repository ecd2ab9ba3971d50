//! The store's lock as a guard that knows where it was taken. A door scan
//! needs this lock to answer, so every hold long enough to keep a scan
//! waiting that another thread waited through is logged with the line
//! that took it: the slow-answer log (`events.rs`) can only name who held
//! the lock as the scan came for it, and a label read then may be stale.

use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// A hold of the store's lock at least this long, during which another
/// thread came for the lock, is logged: that thread (a scan, say) waited
/// for it (the door's goal is a p99 of 20 ms for the whole answer). Holds
/// nobody waited through are not: an index step keeps the lock up to
/// 40 ms while nobody waits, longer when its thread is preempted.
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
    /// Every time a thread found the lock held, counted.
    waits: AtomicU64,
}

impl LockWatch {
    /// Takes `lock`, counted as waiting while it is held by another thread.
    pub(crate) fn take<'a, T>(
        &'a self,
        lock: &'a Mutex<T>,
        site: &'static Location<'static>,
    ) -> StoreGuard<'a, T> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (transactions roll back), so the data is safe to keep using.
        let guard = match lock.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.waits.fetch_add(1, Ordering::SeqCst);
                self.waiting.fetch_add(1, Ordering::SeqCst);
                let guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                guard
            }
        };
        *self.last_site() = Some(site);
        StoreGuard {
            guard,
            watch: self,
            waits_before: self.waits.load(Ordering::SeqCst),
            site,
            taken: Instant::now(),
        }
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

pub(crate) struct StoreGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    watch: &'a LockWatch,
    /// The lock's count of waits when this hold began.
    waits_before: u64,
    site: &'static Location<'static>,
    taken: Instant,
}

impl<T> StoreGuard<'_, T> {
    /// Whether another thread came for the lock during this hold.
    fn waited_for(&self) -> bool {
        self.watch.waits.load(Ordering::SeqCst) != self.waits_before || self.watch.someone_waits()
    }
}

impl<T> Deref for StoreGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for StoreGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for StoreGuard<'_, T> {
    fn drop(&mut self) {
        let held = self.taken.elapsed();
        if held >= LONG_HOLD && self.waited_for() {
            tracing::warn!(
                held_ms = held.as_millis() as u64,
                site = %format_args!("{}:{}", self.site.file(), self.site.line()),
                "store lock held long"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_knows_whether_another_thread_waited_for_it() {
        let watch = LockWatch::default();
        let lock = Mutex::new(0_u32);
        let site = Location::caller();

        let alone = watch.take(&lock, site);
        assert!(!alone.waited_for(), "nobody came");
        drop(alone);

        let held = watch.take(&lock, site);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| *watch.take(&lock, site) + 1);
            // The waiter is counted once it finds the lock held.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !watch.someone_waits() {
                assert!(Instant::now() < deadline, "the waiter never came");
                std::thread::yield_now();
            }
            assert!(held.waited_for());
            drop(held);
            assert_eq!(waiter.join().unwrap(), 1);
        });
        assert!(!watch.someone_waits());
        let after = watch.take(&lock, site);
        assert!(!after.waited_for(), "the earlier wait is not this hold's");
    }
}
